"""python manage.py mmsearch_reconcile [--fix [--sync]] [--chunk N]

Exit status: 0 when the index is current (or, with ``--fix``, once the repair is sent or, with
``--sync``, done with nothing left); 1 when drift is found and not repaired (so cron or CI can alert).
"""

from __future__ import annotations

from typing import Any, TextIO, cast

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from multimodal_search import services

EXAMPLES = 5


class Command(BaseCommand):
    help = (
        "Compare every searchable product with the index and report drift: never indexed, old encoder version, "
        "stale content hash, failed, stuck, vectors of deleted or inactive products. --fix repairs it."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--fix",
            action="store_true",
            help="Repair: delete orphaned vectors, retry failed products and (re)index the others.",
        )
        parser.add_argument(
            "--sync", action="store_true", help="With --fix: index in this process instead of a Celery worker."
        )
        parser.add_argument("--chunk", type=int, default=None, help="Products read per step (default CHUNK).")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["sync"] and not options["fix"]:
            raise CommandError("--sync only applies with --fix.")
        if options["chunk"] is not None and options["chunk"] < 1:
            raise CommandError("--chunk must be at least 1.")
        drift = self._scan(options["chunk"])
        self._table(drift)
        if not drift.total:
            self.stdout.write(self.style.SUCCESS(f"The index is current: {drift.products} product(s) checked."))
            return
        if not options["fix"]:
            self.stderr.write(f"{drift.total} problem(s) found; run with --fix to repair them.")
            raise SystemExit(1)
        self._fix(drift, options["sync"])

    def _scan(self, chunk: int | None) -> services.Drift:
        with tqdm(unit="product", desc="Checking", file=self._bar_stream()) as bar:
            return services.find_drift(progress=bar.update, chunk=chunk)

    def _table(self, drift: services.Drift) -> None:
        self.stdout.write(f"Encoder {drift.model_id}; {drift.products} searchable product(s).")
        self.stdout.write(f"{'problem':<15} {'count':>7}  examples")
        for name, pks, why in drift.problems():
            examples = ", ".join(pks[:EXAMPLES]) + (", ..." if len(pks) > EXAMPLES else "")
            self.stdout.write(f"{name:<15} {len(pks):>7}  {examples or '-'}  ({why})")
        for pk, error in list(drift.failed.items())[:EXAMPLES]:
            self.stdout.write(f"  failed {pk}: {error}")

    def _fix(self, drift: services.Drift, sync: bool) -> None:
        try:
            if sync:
                with tqdm(total=len(drift.to_index()), unit="product", desc="Indexing", file=self._bar_stream()) as bar:
                    repair = services.fix_drift(drift, sync=True, progress=bar.update)
            else:
                repair = services.fix_drift(drift)
        except services.EnqueueError as exc:
            raise CommandError(f"{exc}; start Redis or use --fix --sync.") from exc
        self.stdout.write(f"Removed {repair.orphans_removed} orphaned row(s).")
        if not sync:
            self.stdout.write(self.style.SUCCESS(f"Sent {repair.sent} product(s) to the indexing worker."))
            return
        report = repair.report or services.IndexReport()
        self.stdout.write(
            f"Indexed {report.indexed}, unchanged {report.unchanged}, removed {report.removed}, "
            f"failed {len(report.failed)}, skipped {report.skipped}."
        )
        left = services.find_drift()
        if left.total:
            self._table(left)
            self.stderr.write(f"{left.total} problem(s) remain after the repair.")
            raise SystemExit(1)
        self.stdout.write(self.style.SUCCESS("The index is current."))

    def _bar_stream(self) -> TextIO:
        # tqdm writes to the wrapped stream; django-stubs types unknown OutputWrapper attributes as callables
        return cast(TextIO, self.stderr._out)
