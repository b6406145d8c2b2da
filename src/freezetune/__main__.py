"""`python -m freezetune`: the command line."""

import sys

from freezetune.cli.main import main

sys.exit(main())
