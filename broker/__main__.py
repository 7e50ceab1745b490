"""``python -m broker`` is the ``trafka`` console script."""

import sys

from broker.cli import main

sys.exit(main())
