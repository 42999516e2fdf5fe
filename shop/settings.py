"""Settings of the demo store. Environment variables override the defaults."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from shop import runtime
from shop.routers import replica_databases
from shop.secret_key import read_secret_key

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = runtime.data_dir()

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def env_flag(name: str, default: bool = False) -> bool:
    """True for 1/true/yes/on, False for 0/false/no/off; ``default`` when unset or empty."""
    value = os.environ.get(name, "").strip().lower()
    return default if not value else value in ("1", "true", "yes", "on")


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


# Safe by default: DEBUG only when asked for, and no start with a known key when DEBUG is off.
DEBUG = env_flag("DJANGO_DEBUG")
# DJANGO_SECRET_KEY, else the demo's random key in DATA_DIR/secret_key (`python -m shop.secret_key`, make demo)
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "").strip() or read_secret_key(DATA_DIR)
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set and DEBUG is off: set DJANGO_SECRET_KEY, "
            "run `python -m shop.secret_key` to keep a random one in MMSEARCH_DATA_DIR, or set DJANGO_DEBUG=1."
        )
    SECRET_KEY = "django-insecure-development-only"
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

# HTTPS (README "Production settings"); off by default so the demo works over plain http://127.0.0.1
SECURE_SSL_REDIRECT = env_flag("DJANGO_SECURE_SSL_REDIRECT")
SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_SECURE_HSTS_SECONDS", "0") or 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_flag("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS")
SECURE_HSTS_PRELOAD = env_flag("DJANGO_SECURE_HSTS_PRELOAD")
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_flag("DJANGO_SECURE_COOKIES")
if env_flag("DJANGO_SECURE_PROXY_SSL_HEADER"):  # behind a proxy that terminates TLS and sets X-Forwarded-Proto
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    # API tokens for programs ("Authorization: Token <key>"; admin "Tokens", or manage.py drf_create_token USER)
    "rest_framework.authtoken",
    # the API's OpenAPI schema and its Swagger UI / Redoc pages (/api/schema/, /api/docs/, /api/redoc/)
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "multimodal_search",
    "shop.catalog",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # static files without DEBUG (and without a separate web server)
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "shop.middleware.explain_not_allowed",
]

ROOT_URLCONF = "shop.urls"
# the storefront's sign-in (django.contrib.auth's views under /accounts/)
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "shop" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]
WSGI_APPLICATION = "shop.wsgi.application"

# DATABASE_URL, else the embedded PostgreSQL in DATA_DIR/postgres: started by the first connection
# (shop.db_backend), stopped when the process that started it exits (see shop/runtime.py).
# No persistent connections, or psycopg's pool (DATABASE_POOL_SIZE per process); a statement
# timeout (DATABASE_STATEMENT_TIMEOUT, default 30s). README "Serving and load" gives the bound.
DATABASES = {"default": runtime.database_config()}
# DATABASE_REPLICA_URLS (comma-separated): searches read the vectors from these read replicas
# (aliases replica1, replica2, ...); writes and the indexing path stay on default (README "Scaling out").
DATABASES.update(replica_databases(env_list("DATABASE_REPLICA_URLS")))
DATABASE_REPLICAS = [alias for alias in DATABASES if alias != "default"]
DATABASE_ROUTERS = ["shop.routers.ReplicaRouter"] if DATABASE_REPLICAS else []
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT: Path | None = DATA_DIR / "static"  # None in tests.settings (files from the apps)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
MEDIA_URL = "/media/"
# a str or a Path, as Django allows (tests.settings sets a str)
MEDIA_ROOT: str | Path = Path(os.environ.get("MMSEARCH_MEDIA_ROOT", DATA_DIR / "media"))
# Demo only: Django serves MEDIA (the catalogue photos) even with DEBUG off. A real shop serves
# media from its web server or object storage instead.
DEMO_SERVE_MEDIA = env_flag("DEMO_SERVE_MEDIA")

# Form fields (not files) held in memory; a photo upload is capped by MULTIMODAL_SEARCH["MAX_UPLOAD_BYTES"]
# (a 413 from the Content-Length before the body is read), so uploads within it stay in memory and a
# query photo never touches the disk.
DATA_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
FILE_UPLOAD_MAX_MEMORY_SIZE = 11 * 1024 * 1024

DEMO_CATALOG = os.environ.get("DEMO_CATALOG", str(BASE_DIR.parent / "shared" / "datasets" / "magento-luma"))
# Folders a jsonl catalogue's photos may come from besides the file's own folder (the judged Luma
# catalogues of make_luma_eval point into the sample data); any other path outside is refused.
CATALOG_PHOTO_ROOTS = [DEMO_CATALOG]

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND", CELERY_BROKER_URL)
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_DEFAULT_QUEUE = "default"
# Indexing on save and the sweep go to MMSEARCH_QUEUE (CPU workers); mmsearch_reindex to MMSEARCH_BULK_QUEUE
# when set (a GPU worker started with -Q <it>), README "Scaling out".
INDEX_QUEUE = os.environ.get("MMSEARCH_QUEUE", "").strip() or "embeddings"
BULK_INDEX_QUEUE = os.environ.get("MMSEARCH_BULK_QUEUE", "").strip() or None
CELERY_TASK_ROUTES = {"multimodal_search.tasks.*": {"queue": INDEX_QUEUE}}
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Durable indexing (README "Durable indexing"): a message is acknowledged only when its task ends,
# and a prefork worker whose child dies (killed, out of memory) puts the message back at once. A
# task is killed after CELERY_TASK_TIME_LIMIT; the broker hands an unacknowledged message (its
# worker vanished) to another worker after the visibility timeout, which must be longer.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_TASK_TIME_LIMIT = int(os.environ.get("MMSEARCH_TASK_TIME_LIMIT", "600"))
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - 30
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_TASK_TIME_LIMIT + 300}
# A prefork child is replaced after this many tasks (bounds its memory), and the new one loads the models
# (WARM_UP) before it says it is up: Celery's default wait for that, 4 s, killed every replacement whose
# models took longer to load, again and again (`make demo`'s indexing stopped at task 500).
CELERY_WORKER_MAX_TASKS_PER_CHILD = int(os.environ.get("MMSEARCH_WORKER_MAX_TASKS_PER_CHILD", "500"))
CELERY_WORKER_PROC_ALIVE_TIMEOUT = float(os.environ.get("MMSEARCH_WORKER_START_TIMEOUT", "300"))
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# The sweep sends what the outbox says is dirty and due; the deep pass also compares content hashes.
CELERY_BEAT_SCHEDULE = {
    "mmsearch-sweep": {
        "task": "multimodal_search.tasks.sweep_index_task",
        "schedule": float(os.environ.get("MMSEARCH_SWEEP_SECONDS", "60")),
    },
    "mmsearch-deep-sweep": {
        "task": "multimodal_search.tasks.sweep_index_task",
        "schedule": float(os.environ.get("MMSEARCH_DEEP_SWEEP_SECONDS", str(6 * 3600))),
        "kwargs": {"deep": True},
    },
    # search log and shopper events older than MULTIMODAL_SEARCH["ANALYTICS"]["RETENTION_DAYS"] (README "Query analytics")
    "mmsearch-prune-analytics": {"task": "multimodal_search.tasks.prune_analytics_task", "schedule": 24 * 3600.0},
}

# The search box keeps a query photo under a short-lived token (README "Search box"). Every web
# process must see it, so it lives in Redis (MMSEARCH_CACHE_URL, default the broker's server); when
# Redis does not answer, a photo search still shows its results, without a shareable link. Never
# call .clear() on this alias: on Redis that is FLUSHDB, which would also empty the broker's queues.
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "query_photos": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": os.environ.get("MMSEARCH_CACHE_URL", CELERY_BROKER_URL),
        "KEY_PREFIX": "shop",
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 2},
    },
}


def env_rate(name: str, default: str) -> str | None:
    """A DRF rate such as "120/min" from the environment; "off" (or "0") disables that throttle."""
    value = os.environ.get(name, default).strip()
    return None if value.lower() in ("", "0", "off", "none") else value


# Session authentication only (no BasicAuthentication taking unlimited password guesses). Throttles
# count per client IP (anon), per user, and photo uploads separately; the counts live in the default
# cache, so with LocMemCache each server process counts on its own (the limit is per process).
REST_FRAMEWORK: dict[str, Any] = {
    # one error body for every API answer: {"error": {"code", "message", "field"}} (README "REST API")
    "EXCEPTION_HANDLER": "multimodal_search.api.errors.exception_handler",
    "DEFAULT_PAGINATION_CLASS": None,
    # the API's OpenAPI schema (/api/schema/) is drf-spectacular's
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_THROTTLE_CLASSES": [
        "multimodal_search.api.throttling.AnonThrottle",
        "multimodal_search.api.throttling.UserThrottle",
        "multimodal_search.api.throttling.PhotoThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env_rate("DJANGO_API_THROTTLE_ANON", "120/min"),
        "user": env_rate("DJANGO_API_THROTTLE_USER", "600/min"),
        "photo": env_rate("DJANGO_API_THROTTLE_PHOTO", "30/min"),
    },
}

# Swagger UI and Redoc from drf-spectacular-sidecar's static files: nothing is fetched from a CDN
SPECTACULAR_SETTINGS = {
    # `check --deploy` builds the schema with these settings: list each operation once (its /api/v1/ path)
    "PREPROCESSING_HOOKS": ["multimodal_search.api.schema.versioned_endpoints"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

MULTIMODAL_SEARCH: dict[str, Any] = {
    "PRODUCT_MODEL": "catalog.Product",
    "ADAPTER": "shop.catalog.search.ProductAdapter",
    "MODEL_DIR": str(DATA_DIR / "models"),
    "ENCODERS": {
        "default": {
            "BACKEND": "multimodal_search.encoders.packaged.PackagedEncoder",
            # written by `mmsearch_train`; running processes pick up a new version within seconds
            "OPTIONS": {"head_path": str(DATA_DIR / "models" / "packaged-head.pt")},
        },
    },
    "AUTO_INDEX": os.environ.get("MMSEARCH_AUTO_INDEX", "1") == "1",
    "QUEUE": INDEX_QUEUE,
    "BULK_QUEUE": BULK_INDEX_QUEUE,
    "DEVICE": os.environ.get("MMSEARCH_DEVICE") or None,
    "TORCH_THREADS": int(os.environ.get("MMSEARCH_TORCH_THREADS", "1")) or None,
    # an indexing worker's torch threads (0: every core it may use); models load at process start
    "INDEX_TORCH_THREADS": int(os.environ.get("MMSEARCH_INDEX_TORCH_THREADS", "0")) or None,
    "WARM_UP": os.environ.get("MMSEARCH_WARM_UP", "1") == "1",
    # the HNSW indexes' build parameters (`manage.py mmsearch_indexes --build` applies a change) and how deep
    # searches read them (README "Performance"): the app's defaults (32, 128, 500) unless the environment sets them
    **{
        name: int(os.environ[f"MMSEARCH_{name}"])
        for name in ("HNSW_M", "HNSW_EF_CONSTRUCTION", "HNSW_EF_SEARCH")
        if os.environ.get(f"MMSEARCH_{name}")
    },
    # query photos of the search box: kept MMSEARCH_PHOTO_TTL seconds in the shared cache above
    "QUERY_PHOTOS": {"CACHE": "query_photos", "TTL": int(os.environ.get("MMSEARCH_PHOTO_TTL", "3600"))},
    # MMSEARCH_SYNONYMS=0 turns query expansion off (e.g. to measure what it adds)
    "SYNONYMS": None if os.environ.get("MMSEARCH_SYNONYMS", "1") != "0" else [],
    # tries, retry backoff and the sweep's patience (multimodal_search.conf, README "Durable indexing")
    # the search log and clicks (README "Query analytics"): kept MMSEARCH_ANALYTICS_DAYS days
    "ANALYTICS": {"RETENTION_DAYS": int(os.environ.get("MMSEARCH_ANALYTICS_DAYS", "90"))},
    "DURABILITY": {
        "MAX_ATTEMPTS": int(os.environ.get("MMSEARCH_MAX_ATTEMPTS", "3")),
        "RETRY_BACKOFF": float(os.environ.get("MMSEARCH_RETRY_BACKOFF", "60")),
        "REQUEUE_AFTER": float(os.environ.get("MMSEARCH_REQUEUE_AFTER", "600")),
        # the deep sweep's walk: products read at a time, and seconds per worker step
        "CHUNK": int(os.environ.get("MMSEARCH_SWEEP_CHUNK", "500")),
        "STEP_SECONDS": float(os.environ.get("MMSEARCH_SWEEP_STEP_SECONDS", "60")),
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "multimodal_search": {"handlers": ["console"], "level": os.environ.get("MMSEARCH_LOG_LEVEL", "INFO")},
        # a server error's traceback in the process's log (Django's own setup only mails it when DEBUG is off)
        "django.request": {"handlers": ["console"], "level": "ERROR"},
    },
}
