"""Test settings: the demo store's, with a fast deterministic encoder by default.

``MMSEARCH_TEST_ENCODER=packaged`` switches to the real packaged models (the
integration tests' worker process uses that). ``DJANGO_TEST_DB_NAME`` points a
worker subprocess at the test database pytest-django created.
"""

import os
import tempfile

from shop.settings import *  # noqa: F403
from shop.settings import DATABASES, MULTIMODAL_SEARCH

if os.environ.get("DJANGO_TEST_DB_NAME"):
    DATABASES["default"]["NAME"] = os.environ["DJANGO_TEST_DB_NAME"]
    DATABASES["default"].pop("TEST", None)

MEDIA_ROOT = os.environ.get("MMSEARCH_MEDIA_ROOT") or tempfile.mkdtemp(prefix="mmsearch-media-")
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")
CELERY_RESULT_BACKEND = CELERY_BROKER_URL

ENCODERS = {
    "hash": {"BACKEND": "tests.fakes.HashEncoder", "OPTIONS": {}},
    "packaged": {"BACKEND": "multimodal_search.encoders.packaged.PackagedEncoder", "OPTIONS": {}},
}
MULTIMODAL_SEARCH = {
    **MULTIMODAL_SEARCH,
    "ENCODERS": ENCODERS,
    "ENCODER": os.environ.get("MMSEARCH_TEST_ENCODER", "hash"),
    "AUTO_INDEX": os.environ.get("MMSEARCH_AUTO_INDEX", "0") == "1",
}
