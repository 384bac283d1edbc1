"""``python -m loger3d``: the command line (see ``loger3d.cli``)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
