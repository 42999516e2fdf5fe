"""Acceptance smoke of a running store: text, main-photo and alternate-photo queries over HTTP.

Usage: .venv/bin/python bench/api_smoke.py [--base http://127.0.0.1:8000] [--catalog PATH] [--n 20]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def get(base: str, q: str, k: int) -> dict:
    url = f"{base}/api/search/?" + urllib.parse.urlencode({"q": q, "k": k})
    with urllib.request.urlopen(url) as response:
        return json.load(response)


def post_photo(base: str, path: Path, k: int) -> dict:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="k"\r\n\r\n{k}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{path.name}"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + path.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        f"{base}/api/search/", data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    with urllib.request.urlopen(request) as response:
        return json.load(response)


def main() -> None:
    import urllib.parse  # noqa: F401

    parser = argparse.ArgumentParser()
    parser.add_argument("--base", default="http://127.0.0.1:8000")
    parser.add_argument("--catalog", default=str(Path(__file__).resolve().parents[2] / "shared/datasets/magento-luma"))
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    from shop.catalog.importers.luma import read_luma  # here: get() and post_photo() need no Django

    records = list(read_luma(Path(args.catalog)))
    rng = random.Random(args.seed)

    result = get(args.base, "backpack", 10)
    bags = sum(1 for r in result["results"] if "Bags" in (r.get("category") or ""))
    print(f"q=backpack: {bags}/10 results in Gear > Bags")

    mains = rng.sample(records, args.n)
    first, times = 0, []
    for record in mains:
        started = time.perf_counter()
        skus = [r["sku"] for r in post_photo(args.base, Path(record.images[0][0]), 5)["results"]]
        times.append(time.perf_counter() - started)
        first += skus[:1] == [record.sku]
    print(
        f"main photo -> product first: {first}/{len(mains)} (median {sorted(times)[len(times) // 2] * 1000:.0f} ms/request)"
    )

    alternates = [(r.sku, Path(p)) for r in records for p, kind in r.images if kind != "main"]
    picked = rng.sample(alternates, min(args.n, len(alternates)))
    top1 = top5 = 0
    for sku, path in picked:
        skus = [r["sku"] for r in post_photo(args.base, path, 5)["results"]]
        top1 += skus[:1] == [sku]
        top5 += sku in skus
    print(f"alternate photo -> product: top1 {top1}/{len(picked)}, top5 {top5}/{len(picked)}")


if __name__ == "__main__":
    main()
