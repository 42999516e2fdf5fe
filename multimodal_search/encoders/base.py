"""Encoder contract: text and photos in, L2-normalised numpy vectors out."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np
from PIL import Image

T = TypeVar("T")


class Lazy(Generic[T]):
    """Something heavy (model weights) made on first use, once per instance, under a lock."""

    def __init__(self, make: Callable[[], T]) -> None:
        self._make = make
        self._lock = threading.Lock()
        self._value: T | None = None

    @property
    def loaded(self) -> bool:
        return self._value is not None

    def get(self) -> T:
        if self._value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._make()
        return self._value


#: ``precision`` options: fp32, or autocast to float16 / bfloat16 (meant for CUDA; see ``bench/gpu.py``)
PRECISIONS = ("fp32", "fp16", "bf16")


def autocast(device: str, precision: str) -> AbstractContextManager[Any]:
    """A context that runs the forward passes in ``precision`` (fp32: as they are)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    if precision == "fp32":
        return nullcontext()
    import torch

    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu", dtype=dtype)


class WeightsOnUse:
    """A model part whose weights load on first use (``_load``), once, on ``device`` (None: CUDA when present),
    run in ``precision`` (:data:`PRECISIONS`)."""

    def __init__(self, device: str | None, precision: str = "fp32") -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
        self.device_name = device
        self.precision = precision
        self._weights: Lazy[Any] = Lazy(self._load)

    def autocast(self) -> AbstractContextManager[Any]:
        return autocast(self.device, self.precision)

    @property
    def device(self) -> str:
        return resolve_device(self.device_name)

    @property
    def loaded(self) -> bool:
        return self._weights.loaded

    def _load(self) -> Any:
        raise NotImplementedError


