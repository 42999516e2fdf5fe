"""The vector store contract: every read and write of stored vectors goes through a ``BaseVectorStore``.

Vectors are stored per product *and* encoder version (``model_id``), so a new encoder version can be
indexed beside the old one and searches read one version only. A product has a text vector, a title
vector, a pooled-photo vector (shared text/photo space), a fused vector, its categories, its fields
(``ranking.vocabulary``) and one row per photo (visual features and shared-space vector).

Similarities are cosine similarities. Methods return numpy float32 vectors, never driver types.
``tests/test_store_contract.py`` holds the tests every store must pass.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from django.db.models import Q

#: the product column indexed by inner product, not cosine: the sum of the unit text, title and
#: photo-in-text-space vectors (:func:`pool_vector`), one index for a words search's candidates
POOL_COLUMN = "pool_vector"
#: product-level vector columns
PRODUCT_COLUMNS = ("text_vector", "title_vector", "image_vector", "fused_vector", POOL_COLUMN)
#: photo-level vector columns
IMAGE_COLUMNS = ("feature_vector", "shared_vector")


def pool_vector(*vectors: np.ndarray | None) -> np.ndarray:
    """``POOL_COLUMN``'s value: the sum of the given vectors at unit length (None and zero ones left
    out), so that its inner product with a unit query is the sum of the query's cosines to each."""
    parts = [np.asarray(x, dtype=np.float32) for x in vectors if x is not None]
    norms = [float(np.linalg.norm(x)) for x in parts]
    return np.asarray(np.sum([x / n for x, n in zip(parts, norms) if n > 0], axis=0, dtype=np.float32))


@dataclass(frozen=True)
class PhotoVectors:
    """One stored photo of a product."""

    key: str
    features: np.ndarray
    shared: np.ndarray


@dataclass
class ProductVectors:
    """Everything stored for one product and one encoder version."""

    product_pk: str
    content_hash: str
    text_vector: np.ndarray
    title_vector: np.ndarray | None
    image_vector: np.ndarray | None
    fused_vector: np.ndarray
    categories: list[str] = field(default_factory=list)
    fields: dict[str, Any] = field(default_factory=dict)
    search_text: str = ""
    photos: list[PhotoVectors] = field(default_factory=list)
    #: facets inferred by classifiers, stored apart from ``fields`` (:meth:`BaseVectorStore.update_inferred`
    #: replaces them alone) and read merged over them; a key of value None hides the same key of ``fields``
    inferred: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Scope:
    """What a nearest-neighbour search reads: one encoder version, at most ``limit`` products, only those
    in every one of ``categories``; ``ef_search`` is how many candidates the HNSW index looks at."""

    model_id: str
    limit: int
    categories: Sequence[str] = ()
    ef_search: int = 100


@dataclass(frozen=True)
class Neighbours:
    """The ``neighbours`` signal: each candidate's best-photo similarity to the mean photo features of the
    ``top`` candidates by reciprocal rank fusion (``w / (rrf_k + rank)``) of the ``signals`` (ties by
    product pk; keyword ranks count only for actual matches)."""

    signals: Sequence[str]
    top: int
    feature_dimensions: int
    rrf_k: int


@dataclass
class CandidateRequest:
    """One first-stage search: which indexes to take candidates from and which signals to score.

    Attributes:
        vector: the query's text-space vector.
        rank_columns: signal name -> product column whose nearest products join the pool.
        signal_columns: signal name -> product column scored exactly for every candidate.
        lexical_text: words for the full-text index (candidates and the ``lexical`` signal), or None.
        all_words: the words a keyword match must all have to be taken first (the shopper's own, without
            the synonyms and expansions of ``lexical_text``); None: those of ``lexical_text``.
        extra_pks: products added to the pool (e.g. a query photo's nearest products).
        field_keys: stored field keys to return per candidate (inferred facets merged in).
        neighbours: adds the ``neighbours`` signal (see :class:`Neighbours`).
    """

    vector: np.ndarray
    rank_columns: Mapping[str, str]
    signal_columns: Mapping[str, str]
    lexical_text: str | None = None
    all_words: str | None = None
    extra_pks: Sequence[str] = ()
    field_keys: Sequence[str] = ()
    neighbours: Neighbours | None = None


