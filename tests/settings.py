"""Test settings: the demo store's, with a fast deterministic encoder by default.

``MMSEARCH_TEST_ENCODER=packaged`` switches to the real packaged models (the
integration tests' worker process uses that). ``DJANGO_TEST_DB_NAME`` points a
worker subprocess at the test database pytest-django created.
"""

import atexit
import os
import shutil
import tempfile

# shop.settings refuses to load without a key when DEBUG is off; set before importing it, so the
# subprocesses the tests start (worker, runtime, check --deploy) inherit it too.
os.environ.setdefault("DJANGO_SECRET_KEY", "tests-only-secret-key-" + "x" * 40)

from shop.settings import *  # noqa: F403
from shop.settings import DATABASES, MULTIMODAL_SEARCH, REST_FRAMEWORK

if os.environ.get("DJANGO_TEST_DB_NAME"):
    DATABASES["default"]["NAME"] = os.environ["DJANGO_TEST_DB_NAME"]
    DATABASES["default"].pop("TEST", None)

MEDIA_ROOT = os.environ.get("MMSEARCH_MEDIA_ROOT") or ""
if not MEDIA_ROOT:
    # the photos the tests save, in a folder of this process's own that goes with it (a test run left up
    # to 80 MB under /tmp each time); the processes the tests start are handed it (MMSEARCH_MEDIA_ROOT)
    MEDIA_ROOT = tempfile.mkdtemp(prefix="mmsearch-media-")
    atexit.register(shutil.rmtree, MEDIA_ROOT, ignore_errors=True)
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")
CELERY_RESULT_BACKEND = CELERY_BROKER_URL

ENCODERS = {
    "hash": {"BACKEND": "tests.fakes.HashEncoder", "OPTIONS": {}},
    "packaged": {"BACKEND": "multimodal_search.encoders.packaged.PackagedEncoder", "OPTIONS": {}},
    # fault drills (tests/test_fault_drills.py): slow batches, out of memory above 4, a killing product
    "slow": {"BACKEND": "tests.fakes.SlowHashEncoder", "OPTIONS": {"delay": 0.1}},
    "oom": {"BACKEND": "tests.fakes.OutOfMemoryEncoder", "OPTIONS": {"max_batch": 4}},
    "killing": {"BACKEND": "tests.fakes.KillingEncoder", "OPTIONS": {"delay": 0.02}},
    # models that take longer to load than Celery waits for a new prefork child by default (4 s)
    "slowstart": {"BACKEND": "tests.fakes.SlowStartHashEncoder", "OPTIONS": {"start_delay": 5}},
}
MULTIMODAL_SEARCH = {
    **MULTIMODAL_SEARCH,
    "ENCODERS": ENCODERS,
    "ENCODER": os.environ.get("MMSEARCH_TEST_ENCODER", "hash"),
    "AUTO_INDEX": os.environ.get("MMSEARCH_AUTO_INDEX", "0") == "1",
    # workers and servers started by tests load their models on first use (tests/test_warmup.py turns it on)
    "WARM_UP": os.environ.get("MMSEARCH_WARM_UP", "0") == "1",
    # every test counts its own events (tests/test_recommend.py turns the cache on where it tests it)
    "PERSONALISATION": {"POPULAR_CACHE_SECONDS": 0},
    # every test counts its own catalogue's words (tests/test_search_costs.py turns the cache on where it tests it)
    "EXPANSION": {"CACHE_SECONDS": 0},
    # every test encodes its queries (tests/test_search_costs.py turns the memo on where it tests it)
    "QUERY_VECTORS": 0,
}

# Throttling off by default (tests/test_security.py sets rates where it tests them).
REST_FRAMEWORK = {**REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"anon": None, "user": None, "photo": None}}
# Static files from the apps' folders (no collectstatic in tests).
STATIC_ROOT = None
WHITENOISE_USE_FINDERS = True
