"""`python -m opslib.cli`, as the `opslib` console script."""

import sys

from opslib.cli.main import main

sys.exit(main())
