"""``python -m intentcam_ota``: the same as the ``intentcam-ota`` console script."""

import sys

from intentcam_ota.cli import main

sys.exit(main())
