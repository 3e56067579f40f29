"""``python -m nanolang``."""

import sys

from nanolang.cli import main

sys.exit(main())
