"""zxmem: Fuchsia's Zircon memory tools for Linux.

The package is layered one way: ``sources`` build a :class:`~zxmem.model.Snapshot`;
``tasktree`` and ``views`` derive text and JSON from it; ``cli`` and ``commands``
parse arguments, pick a source and a view, and map errors to exit statuses.
"""

__version__ = "0.1.0"
