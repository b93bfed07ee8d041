"""``python -m stylizer.eval``: see :mod:`stylizer.eval.cli`."""

import sys

from .cli import main

sys.exit(main())
