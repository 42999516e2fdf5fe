"""Voice search: an espeak-ng recording through the API and the storefront fallback, and bad recordings."""

from __future__ import annotations

import io
import shutil
import subprocess
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from multimodal_search import services
from multimodal_search.services import voice
from shop.catalog.models import Category, Product
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db

ESPEAK = shutil.which("espeak-ng")
needs_espeak = pytest.mark.skipif(
    ESPEAK is None, reason="espeak-ng is not installed (apt-get install espeak-ng; .ci/run installs it)"
)

SPECS = [  # (sku, title, colour, category)
    ("BAG-1", "Driven Backpack", "Black", "Gear > Bags"),
    ("BAG-2", "Wayfarer Messenger Bag", "Black", "Gear > Bags"),
    ("HOOD-1", "Chaz Hoodie", "Black", "Men > Tops > Hoodies"),
    ("WATCH-1", "Summit Sport Watch", "Black", "Gear > Watches"),
    ("JACKET-1", "Rain Jacket", "Blue", "Men > Tops > Jackets"),
    ("TENT-1", "Camping Tent", "Green", "Gear > Camping"),
]


@pytest.fixture
def catalogue(indexed: Any) -> list[Product]:
    products = [
        ProductFactory(sku=sku, title=title, color=colour, category=Category.from_path(path), photos=[colour.lower()])
        for sku, title, colour, path in SPECS
    ]
    indexed(*products)
    return products


def spoken(text: str, tmp_path: Path) -> bytes:
    """``text`` read by espeak-ng (US English, slowly: 22.05 kHz mono WAV)."""
    path = tmp_path / "speech.wav"
    subprocess.run([ESPEAK, "-v", "en-us", "-s", "120", "-w", str(path), text], check=True, timeout=60)
    return path.read_bytes()


def wav_bytes(samples: np.ndarray, rate: int, channels: int = 1, width: int = 2) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(channels)
        writer.setsampwidth(width)
        writer.setframerate(rate)
        writer.writeframes(samples.astype("<i2").tobytes())
    return buffer.getvalue()


def upload(data: bytes, name: str = "voice.wav") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="audio/wav")


@needs_espeak
@pytest.mark.parametrize("path", ["/api/v1/search/voice/", "/api/search/voice/"])
def test_spoken_black_backpack_finds_bags_first(client: Any, catalogue: Any, tmp_path: Path, path: str) -> None:
    response = client.post(path, {"audio": upload(spoken("black backpack", tmp_path)), "k": "4"})
    assert response.status_code == 200, response.content[:500]
    body = response.json()
    assert body["transcript"] == "black backpack"
    assert body["query"]["text"] == "black backpack"
    skus = [hit["sku"] for hit in body["results"]]
    assert len(skus) <= 4
    assert skus[0] == "BAG-1", skus  # the backpack, then the other black products
    assert body["results"][0]["category"].endswith("Bags"), body["results"][0]


@needs_espeak
def test_voice_search_service_returns_transcript_and_results(catalogue: Any, tmp_path: Path) -> None:
    found = services.voice_search(io.BytesIO(spoken("black backpack", tmp_path)), k=3)
    assert found.transcript == "black backpack"
    assert found.response.hits[0].as_dict()["sku"] == "BAG-1"


@needs_espeak
def test_storefront_fallback_redirects_to_the_words_heard(client: Any, catalogue: Any, tmp_path: Path) -> None:
    response = client.post("/search/voice/", {"audio": upload(spoken("black backpack", tmp_path))})
    assert response.status_code == 303
    assert response["Location"] == "/search/?q=black+backpack"
    page = client.get(response["Location"])
    assert page.status_code == 200 and b"Driven Backpack" in page.content.split(b"Chaz Hoodie")[0]


def test_catalogue_grammar_lists_the_catalogue_words(catalogue: Any) -> None:
    grammar = voice.catalogue_grammar(voice.new_decoder())
    words = set(grammar.split("<word> = ", 1)[1].rstrip(";\n").split(" | "))
    assert {"backpack", "bags", "black", "hoodie", "tent", "gear"} <= words


def test_other_rates_and_stereo_are_converted_to_16k_mono() -> None:
    rate = 44100
    tone = (np.sin(2 * np.pi * 440 * np.arange(rate) / rate) * 10000).astype(np.int16)
    stereo = np.stack([tone, tone], axis=1).reshape(-1)
    samples = voice.read_wav(io.BytesIO(wav_bytes(stereo, rate, channels=2)))
    assert samples.dtype == np.dtype("<i2") and len(samples) == voice.SAMPLE_RATE
    # the tone survives: its peak stays near 10000 and its frequency at 440 Hz
    assert 9000 < np.abs(samples).max() < 11000
    spectrum = np.abs(np.fft.rfft(samples.astype(float)))
    assert abs(np.argmax(spectrum) * voice.SAMPLE_RATE / len(samples) - 440) < 2


def api_error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.content[:500]
    body = response.json()
    assert set(body) == {"error"}, body
    return dict(body["error"])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not a recording at all", "must be a WAV file"),
        (b"", "is empty"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt junk", "must be a WAV file"),
        (wav_bytes(np.zeros(0), 16000), "is empty"),
        (wav_bytes(np.zeros(16000 * 16), 16000), "at most 15 s"),
    ],
    ids=["text", "empty", "broken-header", "no-samples", "too-long"],
)
def test_bad_recordings_are_a_400_with_a_message(client: Any, catalogue: Any, data: bytes, message: str) -> None:
    error = api_error(client.post("/api/v1/search/voice/", {"audio": upload(data)}), 400)
    assert error["field"] == "audio" and message in error["message"], error
    storefront = client.post("/search/voice/", {"audio": upload(data)})
    assert storefront.status_code == 400 and message in storefront.content.decode()


def test_silence_is_no_speech(client: Any, catalogue: Any) -> None:
    error = api_error(client.post("/api/v1/search/voice/", {"audio": upload(wav_bytes(np.zeros(16000), 16000))}), 400)
    assert error["code"] == "no_speech" and "No words were heard" in error["message"]


def test_too_large_uploads_missing_audio_unknown_parameters_and_get(client: Any, settings: Any) -> None:
    settings.MULTIMODAL_SEARCH = {**settings.MULTIMODAL_SEARCH, "VOICE": {"MAX_BYTES": 1000}}
    big = wav_bytes(np.zeros(8000), 16000)
    error = api_error(client.post("/api/v1/search/voice/", {"audio": upload(big)}), 400)
    assert "larger than" in error["message"]
    settings.MULTIMODAL_SEARCH = {**settings.MULTIMODAL_SEARCH, "VOICE": {}}
    assert api_error(client.post("/api/v1/search/voice/", {}), 400)["field"] == "audio"
    unknown = api_error(client.post("/api/v1/search/voice/", {"audio": upload(big), "q": "x"}), 400)
    assert unknown["code"] == "unknown_parameter" and unknown["field"] == "q"
    assert api_error(client.get("/api/v1/search/voice/"), 405)["code"] == "method_not_allowed"
    assert client.get("/search/voice/").status_code == 405
