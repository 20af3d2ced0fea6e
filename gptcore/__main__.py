"""``python -m gptcore``: see gptcore.cli."""

import sys

from .cli import main

sys.exit(main())
