"""``python -m napari_sam2.cli``."""

import sys

from .app import main

sys.exit(main())
