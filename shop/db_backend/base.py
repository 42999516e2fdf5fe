"""PostgreSQL backend that starts the embedded server of ``shop.runtime`` when it is first needed.

``HOST`` is the server's data folder (``$MMSEARCH_DATA_DIR/postgres``). Each new connection first
makes sure a server runs there (a pid-file check when it does) and then connects to its socket, so
importing settings or running ``manage.py check`` starts nothing. With ``OPTIONS["pool"]`` (psycopg's
pool, see ``shop.runtime.database_config``) the pool connects to the socket folder too, and each
connection handed out first makes sure the server still runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from django.db.backends.postgresql import base, client

from shop import runtime


class DatabaseClient(client.DatabaseClient):
    """``manage.py dbshell``: the embedded server's own psql, on a running server."""

    @classmethod
    def settings_to_cmd_args_env(
        cls, settings_dict: dict[str, Any], parameters: Iterable[str]
    ) -> tuple[list[str], dict[str, str] | None]:
        socket_dir = runtime.ensure_embedded_postgres(Path(settings_dict["HOST"]))
        args, env = super().settings_to_cmd_args_env({**settings_dict, "HOST": str(socket_dir)}, parameters)
        return [str(runtime.embedded_bin_dir() / "psql"), *args[1:]], env


class DatabaseWrapper(base.DatabaseWrapper):
    """Django's PostgreSQL backend; each new connection goes to a running embedded server."""

    client_class = DatabaseClient

    def _socket_dir(self) -> Path:
        return runtime.ensure_embedded_postgres(Path(self.settings_dict["HOST"]))

    def get_connection_params(self) -> dict[str, Any]:
        # also what the pool keeps for every connection it opens: the socket folder, not the data folder
        return {**super().get_connection_params(), "host": str(self._socket_dir())}

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        socket_dir = self._socket_dir()  # starts the server again if it went away
        return super().get_new_connection({**conn_params, "host": str(socket_dir)})
