"""``python -m hyperspy_hebt``: the command-line tool (:mod:`.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
