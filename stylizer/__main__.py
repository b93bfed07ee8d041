"""``python -m stylizer``: see :mod:`stylizer.cli`."""

import sys

from .cli import main

sys.exit(main())
