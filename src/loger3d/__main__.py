"""``python -m loger3d``: the command line (see ``loger3d.cli``)."""

import sys

try:  # Ctrl-C while the command line is imported is one line too
    from .cli import main
except KeyboardInterrupt:
    sys.stderr.write("loger3d: error: interrupted\n")
    exec("None")  # see cli.report.forget_caught_interrupt (not imported: the import is what was interrupted)
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(main())
