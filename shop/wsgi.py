"""WSGI entry point (gunicorn ``shop.wsgi:application``; see ``shop/gunicorn_conf.py``)."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")
application = get_wsgi_application()
