"""One module per ``zxmem`` command: ``add_parser(subparsers)`` and ``run(args, env)``."""
