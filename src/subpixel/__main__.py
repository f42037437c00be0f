"""``python -m subpixel ...``: the ``subpixel`` command line (as the installed ``subpixel`` script runs it)."""

import sys

from subpixel.cli import main

if __name__ == "__main__":
    sys.exit(main())