@dataclass
class Candidates:
    """What a first-stage search returns: the pool, each signal's values, the requested fields."""

    pool: list[str]
    signals: dict[str, dict[str, float]]
    fields: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class IndexInfo:
    """One nearest-neighbour index of an encoder version, as the database has it (``m`` and
    ``ef_construction``: an HNSW index's build parameters)."""

    name: str
    table: str
    column: str
    m: int | None
    ef_construction: int | None
    valid: bool
    bytes: int
    #: named as the current definition with the configured build parameters
    current: bool
    #: False: the version has rows in ``table`` but no usable index on ``column`` (``name`` is the one
    #: ``mmsearch_indexes --build`` gives it)
    exists: bool = True
    #: named as an earlier definition (``store.sql.INDEX_VERSION``), kept until the current one is built
    earlier: bool = False

    @property
    def state(self) -> str:
        """ "current" (the settings' definition, usable), "other parameters", "earlier definition",
        "invalid" (a failed build) or "missing" (searches read the column whole)."""
        if not self.exists:
            return "missing"
        if not self.valid:
            return "invalid"
        if self.earlier:
            return "earlier definition"
        return "current" if self.current else "other parameters"


#: the phase of a build's last progress report, once its index is ready
BUILT = "built"


@dataclass(frozen=True)
class StatedWords:
    """What one stored field must state (autocomplete's "black hoo", "mens hoodie"): one of ``words``
    as a whole word of its value, compared lower case; ``or_unstated``: a product that states nothing
    in that field matches too (a bag states no gender)."""

    field: str
    words: tuple[str, ...]
    or_unstated: bool = False


@dataclass(frozen=True)
class BuildProgress:
    """How far one index build is: ``done`` of ``total`` ``unit`` ("tuples" or "blocks") in its ``phase``."""

    name: str
    phase: str
    done: int
    total: int
    unit: str

    @property
    def finished(self) -> bool:
        """The last report of a build: its index is ready."""
        return self.phase == BUILT


