"""``manage.py ensure_demo_admin``: the demo's superuser (``admin`` / ``admin``), created when missing.

An existing user of that name keeps its password (unless ``--reset-password``) and is made an
active superuser again, so the documented login works after every ``make demo``.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Create the demo's superuser (default admin/admin) unless it exists."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="admin")
        parser.add_argument("--password", default="admin")
        parser.add_argument("--email", default="admin@example.com")
        parser.add_argument("--reset-password", action="store_true", help="set the password of an existing user")

    def handle(self, *args: Any, **options: Any) -> None:
        user_model = get_user_model()
        username = options["username"]
        user, created = user_model._default_manager.get_or_create(
            **{user_model.USERNAME_FIELD: username}, defaults={"email": options["email"]}
        )
        if created or options["reset_password"]:
            user.set_password(options["password"])
        user.is_active = user.is_staff = user.is_superuser = True
        user.save()
        if created:
            self.stdout.write(f"Created superuser {username!r} (demo only).")
        else:
            reset = ", password reset" if options["reset_password"] else ", password kept"
            self.stdout.write(f"Superuser {username!r} already exists{reset}.")
