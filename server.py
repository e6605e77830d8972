"""The local runtime: ``python server.py`` is ``letsgo-worker serve``."""

import sys

from host.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