def resolve_device(device: str | None = None) -> str:
    """Return ``device`` or, when None, "cuda" if available else "cpu"."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def whole_words(vocabulary: Iterable[str]) -> frozenset[str]:
    """The whole words of a tokenizer's vocabulary, lower-case letters only: a byte-pair vocabulary's
    word-final tokens (CLIP's ``"dress</w>"``), else a WordPiece vocabulary's tokens that are no
    continuation piece (BERT's ``"dress"``, not ``"##ing"``)."""
    tokens = list(vocabulary)
    ends = [token[: -len("</w>")] for token in tokens if token.endswith("</w>")]
    return frozenset(word for word in (ends or tokens) if word.isalpha() and word.islower())


class BaseEncoder:
    """Turns product text and photos into vectors.

    Subclasses load their weights lazily (on first encode), never at import
    or construction time, and return float32 arrays whose rows have unit norm.

    Attributes:
        dimensions: size of the shared text/image space (``encode_text`` and
            ``encode_images``).
        feature_dimensions: size of the visual feature space used for
            photo-to-photo similarity (``encode_image_features``).
        model_id: identifies the weights *and* any trained head; stored next
            to every vector so stale vectors can be found and replaced. Reading
            it does no I/O; :meth:`refresh` is where an encoder looks for new weights.
        similarity: the distance the vectors are meant for.
        features_carry_colour: the photo features already encode colour, so
            search adds no separate photo-colour signal by default.
    """

    similarity: ClassVar[str] = "cosine"
    features_carry_colour: bool = False
    dimensions: int
    feature_dimensions: int
    model_id: str

    def __init__(self, device: str | None = None, **options: Any) -> None:
        self.device_name = device
        self.options = options

    @property
    def device(self) -> str:
        return resolve_device(self.device_name)

    def refresh(self) -> None:
        """Pick up changed weights (e.g. a newly trained head) before a search or an indexing batch.

        ``model_id`` must stay cheap (no I/O): services read it once per request, after this call.
        The default does nothing.
        """

    def photo_relevance(self) -> Mapping[str, Any] | None:
        """How likely a photo query's result is the product in the photo, as training fitted it for these
        photo features (``{"calibration": ..., "cuts": ...}``, see ``ranking.calibration.PhotoCalibration``),
        or None (nothing fitted: photo results get no relevance)."""
        return None

    def known_words(self) -> frozenset[str]:
        """The whole words of the text model's vocabulary, lower case (empty: the model has none). A typed
        word in it is a word of the language, never read as a typo (``ranking.spelling``): "while" is
        not "white", "skirt" not "shirt"."""
        return frozenset()

    def encode_text(self, texts: list[str]) -> np.ndarray:
        """Encode texts into the shared space.

        Args:
            texts: product texts or queries.

        Returns:
            float32 array (len(texts), dimensions), unit rows.
        """
        raise NotImplementedError

    def encode_images(self, images: list[Image.Image]) -> np.ndarray:
        """Encode RGB photos into the shared (text-comparable) space."""
        return self.encode_image_pair(images)[0]

    def encode_image_features(self, images: list[Image.Image]) -> np.ndarray:
        """Encode RGB photos into the visual space used for photo-to-photo search."""
        return self.encode_image_pair(images)[1]

    def encode_image_pair(self, images: list[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
        """Return (shared, features) for the photos with one forward pass.

        Returns:
            ``(shared (n, dimensions), features (n, feature_dimensions))``.
        """
        raise NotImplementedError

    def encode_photo_query(self, image: Image.Image) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """A query photo: ``(shared, features, class probabilities or None)`` with one forward pass.

        The class probabilities (an ImageNet-style classifier's, where the encoder has one) tell what kind
        of thing the photo shows, so a search can say that the shop sells nothing like it. Default: none.
        """
        shared, features = self.encode_image_pair([image.convert("RGB")])
        return shared[0], features[0], None

    # ------------------------------------------------------------------ backbone / head split
    #
    # An encoder whose vectors are a cheap function ("projection": trained heads, fusion) of what
    # an expensive backbone computes (a CNN pass, a Transformer pass) names that backbone output with
    # ``text_backbone_id`` / ``image_backbone_id``. The indexing service then keeps the backbone
    # outputs per text and per photo, keyed by these ids (never by ``model_id``), and a new head
    # version only re-runs the projections. ``None`` (the default) means the encoder does not split:
    # every indexing run calls ``encode_text`` / ``encode_image_pair``.

    #: what ``encode_text_backbone`` computes (model, tokenisation); None: texts are not reused
    text_backbone_id: str | None = None
    #: what ``encode_image_backbone`` computes (model, preprocessing, views); None: photos are not reused
    image_backbone_id: str | None = None

    def encode_text_backbone(self, texts: list[str]) -> np.ndarray:
        """The backbone output of each text, the input of :meth:`project_text`.

        Returns:
            float32 array (len(texts), k); only encoders with a ``text_backbone_id`` implement it.
        """
        raise NotImplementedError

    def project_text(self, backbone: np.ndarray) -> np.ndarray:
        """Text vectors from backbone outputs: ``encode_text(t) == project_text(encode_text_backbone(t))``.

        Returns:
            float32 array (n, dimensions), unit rows.
        """
        raise NotImplementedError

    def encode_image_backbone(self, images: list[Image.Image]) -> np.ndarray:
        """The backbone output of each photo (all views it needs), the input of :meth:`project_images`.

        Returns:
            float32 array (len(images), k); only encoders with an ``image_backbone_id`` implement it.
        """
        raise NotImplementedError

    def project_images(self, backbone: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(shared, features)`` from backbone outputs, with the heads in use now.

        ``encode_image_pair(images) == project_images(encode_image_backbone(images))``.
        """
        raise NotImplementedError

    def warm_up(self) -> None:
        """Load every model a search or an indexing batch will need, and run each once.

        Called at process start (Celery ``worker_process_init``, gunicorn's master and ``post_worker_init``) when
        ``MULTIMODAL_SEARCH["WARM_UP"]`` is on, so the first request waits for no weights. The
        default encodes one text and one small photo.
        """
        self.encode_text(["warm up"])
        self.encode_image_pair([Image.new("RGB", (64, 64), (200, 40, 40))])
