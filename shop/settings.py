"""Settings of the demo store. Environment variables override the defaults."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from shop import runtime

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = runtime.data_dir()

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "dev-only-insecure-key-change-me")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "multimodal_search",
    "shop.catalog",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "shop.urls"
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
# (shop.db_backend), stopped when the process that started it exits (see shop/runtime.py)
DATABASES = {"default": runtime.database_config()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
MEDIA_URL = "/media/"
# a str or a Path, as Django allows (tests.settings sets a str)
MEDIA_ROOT: str | Path = Path(os.environ.get("MMSEARCH_MEDIA_ROOT", DATA_DIR / "media"))

DATA_UPLOAD_MAX_MEMORY_SIZE = 12 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 12 * 1024 * 1024

DEMO_CATALOG = os.environ.get("DEMO_CATALOG", str(BASE_DIR.parent / "shared" / "datasets" / "magento-luma"))

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND", CELERY_BROKER_URL)
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {"multimodal_search.tasks.*": {"queue": "embeddings"}}
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

REST_FRAMEWORK: dict[str, Any] = {
    "DEFAULT_PAGINATION_CLASS": None,
    "DEFAULT_THROTTLE_CLASSES": [],
}

MULTIMODAL_SEARCH = {
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
    "DEVICE": os.environ.get("MMSEARCH_DEVICE") or None,
    "TORCH_THREADS": int(os.environ.get("MMSEARCH_TORCH_THREADS", "1")) or None,
    # MMSEARCH_SYNONYMS=0 turns query expansion off (e.g. to measure what it adds)
    "SYNONYMS": None if os.environ.get("MMSEARCH_SYNONYMS", "1") != "0" else [],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "multimodal_search": {"handlers": ["console"], "level": os.environ.get("MMSEARCH_LOG_LEVEL", "INFO")},
    },
}
