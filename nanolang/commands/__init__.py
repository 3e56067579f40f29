"""Subcommands of the ``nanolang`` CLI; each exposes ``add_parser(subparsers)``."""
