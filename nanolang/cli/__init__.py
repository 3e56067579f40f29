"""The ``nanolang`` command line: ``main`` and one module per subcommand."""

from nanolang.cli.main import main

__all__ = ["main"]
