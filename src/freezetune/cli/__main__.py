"""`python -m freezetune.cli`."""

import sys

from freezetune.cli.main import main

sys.exit(main())
