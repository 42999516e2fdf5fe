"""Where the tests find the shared sample data: ``DEMO_CATALOG`` when set, else ``../shared`` beside the checkout.

The same default as ``shop.settings.DEMO_CATALOG`` (and so ``CATALOG_PHOTO_ROOTS``), so a catalogue the tests
write that points into the sample data is trusted wherever the checkout lies (CI clones it elsewhere).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LUMA = Path(os.environ.get("DEMO_CATALOG", str(REPO.parent / "shared" / "datasets" / "magento-luma")))
LUMA_PHOTOS = LUMA / "pub" / "media" / "catalog" / "product"
