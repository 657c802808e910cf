"""``python -m mcnet.cli``: the ``mcnet`` command."""

import sys

from mcnet.cli import main

sys.exit(main())
