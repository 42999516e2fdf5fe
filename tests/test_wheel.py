"""The app as a pip-installed package: build the wheel, install it in a fresh venv, run check + migrate.

The wheel is built from a clean copy of the source tree (so stale ``build/`` output never leaks into it
and nothing is written into the checkout), installed with its core dependencies only (no torch) into a
new virtual environment, and used by a minimal Django project of its own that points at a fresh
database on the test session's PostgreSQL server. Neither the repository's source nor the demo store
is importable there.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
DIST_NAME = "django-multimodal-search"
APP = "multimodal_search"
# what the source copy leaves out: at the top, environments, local data and build output; anywhere, VCS and caches
ROOT_IGNORE = {".venv", "venv", ".data", "media", "build", "dist", "node_modules"}
ANYWHERE_IGNORE = shutil.ignore_patterns(
    ".git", "*.egg-info", "__pycache__", "*.pyc", "*.pyo", ".pytest_cache", ".mypy_cache", ".ruff_cache"
)
# files in the app folder that are not meant to ship
NOT_SHIPPED_SUFFIXES = (".pyc", ".pyo", ".swp", "~", ".orig", ".rej")

pytestmark = [pytest.mark.slow, pytest.mark.django_db]


def run(cmd: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def describe(result: subprocess.CompletedProcess[str]) -> str:
    return (
        f"$ {' '.join(map(str, result.args))}\n(exit {result.returncode})\n"
        f"--- stdout ---\n{result.stdout[-6000:]}\n--- stderr ---\n{result.stderr[-6000:]}"
    )


def clean_env(**extra: str) -> dict[str, str]:
    """The environment minus anything that would make the repository (or the test settings) importable."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "DJANGO_SETTINGS_MODULE", "VIRTUAL_ENV"}
    }
    env["PYTHONNOUSERSITE"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env.update(extra)
    return env


def copy_ignore(folder: str, names: list[str]) -> set[str]:
    ignored = set(ANYWHERE_IGNORE(folder, names))
    if Path(folder).resolve() == REPO_ROOT:
        ignored |= ROOT_IGNORE & set(names)
    return ignored


def shipped_source_files(app_dir: Path) -> set[str]:
    """Paths (wheel-style, e.g. ``multimodal_search/api/views.py``) of every file under the app that should ship."""
    files: set[str] = set()
    for path in app_dir.rglob("*"):
        relative = path.relative_to(app_dir.parent)
        if not path.is_file() or any(part.startswith(".") or part == "__pycache__" for part in relative.parts):
            continue
        if path.name.endswith(NOT_SHIPPED_SUFFIXES):
            continue
        files.add(relative.as_posix())
    return files


@pytest.fixture
def scratch_database() -> Iterator[dict[str, Any]]:
    """A fresh, empty database on the test session's PostgreSQL server; dropped afterwards, even on failure."""
    import psycopg
    from django.db import connection

    connection.ensure_connection()  # the server may be started lazily on first connection
    settings_dict = connection.settings_dict
    params: dict[str, Any] = {
        key: value
        for key, value in {
            "host": settings_dict.get("HOST"),
            "port": settings_dict.get("PORT"),
            "user": settings_dict.get("USER"),
            "password": settings_dict.get("PASSWORD"),
        }.items()
        if value not in (None, "")
    }
    name = f"wheelcheck_{secrets.token_hex(4)}"
    admin_db = settings_dict["NAME"]  # the session's test database: it exists, and we may connect to it
    with psycopg.connect(dbname=admin_db, autocommit=True, **params) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    options = {
        key: value
        for key, value in (settings_dict.get("OPTIONS") or {}).items()
        if isinstance(value, (str, int, float, bool))
    }
    try:
        yield {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "USER": str(settings_dict.get("USER") or ""),
            "PASSWORD": str(settings_dict.get("PASSWORD") or ""),
            "HOST": str(settings_dict.get("HOST") or ""),
            "PORT": str(settings_dict.get("PORT") or ""),
            "OPTIONS": options,
        }
    finally:
        with psycopg.connect(dbname=admin_db, autocommit=True, **params) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def build_wheel(tmp_path: Path) -> tuple[Path, Path]:
    """Build the wheel from a clean copy of the repository; return (wheel, source copy)."""
    source = tmp_path / "src"
    shutil.copytree(REPO_ROOT, source, ignore=copy_ignore, symlinks=True)
    out = tmp_path / "dist"
    result = run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--disable-pip-version-check",
            "-q",
            "-w",
            str(out),
            str(source),
        ],
        cwd=source,
        env=clean_env(),
    )
    assert result.returncode == 0, describe(result)
    wheels = sorted(out.glob("*.whl"))
    assert len(wheels) == 1, f"expected one wheel in {out}: {wheels}\n{describe(result)}"
    return wheels[0], source


