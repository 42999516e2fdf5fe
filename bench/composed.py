"""A photo and words together ("like this photo, but in blue"): does the same product in the colour asked for
come first?

Usage: .venv/bin/python bench/composed.py [--queries 300] [--methods feature,decision] [--seed 0]

It runs against the database and models the environment points to (``MMSEARCH_DATA_DIR``: e.g. the one
``make demo`` or ``bench/relevance.sh`` indexed the Luma catalogue into). One query per product and other
colour of its group: a photo of the product (an alternate or back view when it has one, else its main photo)
and the words "in <colour>", the colour of another product of its group. The target is that product (the
same product in the colour asked for). Reported: R@1, R@5 and MRR of the target among every colour (the
results not grouped), and "kind+colour@5", the share of the top five of the photographed product's kind (its
deepest category) in the colour asked for. A second family asks for a colour the product does not come in but
other products of its kind do (Luma's orange Lucia bra "in blue"): there kind+colour@5 is what counts. A third
asks for the other gender ("for men" with a women's hoodie): kind+gender@5 is the share of the top five of its
kind (the deepest category's name) and that gender. Each
family is a seeded sample of at most ``--queries``. ``--shopper-photos`` crops, mirrors and compresses each
photo first, so that it is not the photo indexed.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import django  # noqa: E402

django.setup()

from PIL import Image, ImageOps  # noqa: E402

from multimodal_search import services  # noqa: E402
from multimodal_search.adapters import get_adapter  # noqa: E402


@dataclass(frozen=True)
class Asked:
    photo: str  # the query photo's path
    colour: str  # the colour the words ask for
    leaf: str  # the photographed product's deepest category
    target: str | None  # the photographed product in that colour (None: it does not come in it)


def queries(limit: int, seed: int) -> tuple[list[Asked], list[Asked], dict[str, tuple[str, str]]]:
    """Queries of the two families (each a seeded sample of at most ``limit``), and each product's (colour,
    deepest category)."""
    adapter = get_adapter()
    groups: dict[str, list] = {}
    facts: dict[str, tuple[str, str]] = {}
    for product in adapter.get_queryset():
        groups.setdefault(adapter.get_group(product), []).append(product)
        leaf = max(adapter.get_categories(product), key=len, default="")
        facts[str(product.pk)] = (str(getattr(product, "color", "") or "").strip(), leaf)
    colours_of_leaf: dict[str, set[str]] = {}
    for colour, leaf in facts.values():
        colours_of_leaf.setdefault(leaf, set()).add(colour)
    another, missing = [], []
    for members in groups.values():
        colours = {facts[str(p.pk)][0]: p for p in members if facts[str(p.pk)][0]}
        for product in members:
            images = adapter.get_images(product)
            own, leaf = facts[str(product.pk)]
            if not images or not own or not leaf:
                continue
            photo = next((i for i in images if "main" not in Path(i.path).name), images[0]).path
            another += [Asked(photo, c, leaf, str(t.pk)) for c, t in colours.items() if c != own]
            # a colour other products of its kind come in, but not it
            missing += [Asked(photo, c, leaf, None) for c in sorted(colours_of_leaf[leaf] - set(colours)) if c]
    random.Random(seed).shuffle(another)
    random.Random(seed).shuffle(missing)
    return another[:limit], missing[:limit], facts


def gender_queries(limit: int, seed: int) -> tuple[list[tuple[str, str, str]], dict[str, tuple[str, str]]]:
    """(photo, the other gender asked for, the photographed product's leaf name): a photo of a men's or women's
    product and "for <the other>", where products of that gender and leaf name exist; and each product's
    (gender, leaf name)."""
    adapter = get_adapter()
    facts: dict[str, tuple[str, str]] = {}
    photos: dict[str, str] = {}
    for product in adapter.get_queryset():
        leaf = max(adapter.get_categories(product), key=len, default="").split(" > ")[-1]
        facts[str(product.pk)] = (str(getattr(product, "gender", "") or "").strip().lower(), leaf)
        images = adapter.get_images(product)
        if images:
            photos[str(product.pk)] = next((i for i in images if "main" not in Path(i.path).name), images[0]).path
    having = set(facts.values())
    other = {"men": "women", "women": "men"}
    asked = [
        (photos[pk], other[gender], leaf)
        for pk, (gender, leaf) in facts.items()
        if pk in photos and gender in other and leaf and (other[gender], leaf) in having
    ]
    random.Random(seed).shuffle(asked)
    return asked[:limit], facts


def shopper_photo(image: Image.Image) -> Image.Image:
    width, height = image.size
    box = (int(width * 0.15), int(height * 0.15), int(width * 0.85), int(height * 0.85))
    out = io.BytesIO()
    ImageOps.mirror(image.crop(box)).save(out, format="JPEG", quality=60)
    out.seek(0)
    return Image.open(out).convert("RGB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--methods", default="feature,decision")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--shopper-photos",
        action="store_true",
        help="each photo cropped to its central 70%%, mirrored and saved again as a JPEG of quality 60: "
        "not the indexed photo, as a shopper's own photo or screenshot would not be",
    )
    parser.add_argument(
        "--phrasing",
        default="{words}",
        help="how the words are put, {words} standing for 'in <colour>' or 'for <gender>' "
        "(e.g. 'like this photo, but {words}')",
    )
    args = parser.parse_args()
    if "{words}" not in args.phrasing:
        parser.error("--phrasing must contain {words}")

    def put(words: str) -> str:
        return args.phrasing.replace("{words}", words)

    another, missing, facts = queries(args.queries, args.seed)
    gendered, genders = gender_queries(args.queries, args.seed)
    paths = {q.photo for q in another + missing} | {path for path, _, _ in gendered}
    photos = {path: Image.open(path).convert("RGB") for path in paths}
    if args.shopper_photos:
        photos = {path: shopper_photo(image) for path, image in photos.items()}
    print(
        f"{len(another)} queries of another colour of the photo's product, {len(missing)} of a colour it does not "
        f"come in (words: {put('in <colour>')!r})"
    )
    for method in args.methods.split(","):
        started = time.perf_counter()
        ranks, kind = [], []
        for q in another + missing:
            hits = services.search_products(put(f"in {q.colour.lower()}"), photos[q.photo], k=50, method=method).hits
            order = [hit.product_pk for hit in hits]
            if q.target is not None:
                ranks.append(order.index(q.target) + 1 if q.target in order else None)
            kind.append(sum(facts.get(pk) == (q.colour, q.leaf) for pk in order[:5]) / 5)
        took = (time.perf_counter() - started) / max(1, len(kind)) * 1000
        n = len(ranks)
        k1, k2 = kind[:n], kind[n:]
        if n:
            r1 = sum(r == 1 for r in ranks) / n
            r5 = sum(r is not None and r <= 5 for r in ranks) / n
            mrr = sum(1 / r for r in ranks if r) / n
            print(
                f"{method:9s} another colour: R@1 {r1:.3f} R@5 {r5:.3f} MRR {mrr:.3f} kind+colour@5 {sum(k1) / n:.3f}"
                f"  ({took:.0f} ms a query)"
            )
        if k2:
            print(f"{method:9s} a colour it does not come in: kind+colour@5 {sum(k2) / len(k2):.3f}")
        if gendered:
            shares = []
            for path, gender, leaf in gendered:
                order = [
                    h.product_pk
                    for h in services.search_products(put(f"for {gender}"), photos[path], k=5, method=method).hits
                ]
                shares.append(sum(genders.get(pk) == (gender, leaf) for pk in order) / 5)
            print(
                f"{method:9s} the other gender ('for men', 'for women'): kind+gender@5 {sum(shares) / len(shares):.3f}"
            )


if __name__ == "__main__":
    main()
