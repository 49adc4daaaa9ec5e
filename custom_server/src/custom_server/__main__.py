"""``python -m custom_server``."""

import sys

from custom_server.cli import main

if __name__ == "__main__":
    sys.exit(main())
