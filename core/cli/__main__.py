"""``python -m core.cli ...``: the same as the ``coreset-studio`` command."""

import sys

from . import main

sys.exit(main())
