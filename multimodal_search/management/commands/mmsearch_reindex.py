"""python manage.py mmsearch_reindex [--missing|--all] [--sync] [--force] [--batch-size N] [--keep-old] [--indexes-after]"""

from __future__ import annotations

import logging
import time
from typing import TextIO, cast

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from multimodal_search import services
from multimodal_search.conf import search_settings


class Command(BaseCommand):
    help = "Index products: encode text and photos and store their vectors."

    def add_arguments(self, parser):
        scope = parser.add_mutually_exclusive_group()
        scope.add_argument(
            "--missing", action="store_true", help="Only products without vectors for the current encoder."
        )
        scope.add_argument("--all", action="store_true", help="Every searchable product (default).")
        parser.add_argument("--sync", action="store_true", help="Encode in this process instead of a Celery worker.")
        parser.add_argument("--force", action="store_true", help="Re-encode even when content is unchanged.")
        parser.add_argument("--batch-size", type=int, default=None, help="Products per batch/task.")
        parser.add_argument("--no-wait", action="store_true", help="Enqueue tasks and return without waiting.")
        parser.add_argument(
            "--timeout", type=float, default=3600, help="Seconds to wait for the worker (default 3600)."
        )
        parser.add_argument(
            "--keep-old",
            action="store_true",
            help="Keep the vectors of older encoder versions (by default they are deleted once the current "
            "version covers every product).",
        )
        parser.add_argument(
            "--indexes-after",
            action="store_true",
            help="Write the rows without the HNSW indexes and build them once at the end (what happens anyway "
            "when the store holds no vectors yet): far less work than inserting each row into them, but "
            "searches of this encoder version read its vectors whole until the end.",
        )

    def handle(self, *args, **options):
        batch_size = options["batch_size"] or int(search_settings.BATCH_SIZE)
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        if options["indexes_after"] and options["no_wait"] and not options["sync"]:
            raise CommandError("--indexes-after builds the indexes once the worker is done: leave out --no-wait.")
        model_id = services.current_model_id()
        removed = services.prune_stale()
        # a first indexing (nothing stored, so nothing to search yet): the indexes are built after the rows
        after = options["indexes_after"] or (services.store_is_empty() and (options["sync"] or not options["no_wait"]))
        chunks = list(services.chunked_pks(missing_only=options["missing"], batch_size=batch_size, model_id=model_id))
        total = sum(len(chunk) for chunk in chunks)
        self.stdout.write(f"{total} product(s) to index with {model_id}; removed {removed} stale row(s).")
        if total and after:
            why = "--indexes-after" if options["indexes_after"] else "the store holds no vectors yet"
            self.stdout.write(f"Writing the rows without HNSW indexes ({why}); they are built once all are written.")
        if total and options["sync"]:
            self._run_sync(chunks, total, options["force"], after)
        elif total:
            self._run_worker(chunks, total, options, model_id, after)
            if options["no_wait"]:
                return
        # also those an earlier run left unbuilt (stopped before its end), or that no task could build (a table
        # over ``store.hnsw.TASK_BUILD_ROWS`` rows)
        if (total and after) or services.missing_vector_indexes(model_id):
            self._build_indexes()
        if total:
            services.refresh_statistics()  # fresh row counts and common words for searches from now on
        if not options["keep_old"]:
            removed, older = services.drop_older_encoders()
            if older:
                self.stdout.write(
                    f"Removed {removed} row(s) of {len(older)} older encoder version(s): {', '.join(older)}."
                )

    def _run_sync(self, chunks, total, force, after):
        report = services.IndexReport()
        # tqdm writes to the wrapped stream; django-stubs types unknown OutputWrapper attributes as callables
        bar = tqdm(total=total, unit="product", desc="Indexing", file=cast(TextIO, self.stderr._out))
        # each batch's log line (where its time went) printed above the bar rather than through it
        with bar, logging_redirect_tqdm([logging.getLogger("multimodal_search")]):
            for chunk in chunks:
                report.merge(services.index_products(chunk, force=force, indexes_after=after))
                bar.update(len(chunk))
        self._summary(report.indexed, report.unchanged, report.removed, report.failed_images)

    def _run_worker(self, chunks, total, options, model_id, after):
        try:
            results = [
                services.enqueue_index(
                    chunk, force=options["force"], batch_size=len(chunk), bulk=True, indexes_after=after
                )[0]
                for chunk in chunks
            ]
        except services.EnqueueError as exc:
            raise CommandError(f"{exc}; start Redis or use --sync.") from exc
        queue = services.enqueue.bulk_queue()  # BULK_QUEUE (a GPU worker's), else QUEUE
        self.stdout.write(f"Enqueued {len(results)} task(s) on queue {queue!r}.")
        if options["no_wait"]:
            return
        sizes = {result.id: len(chunk) for result, chunk in zip(results, chunks)}
        wanted = [pk for chunk in chunks for pk in chunk]
        deadline = time.monotonic() + options["timeout"]
        done = 0
        with tqdm(total=total, unit="product", desc="Indexing (worker)", file=cast(TextIO, self.stderr._out)) as bar:
            while done < total:
                if time.monotonic() > deadline:
                    raise CommandError(
                        f"timed out after {options['timeout']:.0f} s with {done}/{total} indexed; "
                        f"is a worker consuming the {queue!r} queue?"
                    )
                time.sleep(1)
                current = self._progress(results, sizes, wanted, model_id)
                bar.update(current - done)
                done = current
        self.stdout.write(self.style.SUCCESS(f"Indexed {total} product(s) through the worker."))

    def _progress(self, results, sizes, wanted, model_id) -> int:
        """Products done: from task states when a result backend is set, else from stored rows."""
        if services.results_backend_configured():
            done = 0
            for result in results:
                if result.failed():
                    raise CommandError(f"indexing task {result.id} failed: {result.result!r}")
                if result.ready():
                    done += sizes[result.id]
            return done
        return services.count_indexed(wanted, model_id)

    def _build_indexes(self) -> None:
        """``mmsearch_indexes --build``: the indexes the rows were written without, with a progress bar each."""
        started = time.monotonic()
        self.stdout.write("Building the HNSW indexes over the stored rows.")
        if connection.in_atomic_block:  # called inside a transaction, where no build may run concurrently
            services.ensure_vector_indexes()
        else:
            try:
                call_command("mmsearch_indexes", "--build", stdout=self.stdout._out, stderr=self.stderr._out)
            except CommandError as exc:  # the rows are written: say so, and how to finish
                raise CommandError(
                    f"{str(exc).rstrip('.')}. The products are indexed; `mmsearch_indexes --build` builds the indexes."
                ) from None
        self.stdout.write(f"Indexes built in {time.monotonic() - started:.1f} s.")

    def _summary(self, indexed, unchanged, removed, failed):
        self.stdout.write(self.style.SUCCESS(f"Indexed {indexed}, unchanged {unchanged}, removed {removed}."))
        for path in failed:
            self.stderr.write(f"unreadable photo: {path}")
