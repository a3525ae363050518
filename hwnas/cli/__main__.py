"""``python -m hwnas.cli``: the same as the ``hwnas`` console script."""

import sys

from hwnas.cli import main

sys.exit(main())