def check_wheel_contents(wheel: Path, source: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        dist_info = next(name.split("/")[0] for name in names if name.split("/")[0].endswith(".dist-info"))
        metadata = archive.read(f"{dist_info}/METADATA").decode()
    top_level = {name.split("/")[0] for name in names}
    assert top_level == {APP, dist_info}, f"unexpected top-level entries in the wheel: {sorted(top_level)}"
    for name in names:
        assert "__pycache__" not in name and not name.endswith((".pyc", ".pyo")), name
    # every module (new subpackages included) and every data file (templates, ...) of the app ships
    missing = shipped_source_files(source / APP) - names
    assert not missing, f"files under {APP}/ missing from the wheel: {sorted(missing)}"
    for required in (
        f"{APP}/migrations/0001_initial.py",
        f"{APP}/templates/{APP}/search.html",
        f"{APP}/management/commands/mmsearch_reindex.py",
        f"{APP}/api/urls.py",
    ):
        assert required in names, f"{required} missing from the wheel"
    assert f"Name: {DIST_NAME}" in metadata
    core_requirements = [
        line.split(":", 1)[1].strip()
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line
    ]
    assert any(req.lower().startswith("django") for req in core_requirements), core_requirements
    assert not any(req.lower().startswith(("torch", "transformers")) for req in core_requirements), core_requirements


def write_project(project: Path, database: dict[str, Any]) -> None:
    """A minimal Django project that uses the installed app with ``auth.User`` as the product model."""
    package = project / "wheelcheck_site"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "adapters.py").write_text(
        textwrap.dedent('''\
        from __future__ import annotations

        from typing import Any

        from multimodal_search.adapters import BaseProductAdapter, ImageRef


        class UserAdapter(BaseProductAdapter):
            """Users as products: the username is the text, and there are no photos."""

            def get_text(self, product: Any) -> str:
                return product.get_username()

            def get_images(self, product: Any) -> list[ImageRef]:
                return []
        ''')
    )
    (package / "urls.py").write_text(
        textwrap.dedent("""\
        from django.urls import include, path

        urlpatterns = [
            path("search/", include("multimodal_search.urls")),
            path("api/", include("multimodal_search.api.urls")),
        ]
        """)
    )
    (package / "settings.py").write_text(
        textwrap.dedent(f"""\
        from pathlib import Path

        BASE_DIR = Path(__file__).resolve().parent.parent
        SECRET_KEY = "wheelcheck-not-secret"
        DEBUG = False
        ALLOWED_HOSTS = ["testserver"]
        INSTALLED_APPS = [
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "django.contrib.postgres",
            "rest_framework",
            "multimodal_search",
        ]
        ROOT_URLCONF = "wheelcheck_site.urls"
        TEMPLATES = [{{"BACKEND": "django.template.backends.django.DjangoTemplates", "DIRS": [], "APP_DIRS": True}}]
        DATABASES = {{"default": {database!r}}}
        DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
        USE_TZ = True
        MULTIMODAL_SEARCH = {{
            "PRODUCT_MODEL": "auth.User",
            "ADAPTER": "wheelcheck_site.adapters.UserAdapter",
            "AUTO_INDEX": False,
            "MODEL_DIR": str(BASE_DIR / "models"),
        }}
        """)
    )
    (project / "manage.py").write_text(
        textwrap.dedent("""\
        import os
        import sys

        if __name__ == "__main__":
            os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wheelcheck_site.settings")
            from django.core.management import execute_from_command_line

            execute_from_command_line(sys.argv)
        """)
    )
    (project / "probe.py").write_text(
        textwrap.dedent('''\
        """Where the installed app comes from, and whether the repository's other packages are importable."""
        import importlib.util
        import json
        import os
        import sysconfig

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wheelcheck_site.settings")
        import django

        django.setup()
        import multimodal_search
        from django.core.management import get_commands
        from django.template.loader import get_template

        print(json.dumps({
            "app_file": multimodal_search.__file__,
            "purelib": sysconfig.get_paths()["purelib"],
            "template": str(get_template("multimodal_search/search.html").origin.name),
            "commands": sorted(name for name, app in get_commands().items() if app == "multimodal_search"),
            "shop": importlib.util.find_spec("shop") is not None,
        }))
        ''')
    )


def test_wheel_installs_and_migrates_in_a_fresh_venv(tmp_path: Path, scratch_database: dict[str, Any]) -> None:
    wheel, source = build_wheel(tmp_path)
    check_wheel_contents(wheel, source)

    venv = tmp_path / "venv"
    env = clean_env()
    result = run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path, env=env)
    assert result.returncode == 0, describe(result)
    python = venv / "bin" / "python"
    result = run(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", str(wheel)], cwd=tmp_path, env=env
    )
    assert result.returncode == 0, describe(result)

    project = tmp_path / "project"
    write_project(project, scratch_database)
    env = clean_env(DJANGO_SETTINGS_MODULE="wheelcheck_site.settings")

    # torch is an extra: the core install must not pull it in
    no_torch = "import importlib.util as u; print(u.find_spec('torch') is None)"
    result = run([str(python), "-c", no_torch], cwd=project, env=env)
    assert result.returncode == 0 and result.stdout.strip() == "True", describe(result)

    result = run([str(python), "probe.py"], cwd=project, env=env, timeout=300)
    assert result.returncode == 0, describe(result)
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    site_packages = Path(probe["purelib"]).resolve()
    assert site_packages.is_relative_to(venv.resolve()), probe
    assert Path(probe["app_file"]).resolve().is_relative_to(site_packages), probe
    assert Path(probe["template"]).resolve().is_relative_to(site_packages), probe
    assert {"mmsearch_reindex", "mmsearch_train", "mmsearch_evaluate"} <= set(probe["commands"]), probe
    assert probe["shop"] is False, probe
    result = run([str(python), "-c", "import shop"], cwd=project, env=env)
    assert result.returncode != 0 and "ModuleNotFoundError" in result.stderr, describe(result)

    check = run([str(python), "manage.py", "check"], cwd=project, env=env, timeout=300)
    assert check.returncode == 0, describe(check)
    migrate = run([str(python), "manage.py", "migrate", "--no-input", "-v", "1"], cwd=project, env=env, timeout=300)
    assert migrate.returncode == 0, describe(migrate)
    assert f"Applying {APP}.0001_initial... OK" in migrate.stdout, describe(migrate)
    print(describe(check))
    print(describe(migrate))
