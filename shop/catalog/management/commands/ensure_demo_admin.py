"""``manage.py ensure_demo_admin``: the demo's superuser (``admin`` / ``admin``), created when missing;
with ``--shopper``, its storefront shopper instead (``shopper`` / ``shopper``: signed in, the shop
personalises for them; not staff).

An existing user of that name keeps its password (unless ``--reset-password``) and gets its role back
(an active superuser, or an active non-staff shopper), so the documented logins work after every ``make demo``.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Create the demo's superuser (default admin/admin) unless it exists."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--shopper", action="store_true", help="a storefront shopper (not staff), default shopper/shopper"
        )
        parser.add_argument("--username", default=None, help="default admin (shopper with --shopper)")
        parser.add_argument("--password", default=None, help="default admin (shopper with --shopper)")
        parser.add_argument("--email", default="admin@example.com")
        parser.add_argument("--reset-password", action="store_true", help="set the password of an existing user")

    def handle(self, *args: Any, **options: Any) -> None:
        user_model = get_user_model()
        shopper = options["shopper"]
        default = "shopper" if shopper else "admin"
        username, password = options["username"] or default, options["password"] or default
        user, created = user_model._default_manager.get_or_create(
            **{user_model.USERNAME_FIELD: username}, defaults={"email": options["email"]}
        )
        if created or options["reset_password"]:
            user.set_password(password)
        user.is_active = True
        user.is_staff = user.is_superuser = not shopper
        user.save()
        role = "shopper" if shopper else "superuser"
        if created:
            self.stdout.write(f"Created {role} {username!r} (demo only).")
        else:
            reset = ", password reset" if options["reset_password"] else ", password kept"
            self.stdout.write(f"{role.capitalize()} {username!r} already exists{reset}.")