class BaseVectorStore:
    """Where vectors live. Subclasses implement every method; the pgvector one is ``store.pgvector``."""

    # --- writes ------------------------------------------------------------------------------

    def ensure_indexes(
        self, model_id: str, dimensions: int, feature_dimensions: int, *, any_size: bool = False
    ) -> None:
        """Create the nearest-neighbour indexes of one encoder version if they do not exist: those of a
        large table only when ``any_size`` (a command, not an indexing task that a long build would outlast)."""
        raise NotImplementedError

    def rows_with_words(self, words: Sequence[str]) -> Q:
        """A filter of the stored product rows (``models.ProductEmbedding``) whose indexed words include
        ``words``, the last also as a prefix (the admin's search of the vector rows)."""
        raise NotImplementedError

    def index_status(self, model_id: str) -> list[IndexInfo]:
        """Every nearest-neighbour index of one encoder version, whatever its definition."""
        raise NotImplementedError

    def rebuild_indexes(
        self,
        model_id: str,
        dimensions: int,
        feature_dimensions: int,
        progress: Callable[[BuildProgress], None] | None = None,
        memory: str | None = None,
    ) -> tuple[list[str], list[str]]:
        """Build the indexes the configured parameters name, without blocking searches or writes, then
        drop the version's other indexes; returns (built, dropped) names. Outside a transaction.
        ``memory``: what a build may use ("2GB"; None: the database's own setting)."""
        raise NotImplementedError

    def refresh_statistics(self) -> None:
        """Bring the database's statistics of the stored rows up to date after a bulk write (what the
        query planner estimates from, and which words are common), rather than waiting for the database
        to notice."""
        raise NotImplementedError

    def save_products(self, model_id: str, products: Sequence[ProductVectors]) -> None:
        """Insert or replace the products' rows, photos and inferred facets for ``model_id``, all or nothing."""
        raise NotImplementedError

    def update_inferred(self, model_id: str, inferred: Mapping[str, Mapping[str, Any]]) -> int:
        """Replace the inferred facets of these stored products (pk -> facets), leaving the rest of their rows
        as they are (a retrain's cost: it writes every product's); products not stored for ``model_id`` are
        skipped. Returns the products written."""
        raise NotImplementedError

    def delete_products(self, pks: Sequence[str]) -> int:
        """Delete every vector of these products (all encoder versions); returns product rows deleted."""
        raise NotImplementedError

    def drop_model(self, model_id: str) -> int:
        """Delete every vector and index of one encoder version; returns product rows deleted."""
        raise NotImplementedError

    # --- bookkeeping -------------------------------------------------------------------------

    def content_hashes(self, model_id: str, pks: Sequence[str]) -> dict[str, str]:
        """pk -> stored content hash, for the given products that are stored."""
        raise NotImplementedError

    def stored_pks(self, model_id: str | None = None, among: Sequence[str] | None = None) -> set[str]:
        """Products with vectors for ``model_id`` (None: for any version); only of ``among`` when given."""
        raise NotImplementedError

    def stored_pks_after(self, after: str | None, limit: int) -> list[str]:
        """The next ``limit`` products with vectors of any version after ``after`` (None: from the first),
        in the store's own order of pks: a walk of every stored product, a page at a time."""
        raise NotImplementedError

    def model_ids(self) -> list[str]:
        """Every encoder version with stored vectors, sorted."""
        raise NotImplementedError

    def count(self, model_id: str, pks: Sequence[str] | None = None) -> int:
        """Products stored for ``model_id`` (only among ``pks`` when given)."""
        raise NotImplementedError

    def count_photos(self, model_id: str) -> int:
        """Photos stored for ``model_id``."""
        raise NotImplementedError

    # --- reads for ranking -------------------------------------------------------------------

    def nearest(self, column: str, vector: np.ndarray, scope: Scope) -> list[tuple[str, float]]:
        """Approximate nearest products by one vector column: [(pk, similarity)], best first.

        A photo column (``IMAGE_COLUMNS``) ranks products by their best-matching photo.
        """
        raise NotImplementedError

    def similarities(self, pks: Sequence[str], column: str, vector: np.ndarray, *, model_id: str) -> dict[str, float]:
        """Exact similarity of ``vector`` to one column for the given products (a photo column: the best photo)."""
        raise NotImplementedError

    def product_fields(self, pks: Sequence[str], *, model_id: str) -> dict[str, dict[str, Any]]:
        """pk -> stored fields of the given products, their inferred facets merged in."""
        raise NotImplementedError

    def product_flags(self, pks: Sequence[str], *, model_id: str) -> dict[str, list[str]]:
        """pk -> the names of the stored ``attributes`` that are simply true (``{"sale": true}``), for the
        given products that have any: what a search for "hoodies on sale" filters by, without reading
        every candidate's whole fields."""
        flags: dict[str, list[str]] = {}
        for pk, fields in self.product_fields(pks, model_id=model_id).items():
            found = fields.get("attributes")
            names = [str(name) for name, value in found.items() if value is True] if isinstance(found, dict) else []
            if names:
                flags[pk] = names
        return flags

    def product_vector(self, pk: str, column: str, *, model_id: str) -> np.ndarray | None:
        """One stored product vector, or None when the product (or that vector) is not stored."""
        raise NotImplementedError

    def product_vectors(self, pks: Sequence[str], column: str, *, model_id: str) -> dict[str, np.ndarray]:
        """pk -> stored vector of one product column for the given products (those stored with it)."""
        raise NotImplementedError

    def closest_products(
        self, pks: Sequence[str], among: Sequence[str], column: str, *, model_id: str
    ) -> dict[str, tuple[str, float]]:
        """pk -> (the product of ``among`` most like it by one column's cosine, that cosine), itself left out;
        for each of ``pks`` stored with that column (and some other product of ``among`` stored with it)."""
        raise NotImplementedError

    def siblings(self, pks: Sequence[str], *, model_id: str, categories: Sequence[str] = ()) -> dict[str, list[str]]:
        """pk -> the other stored products of its group (``fields["group"]``, case aside: its other colours), in
        all of ``categories``; products without a group or alone in theirs are left out."""
        raise NotImplementedError

    def term_counts(self, model_id: str, terms: Sequence[str], *, cap: int) -> dict[str, int]:
        """term -> products of ``model_id`` whose full-text index has the term's words in order
        (English stemming, so "cushions" counts "cushion"), counted up to ``cap``."""
        raise NotImplementedError

    def titled(self, model_id: str, words: Sequence[Sequence[str]]) -> list[bool]:
        """For each group of word forms ("mat", "mats"), whether a product of ``model_id`` has one of them
        as a whole word of its title (case aside, no stemming)."""
        raise NotImplementedError

    def titles_having(self, model_id: str, pks: Sequence[str], words: Sequence[Sequence[str]]) -> set[str]:
        """Those of ``pks`` whose title has, for every group of word forms (("neck", "necks"), ("v",)), one
        of them as a whole word (case aside, no stemming); none when no group is given."""
        raise NotImplementedError

    def products_by_code(
        self, model_id: str, code: str, *, categories: Sequence[str] = (), limit: int = 100, partial: bool = False
    ) -> list[str]:
        """Up to ``limit`` products of ``model_id`` whose identifier or ``fields["sku"]`` is ``code`` or
        starts with it and a separator (- _ . /), or whose ``fields["group"]`` is it, case aside, in all of
        ``categories``: the product of that identifier or sku first, then by sku (else identifier). ``partial``: an
        identifier or sku that starts with ``code`` at all ("mh0"; for autocomplete), no group."""
        raise NotImplementedError

    def having_every_word(self, model_id: str, pks: Sequence[str], texts: Sequence[str]) -> set[str]:
        """Those of ``pks`` whose full-text index (English stemming, stop words left out) has every word
        of one of ``texts``; a text with no word that is not a stop word finds none."""
        raise NotImplementedError

    def candidates(self, request: CandidateRequest, scope: Scope) -> Candidates:
        """The candidate pool (top ``limit`` of each ranked index, keyword matches, extra pks) and the
        exact signals and requested fields of every candidate, in one round trip where possible."""
        raise NotImplementedError

    # --- reads for autocomplete --------------------------------------------------------------

    def suggest_products(
        self,
        model_id: str,
        words: Sequence[str],
        *,
        typed: str,
        limit: int,
        stated: Sequence[StatedWords] = (),
    ) -> list[tuple[str, str]]:
        """[(pk, title)] of products of ``model_id`` whose stored title (``fields["title"]``) has every word,
        the last one as a prefix, and whose stored fields state each of ``stated``; titles starting with
        ``typed`` first, then shorter ones. ``words``: lower case letters and digits."""
        raise NotImplementedError

    def category_counts(self, model_id: str) -> dict[str, int]:
        """category path -> products of ``model_id`` in it (ancestor paths included), a group (``fields["group"]``:
        a product's colours) counted once."""
        raise NotImplementedError

    # --- backbone outputs kept across head versions ------------------------------------------

    def backbone_vectors(self, backbone_id: str, digests: Sequence[str]) -> dict[str, np.ndarray]:
        """digest -> kept backbone output (float16 rows: callers round fresh outputs the same way)."""
        raise NotImplementedError

    def save_backbone_vectors(self, backbone_id: str, vectors: Mapping[str, np.ndarray]) -> None:
        """Keep backbone outputs (digest -> 1-d array, stored as float16); an existing digest is left as is."""
        raise NotImplementedError

    def drop_backbones(self, keep: Sequence[str]) -> int:
        """Delete the kept outputs of every backbone not in ``keep``; returns rows deleted."""
        raise NotImplementedError

    # --- reads for training ------------------------------------------------------------------

    def product_rows(
        self, model_id: str, pks: Sequence[str] | None = None
    ) -> dict[str, tuple[dict[str, Any], list[str]]]:
        """pk -> (fields, inferred facets merged in; categories) of every stored product of ``model_id`` (of
        ``pks`` only, if given)."""
        raise NotImplementedError

    def text_vectors(self, model_id: str, pks: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """pk -> text vector of every stored product of ``model_id`` (of ``pks`` only, if given)."""
        raise NotImplementedError

    def photo_vectors(
        self, model_id: str, pks: Sequence[str] | None = None
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """pk -> (features (n, fd), shared (n, d)) of the product's photos, in photo order (of ``pks`` only,
        if given)."""
        raise NotImplementedError
