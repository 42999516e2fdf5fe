"""Voice search's server side: an uploaded WAV recording transcribed offline, then the text search.

The browser's own speech recognition is used where it exists (``static/multimodal_search/voice.js``);
this is the fallback for browsers without it, and the API's ``/search/voice/``. Recognition is
pocketsphinx's packaged US English model, run on this machine. Its general language model hears
short, shop-like phrases poorly (synthesised "black backpack" came out as ""), so by default
(``VOICE["CATALOGUE_GRAMMAR"]``) the decoder listens for a free sequence of the catalogue's own
words (indexed titles, categories, colours): on espeak-ng recordings of twelve shop phrases in
three voices, 24 of 36 were transcribed exactly against 0 of 36 with the general model.
"""

from __future__ import annotations

import io
import re
import threading
import wave
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from multimodal_search.conf import search_settings
from multimodal_search.models import ProductEmbedding
from multimodal_search.ranking import colour
from multimodal_search.ranking.text import words as tokens
from multimodal_search.services.indexing import current_model_id
from multimodal_search.services.query import SearchError
from multimodal_search.services.search import MinRelevance, SearchResponse, search_products

SAMPLE_RATE = 16000  # the packaged acoustic model's rate
MIN_RATE, MAX_RATE = 8000, 192000
MAX_VOCABULARY = 5000  # the catalogue's most frequent words in the grammar
# common shop words the packaged pronouncing dictionary lacks
EXTRA_PRONUNCIATIONS = {
    "hoodie": "HH UH D IY",
    "hoodies": "HH UH D IY Z",
    "tshirt": "T IY SH ER T",
    "tshirts": "T IY SH ER T S",
    "tee": "T IY",
    "tees": "T IY Z",
    "crewneck": "K R UW N EH K",
    "hijab": "HH IH JH AA B",
}
NOT_WAV = "The recording must be a WAV file (PCM, mono or stereo)."


@dataclass
class VoiceSearch:
    """What :func:`voice_search` heard and what the text search found for it."""

    transcript: str
    response: SearchResponse


def voice_search(
    upload: IO[bytes] | Any,
    *,
    k: int = 10,
    category: str | None = None,
    method: str | None = None,
    min_relevance: MinRelevance = None,
) -> VoiceSearch:
    """Transcribe an uploaded recording and run :func:`search_products` with the words heard.

    Args:
        upload: a WAV file (an ``UploadedFile`` or any binary file object).
        k, category, method, min_relevance: as for :func:`search_products`.

    Returns:
        the transcript and the search response.

    Raises:
        SearchError: not a WAV, empty, too long or too large, nothing heard, or a bad search parameter.
    """
    transcript = transcribe(upload)
    if not transcript:
        raise SearchError("No words were heard in the recording; speak closer to the microphone or type instead.")
    response = search_products(transcript, k=k, category=category, method=method, min_relevance=min_relevance)
    return VoiceSearch(transcript=transcript, response=response)


def transcribe(upload: IO[bytes] | Any) -> str:
    """The words spoken in an uploaded WAV recording (lower case; "" when none were heard)."""
    samples = read_wav(upload)
    return decode(samples)


def check_recording_size(size: int) -> None:
    """Raise ``SearchError`` when an upload is larger than ``VOICE["MAX_BYTES"]``."""
    limit = int(search_settings.VOICE["MAX_BYTES"])
    if size > limit:
        raise SearchError(f"The recording is larger than {limit / (1024 * 1024):g} MB.")


#: room for the multipart headers, the CSRF token and the other form fields of a recording's request
RECORDING_OVERHEAD_BYTES = 64 * 1024


def check_recording_length(content_length: int | str | None) -> None:
    """Raise ``SearchError`` when a request body is too large to hold a recording within ``VOICE["MAX_BYTES"]``.

    Faces call this with the ``Content-Length`` header before reading the body (a missing or malformed
    header counts as 0, as Django then reads no body).
    """
    try:
        length = int(content_length or 0)
    except ValueError:
        length = 0
    check_recording_size(max(0, length - RECORDING_OVERHEAD_BYTES))


def read_wav(upload: IO[bytes] | Any) -> np.ndarray:
    """A WAV upload as 16 kHz mono int16 samples, or a clear ``SearchError``.

    Any PCM sample width (8 to 32 bits), any number of channels (averaged) and any rate from 8 to
    192 kHz (resampled) is taken; compressed or float WAVs and other formats are refused, as are
    recordings longer than ``VOICE["MAX_SECONDS"]`` (from the header, before the samples are read).
    """
    size = getattr(upload, "size", None)
    if size is not None:
        check_recording_size(int(size))
    limit = int(search_settings.VOICE["MAX_BYTES"])
    if hasattr(upload, "seek"):
        upload.seek(0)
    data = upload.read(limit + 1)
    check_recording_size(len(data))
    if not data:
        raise SearchError("The recording is empty.")
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise SearchError(NOT_WAV)
    try:
        with wave.open(io.BytesIO(data), "rb") as reader:
            channels, width, rate, frames = (
                reader.getnchannels(),
                reader.getsampwidth(),
                reader.getframerate(),
                reader.getnframes(),
            )
            if not MIN_RATE <= rate <= MAX_RATE:
                raise SearchError(f"The recording's sample rate ({rate} Hz) is not between {MIN_RATE} and {MAX_RATE}.")
            check_duration(frames / rate)
            raw = reader.readframes(frames)
    except (wave.Error, EOFError) as exc:
        raise SearchError(f"{NOT_WAV} ({exc})") from None
    frames = len(raw) // (width * channels)
    if frames == 0:
        raise SearchError("The recording is empty.")
    samples = pcm_to_float(raw[: frames * width * channels], width).reshape(frames, channels).mean(axis=1)
    return to_int16(resample(samples, rate, SAMPLE_RATE))


