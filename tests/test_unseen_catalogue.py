"""An unseen, sparse catalogue, end to end with the real packaged models.

The relevance issue's last promise: import any jsonl catalogue, run
``mmsearch_train`` and ``mmsearch_reindex`` with no tuning, and search it
through the API, even when products state no colour, category or gender,
descriptions are empty, titles don't name the colour and some products have
no photo.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.core.management import call_command
from PIL import Image, ImageDraw

pytestmark = [pytest.mark.slow, pytest.mark.django_db]

SKIN = (224, 172, 140)
COLOURS = {"RED": (190, 35, 45), "BLUE": (45, 85, 180), "GREEN": (60, 140, 70)}


def model_shot(colour: tuple[int, int, int]) -> Image.Image:
    """A jacket worn by a model, on a white studio backdrop."""
    image = Image.new("RGB", (120, 150), (250, 250, 250))
    draw = ImageDraw.Draw(image)
    draw.ellipse((45, 5, 75, 40), fill=SKIN)
    draw.rectangle((30, 40, 90, 120), fill=colour)
    draw.rectangle((15, 45, 30, 110), fill=colour)
    draw.rectangle((90, 45, 105, 110), fill=colour)
    draw.rectangle((35, 120, 85, 150), fill=(200, 190, 160))  # trousers
    return image


def close_up(colour: tuple[int, int, int], neck: int = 70) -> Image.Image:
    """A collar close-up: the jacket runs off three edges, the chin off the top one."""
    image = Image.new("RGB", (120, 150), colour)
    draw = ImageDraw.Draw(image)
    for left in (0, 95):
        draw.rectangle((left, 0, left + 24, 24), fill=(250, 250, 250))
    draw.ellipse(((120 - neck) // 2, -40, (120 + neck) // 2, 50), fill=SKIN)
    return image


def bag_shot() -> Image.Image:
    image = Image.new("RGB", (120, 150), (250, 250, 250))
    draw = ImageDraw.Draw(image)
    draw.arc((35, 20, 85, 80), 180, 360, fill=(30, 30, 30), width=6)
    draw.rectangle((25, 50, 95, 130), fill=(30, 30, 30))
    return image


@pytest.fixture
def sparse_catalogue(tmp_path: Path) -> Path:
    folder = tmp_path / "unseen"
    (folder / "img").mkdir(parents=True)
    rows = []
    for name, rgb in COLOURS.items():
        model_shot(rgb).save(folder / f"img/jkt-{name.lower()}.jpg", quality=95)
        close_up(rgb).save(folder / f"img/jkt-{name.lower()}-collar.jpg", quality=95)
        rows.append(
            {
                "sku": f"JKT-{name}",
                "parent_sku": "JKT",
                "title": "Trail Jacket",
                "description": "",
                "images": [f"img/jkt-{name.lower()}.jpg", f"img/jkt-{name.lower()}-collar.jpg"],
            }
        )
    bag_shot().save(folder / "img/bag.jpg", quality=95)
    rows.append({"sku": "BAG-1", "title": "Canvas Tote Bag", "description": None, "images": ["img/bag.jpg"]})
    rows.append({"sku": "MUG-1", "title": "Ceramic Coffee Mug", "description": "Holds 350 ml.", "images": []})
    path = folder / "products.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n", encoding="utf-8")
    return path


def skus(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [hit["sku"] for hit in response.json()["results"]]


def test_sparse_catalogue_is_searchable_after_train_and_reindex(
    settings, packaged_settings, sparse_catalogue, tmp_path, client
):
    from multimodal_search import services

    settings.MEDIA_ROOT = tmp_path / "media"
    settings.MULTIMODAL_SEARCH = {**settings.MULTIMODAL_SEARCH, "AUTO_INDEX": False}
    quiet = {"stdout": io.StringIO(), "stderr": io.StringIO()}
    call_command("import_catalog", str(sparse_catalogue), **quiet)
    call_command("mmsearch_reindex", "--sync", **quiet)
    call_command("mmsearch_train", "--epochs", "3", **quiet)
    call_command("mmsearch_reindex", "--sync", "--missing", **quiet)
    status = services.index_status()
    assert status["indexed"] == status["products"] == 5 and status["missing"] == 0

    # the colour comes from the photos alone: no field, title or description says it
    for name in COLOURS:
        found = skus(client.get("/api/search/", {"q": f"{name.lower()} jacket", "k": 5}))
        assert found[0] == f"JKT-{name}", (name, found)
    every = client.get("/api/search/", {"q": "jacket", "k": 3, "group": "false"})
    assert set(skus(every)) == {f"JKT-{n}" for n in COLOURS}
    # by default the jacket is one result, its other colours its variants
    jacket = client.get("/api/search/", {"q": "jacket", "k": 3}).json()["results"][0]
    assert {jacket["sku"], *(variant["sku"] for variant in jacket["variants"])} == {f"JKT-{n}" for n in COLOURS}
    assert skus(client.get("/api/search/", {"q": "tote bag", "k": 3}))[0] == "BAG-1"
    # a product without a photo is still found by its words
    assert skus(client.get("/api/search/", {"q": "coffee mug", "k": 3}))[0] == "MUG-1"

    # a new close-up of the blue jacket (a wider neck than the indexed one) finds it
    upload = io.BytesIO()
    close_up(COLOURS["BLUE"], neck=80).save(upload, format="JPEG", quality=95)
    upload.seek(0)
    upload.name = "collar.jpg"
    response = client.post("/api/search/", {"image": upload, "k": 5})
    found = skus(response)
    assert found[0] == "JKT-BLUE", found
    explanation = response.json()["results"][0]["explanation"]
    assert explanation, "every result explains itself"
