"""``python -m host.cli``: the ``letsgo-worker`` command line."""

import sys

from host.cli import main

sys.exit(main())