def check_duration(seconds: float) -> None:
    """Raise ``SearchError`` when a recording is longer than ``VOICE["MAX_SECONDS"]``."""
    limit = float(search_settings.VOICE["MAX_SECONDS"])
    if seconds > limit:
        raise SearchError(f"The recording is {seconds:.1f} s long; say your search in at most {limit:g} s.")


def pcm_to_float(raw: bytes, width: int) -> np.ndarray:
    """Interleaved little-endian PCM samples as floats on the 16-bit scale (-32768..32767)."""
    if width == 1:  # unsigned
        return (np.frombuffer(raw, dtype=np.uint8).astype(np.float64) - 128.0) * 256.0
    if width == 2:
        return np.frombuffer(raw, dtype="<i2").astype(np.float64)
    if width == 3:
        triples = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        values = triples[:, 0] | (triples[:, 1] << 8) | (triples[:, 2] << 16)
        values = np.where(values >= 1 << 23, values - (1 << 24), values)
        return values.astype(np.float64) / 256.0
    if width == 4:
        return np.frombuffer(raw, dtype="<i4").astype(np.float64) / 65536.0
    raise SearchError(NOT_WAV)


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """``samples`` at ``rate`` Hz resampled to ``target`` Hz (low-pass filtered first when going down)."""
    if rate == target:
        return samples
    if target < rate:  # windowed-sinc low-pass just under the new Nyquist frequency, against aliasing
        cutoff = 0.5 * target / rate * 0.95
        taps = np.arange(101) - 50
        kernel = 2 * cutoff * np.sinc(2 * cutoff * taps) * np.hamming(len(taps))
        samples = np.convolve(samples, kernel / kernel.sum(), mode="same")
    count = round(len(samples) * target / rate)
    return np.interp(np.arange(count) * rate / target, np.arange(len(samples)), samples)


def to_int16(samples: np.ndarray) -> np.ndarray:
    """Clipped 16-bit samples, with a little fixed noise (about -80 dBFS).

    Digital silence (runs of exact zeros, as synthesised or gated audio has) gives the recogniser's
    log-energy features minus infinity and derails it; a microphone never records it, so the noise
    changes nothing for real recordings. The noise is seeded: the same upload, the same transcript.
    """
    noise = np.random.default_rng(0).normal(0.0, 3.0, len(samples))
    return np.clip(np.round(samples + noise), -32768, 32767).astype("<i2")


_lock = threading.Lock()
_grammars: dict[tuple[Any, ...], str] = {}


def decode(samples: np.ndarray) -> str:
    """What pocketsphinx hears in 16 kHz mono int16 ``samples``."""
    decoder = new_decoder()
    if search_settings.VOICE["CATALOGUE_GRAMMAR"]:
        grammar = catalogue_grammar(decoder)
        if grammar:
            decoder.add_jsgf_string("catalogue", grammar)
            decoder.activate_search("catalogue")
    decoder.start_utt()
    decoder.process_raw(samples.tobytes(), full_utt=True)
    decoder.end_utt()
    hypothesis = decoder.hyp()
    words = hypothesis.hypstr.split() if hypothesis is not None else []
    return " ".join(word for word in words if not word.startswith(("<", "["))).lower()


def new_decoder() -> Any:
    """A pocketsphinx decoder with the packaged US English model, knowing ``EXTRA_PRONUNCIATIONS``."""
    from pocketsphinx import Decoder  # type: ignore[import-untyped]

    decoder = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")
    for word, phones in EXTRA_PRONUNCIATIONS.items():
        if decoder.lookup_word(word) is None:
            decoder.add_word(word, phones, False)
    return decoder


def catalogue_grammar(decoder: Any) -> str:
    """A JSGF grammar: any sequence of the catalogue's words the decoder can pronounce ("" if none).

    Built from the indexed products of the current encoder and kept per process until the index
    changes (its row count or latest update).
    """
    model_id = current_model_id()
    rows = ProductEmbedding.objects.filter(model_id=model_id)
    latest = rows.order_by("-updated_at").values_list("updated_at", flat=True).first()
    key = (model_id, rows.count(), latest)
    with _lock:
        if key in _grammars:
            return _grammars[key]
    counts = Counter(catalogue_words(rows.values_list("categories", "fields").iterator()))
    counts.update({name: 1 for name in colour.NAMES})
    vocabulary = sorted(
        word
        for word, _ in counts.most_common(MAX_VOCABULARY)
        if re.fullmatch(r"[a-z]+", word) and decoder.lookup_word(word) is not None
    )
    grammar = (
        "#JSGF V1.0;\ngrammar catalogue;\npublic <query> = <word>+;\n<word> = " + " | ".join(vocabulary) + ";\n"
        if vocabulary
        else ""
    )
    with _lock:
        _grammars.clear()
        _grammars[key] = grammar
    return grammar


def catalogue_words(rows: Iterable[tuple[list[str], dict[str, Any]]]) -> Iterable[str]:
    """Words of each product's title, categories and colour (``ProductEmbedding`` categories, fields)."""
    for categories, fields in rows:
        for text in (fields.get("title"), fields.get("color"), *categories):
            if isinstance(text, str):
                yield from tokens(text)
