"""``python -m subpixel.cli ...`` (as ``torchrun -m subpixel.cli train ...`` needs)."""

import sys

from subpixel.cli import main

sys.exit(main())
