"""Can workers forked from a preloading gunicorn master use the GPU? ``python bench/gpu_fork.py``.

What ``shop/gunicorn_conf.py`` and ``services.warm_up_to_share`` do on a GPU web host, without Django (a
GPU machine often has torch and transformers but not the app's stack): the master asks the encoder which
device it runs on, loads nothing when that is a GPU, and forks the workers; each worker then loads the
models on the GPU and encodes a text and a photo. Each way of doing it runs in a fresh interpreter:

* ``nvml`` (what the app does): ``PYTORCH_NVML_BASED_CUDA_CHECK=1``, so the master's question does not
  initialise CUDA;
* ``driver``: the same with torch's default check, which initialises the CUDA driver in the master;
* ``master-loaded``: the master loads the models on the GPU before it forks (what preloading on a GPU
  would do).

On a CPU-only machine every way runs on the CPU, and all of them should pass. The script exits non-zero
when ``nvml`` fails. ``--workers`` (default 2) workers are forked in each.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WAYS = ("nvml", "driver", "master-loaded")


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--way", choices=WAYS, help="run one way in this process (the script runs each so)")
    parser.add_argument("--timeout", type=float, default=180, help="seconds each way may take (default 180)")
    parser.add_argument("--head", help="a head file (default: a random head of the packaged shape)")
    return parser.parse_args()


def worker(head: str, encoder: Any = None) -> dict[str, Any]:
    """In a forked worker: load the models on the encoder's device (unless the master's ``encoder`` holds
    them), encode a text and a photo."""
    import numpy as np
    from PIL import Image

    from multimodal_search.encoders.packaged import PackagedEncoder

    began = time.perf_counter()
    encoder = encoder or PackagedEncoder(head_path=head)
    photo = Image.fromarray(np.tile(np.linspace(0, 255, 320, dtype=np.uint8)[None, :, None], (240, 1, 3)))
    text = encoder.encode_text(["red running jacket"])
    shared, _features = encoder.encode_image_pair([photo])
    return {
        "device": encoder.device,
        "text_norm": round(float(np.linalg.norm(text[0])), 4),
        "photo_norm": round(float(np.linalg.norm(shared[0])), 4),
        "seconds": round(time.perf_counter() - began, 2),
    }


def fork_worker(head: str, encoder: Any = None) -> tuple[int, int]:
    """(pid, read end of the pipe its result comes through)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            result: dict[str, Any] = {"ok": True, **worker(head, encoder)}
        except BaseException as exc:  # the result says what failed
            result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
        os.write(write, json.dumps(result).encode())
        os._exit(0)
    os.close(write)
    return pid, read


def run_way(way: str, head: str, workers: int) -> dict[str, Any]:
    """The master's side of one way (in a fresh interpreter: the environment is set before torch loads)."""
    if way == "nvml":
        os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = "1"
    import torch

    from multimodal_search.encoders.packaged import PackagedEncoder

    # one CPU thread, as a preloading master runs the models (services.warm_up_to_share): a child forked
    # after torch's OpenMP threads ran blocks, on any device
    torch.set_num_threads(1)
    encoder = PackagedEncoder(head_path=head)
    device = encoder.device  # what warm_up_to_share asks; the weights load only on use
    if way == "master-loaded":
        encoder.warm_up()  # the workers then use these models
    master = {"device": device, "cuda_initialised": torch.cuda.is_initialized()}
    shared = encoder if way == "master-loaded" else None
    children = [fork_worker(head, shared) for _ in range(workers)]
    results = []
    for pid, read in children:
        chunks = []
        while chunk := os.read(read, 65536):
            chunks.append(chunk)
        os.close(read)
        os.waitpid(pid, 0)
        results.append(json.loads(b"".join(chunks) or b'{"ok": false, "error": "no result"}'))
    return {"way": way, "master": master, "workers": results}


def main() -> None:
    args = parse()
    if args.way:
        print(json.dumps(run_way(args.way, args.head, args.workers)), flush=True)
        return
    from gpu import random_head  # bench/gpu.py, beside this script

    head = args.head or random_head()  # written here, so that no master below has run torch before it forks
    env = {key: value for key, value in os.environ.items() if key != "PYTORCH_NVML_BASED_CUDA_CHECK"}
    outcome = {}
    for way in WAYS:
        command = [sys.executable, __file__, "--way", way, "--head", head, "--workers", str(args.workers)]
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            row = {"way": way, "workers": [{"ok": False, "error": f"no answer in {args.timeout} s"}]}
        else:
            lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
            row = json.loads(lines[-1]) if lines else {"way": way, "error": done.stderr[-500:]}
        outcome[way] = row
        print(json.dumps(row), flush=True)
    print("\n| way | master's device | CUDA initialised in the master | workers that encoded |")
    print("|---|---|---|---|")
    for way, row in outcome.items():
        workers = row.get("workers", [])
        passed = sum(1 for result in workers if result.get("ok"))
        errors = {result["error"] for result in workers if not result.get("ok")}
        master = row.get("master", {})
        print(
            f"| {way} | {master.get('device', '?')} | {master.get('cuda_initialised', '?')} "
            f"| {passed} of {len(workers)}{' (' + '; '.join(sorted(errors)) + ')' if errors else ''} |"
        )
    nvml = outcome["nvml"]
    sys.exit(0 if nvml.get("workers") and all(result.get("ok") for result in nvml["workers"]) else 1)


if __name__ == "__main__":
    main()
