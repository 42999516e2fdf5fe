"""python manage.py mmsearch_indexes [--build] [--model-id ID]"""

from __future__ import annotations

from typing import TextIO, cast

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError
from tqdm import tqdm

from multimodal_search import services
from multimodal_search.conf import search_settings


class Command(BaseCommand):
    help = (
        "List the vector (HNSW) indexes of the encoder version searches read, with their build parameters; "
        "--build rebuilds them with HNSW_M / HNSW_EF_CONSTRUCTION without blocking searches or indexing."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--build",
            action="store_true",
            help="Build the indexes the configured parameters name (CREATE INDEX CONCURRENTLY), then drop the others.",
        )
        parser.add_argument("--model-id", default=None, help="List another encoder version's indexes.")
        parser.add_argument(
            "--memory",
            default="1GB",
            help="maintenance_work_mem of the builds (default 1GB; 'server' keeps the database's). An HNSW graph "
            "that outgrows it is built much more slowly: at 100,000 products the largest index is about 800 MB.",
        )

    def handle(self, *args, **options):
        if options["build"] and options["model_id"]:
            raise CommandError("--build rebuilds the current encoder version's indexes; leave out --model-id.")
        if options["build"]:
            self._build(None if options["memory"] == "server" else options["memory"])
        model_id, found = services.vector_indexes(options["model_id"])
        wanted = f"m = {search_settings.HNSW_M}, ef_construction = {search_settings.HNSW_EF_CONSTRUCTION}"
        self.stdout.write(f"HNSW indexes of {model_id} (configured: {wanted}):")
        if not found:
            self.stdout.write(
                "  none (indexing creates them with the first products it stores; a first `mmsearch_reindex` "
                "builds them after all its rows)"
            )
        for info in found:
            column = f"  {info.table.removeprefix('multimodal_search_')}.{info.column or '?'}: "
            if not info.exists:
                self.stdout.write(f"{column}missing: searches read this column whole ({info.name} to build)")
                continue
            self.stdout.write(
                f"{column}m = {info.m}, ef_construction = {info.ef_construction}, "
                f"{info.bytes / 2**20:,.1f} MB, {info.state} ({info.name})"
            )
        if any(info.state != "current" for info in found) and not options["build"]:
            self.stdout.write(
                "Some indexes are missing or differ from the settings: `manage.py mmsearch_indexes --build` "
                "builds them."
            )

    def _build(self, memory: str | None) -> None:
        bars: dict[str, tqdm] = {}
        phases: dict[str, str] = {}

        def progress(update) -> None:
            # one bar per index, started again at each phase of the build (each counts its own blocks or tuples)
            bar = bars.get(update.name)
            if bar is None:
                # tqdm writes to the wrapped stream; django-stubs types unknown OutputWrapper attributes as callables
                bar = bars[update.name] = tqdm(
                    desc=update.name,
                    # no rate: a phase's counter may jump from 0 to most of its total between two reads
                    bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]",
                    file=cast(TextIO, self.stderr._out),
                )
            if update.finished:
                bar.total = bar.total or max(bar.n, 1)  # built before its first report: no count was read
                bar.n = bar.total
                bar.set_postfix_str("built", refresh=False)
                bar.close()
                return
            if phases.get(update.name) != update.phase:
                phases[update.name] = update.phase
                bar.reset(total=update.total or None)
            bar.n = update.done
            bar.set_postfix_str(f"{update.unit}, {update.phase}", refresh=False)
            bar.refresh()

        try:
            model_id, built, dropped = services.rebuild_vector_indexes(progress, memory)
        except (DatabaseError, RuntimeError) as exc:
            raise CommandError(f"Building the indexes failed: {str(exc).strip().splitlines()[0]}") from None
        finally:
            for bar in bars.values():
                bar.close()
        self.stdout.write(
            f"Built {len(built)} index(es) of {model_id}"
            + (f": {', '.join(built)}" if built else " (every one exists)")
            + f"; dropped {len(dropped)} of other definitions."
        )
