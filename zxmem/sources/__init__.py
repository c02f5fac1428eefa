"""Sources: each reads once and builds a :class:`zxmem.model.Snapshot`.

* :mod:`zxmem.sources.procfs` — pure parsers of ``/proc`` file contents (bytes in,
  plain values out; they never open a file).
* :mod:`zxmem.sources.cgroups` — which cgroup each process is in, and the job tree.
* :mod:`zxmem.sources.linux` — the live collector (an injectable ``/proc`` root).
"""
