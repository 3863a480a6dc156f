"""`python -m expc`: the command line."""

import sys

from expc.cli import main

sys.exit(main())
