"""Query input: the checks every face shares, reading an uploaded photo, and encoding a query."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from typing import IO, TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from multimodal_search.conf import search_settings
from multimodal_search.encoders import BaseEncoder, get_encoder
from multimodal_search.imaging import PhotoError, open_image
from multimodal_search.ranking import attributes, colour, expansion, fusion, spelling, synonyms, wordnet
from multimodal_search.ranking import vocabulary as v
from multimodal_search.ranking.departments import get_departments
from multimodal_search.ranking.intent import PHOTO_KINDS, SizeIntent, facets_only, parse_size
from multimodal_search.ranking.qualities import get_qualities
from multimodal_search.ranking.query import Query
from multimodal_search.ranking.text import AUDIENCE_WORDS, QUERY_GENDERS, gender_in_text, stem, stems
from multimodal_search.ranking.text import words as tokens
from multimodal_search.services import merchandising
from multimodal_search.services.memo import Memo
from multimodal_search.store import get_store
from multimodal_search.store.base import Scope

if TYPE_CHECKING:
    from django.http import QueryDict

MIN_K = 1
MAX_K = 100
#: the longest query text the storefront, the API and the admin's playground take
MAX_QUERY_CHARS = 500


def null_character_parameter(params: QueryDict) -> str | None:
    """The first parameter whose name or value holds a NUL byte (PostgreSQL cannot store or compare them)."""
    for key, values in params.lists():
        if "\x00" in key or any("\x00" in value for value in values):
            return key
    return None


def has_null_characters(params: QueryDict) -> bool:
    """Whether any parameter name or value holds a NUL byte."""
    return null_character_parameter(params) is not None


EMPTY_QUERY = "Type what you are looking for, upload a photo, or both."


class SearchError(ValueError):
    """Bad search input (reported to users as a 400 with this message)."""


def check_query(text: str | None, has_photo: bool, k: int = 10, method: str | None = None) -> None:
    """Raise ``SearchError`` unless there are words or a photo, ``k`` is in range and ``method`` is known."""
    if not (text and text.strip()) and not has_photo:
        raise SearchError(EMPTY_QUERY)
    if not MIN_K <= int(k) <= MAX_K:
        raise SearchError(f"k must be between {MIN_K} and {MAX_K}.")
    if method is not None and method not in v.METHODS:
        raise SearchError(f"Unknown method {method!r}; choose one of {', '.join(v.METHODS)}.")


def check_photo_size(size: int) -> None:
    """Raise ``SearchError`` when an upload is larger than ``MAX_UPLOAD_BYTES``."""
    limit = int(search_settings.MAX_UPLOAD_BYTES)
    if size > limit:
        raise SearchError(f"The photo is larger than {limit / (1024 * 1024):g} MB.")


UPLOAD_OVERHEAD_BYTES = 1024 * 1024  # room for the multipart headers and the other form fields


def check_upload_length(content_length: int | str | None) -> None:
    """Raise ``SearchError`` when a request body is too large to hold a photo within ``MAX_UPLOAD_BYTES``.

    Faces call this with the ``Content-Length`` header before reading the body (a missing or
    malformed header counts as 0, as Django then reads no body).
    """
    try:
        content_length = int(content_length or 0)
    except ValueError:
        content_length = 0
    limit = int(search_settings.MAX_UPLOAD_BYTES)
    if content_length > limit + UPLOAD_OVERHEAD_BYTES:
        raise SearchError(
            f"The request is {content_length / (1024 * 1024):.1f} MB; photos may be at most {limit / (1024 * 1024):g} MB."
        )


def open_photo(upload: IO[bytes] | Any) -> Image.Image:
    """Decode an uploaded photo safely (see ``multimodal_search.imaging``).

    The photo is checked from its header (``MAX_IMAGE_PIXELS``, ``MAX_IMAGE_ASPECT``) before it
    is decoded, decoded at reduced scale, shrunk, turned upright from its EXIF orientation and
    returned as RGB. Nothing is written anywhere: the photo lives only as long as the request.

    Raises:
        SearchError: too large, not a readable image, truncated, or outside the limits.
    """
    size = getattr(upload, "size", None)
    if size is not None:
        check_photo_size(int(size))
    if hasattr(upload, "seek"):
        upload.seek(0)
    try:
        return open_image(
            upload,
            max_pixels=int(search_settings.MAX_IMAGE_PIXELS),
            max_aspect=float(search_settings.MAX_IMAGE_ASPECT),
        )
    except PhotoError as exc:
        raise SearchError(str(exc)) from None


def current_encoder() -> tuple[BaseEncoder, str]:
    """The configured encoder after it looked for new weights (a new head), and its ``model_id``.

    Services call this once per request or indexing call and pass the ``model_id`` down.
    """
    encoder = get_encoder()
    encoder.refresh()
    return encoder, encoder.model_id


def encode_query(
    text: str | None,
    image: Image.Image | None,
    *,
    encoder: BaseEncoder | None = None,
    model_id: str | None = None,
    rules: merchandising.Rules | None = None,
) -> Query:
    """Encode the words (with synonyms and the catalogue's own terms added) and the photo, and find what they name.

    The text vector of a query expanded from the catalogue (:func:`catalogue_expansions`) is the
    normalised sum of the query's vector and, weighted by each expansion's weight, the vectors of
    the query with the missing phrase replaced ("black throw pillow" + 0.8 x "black cushion").

    Args:
        text: the shopper's words.
        image: the query photo.
        encoder: the encoder to use (default: the configured one).
        model_id: the encoder version the search reads (default: ``encoder.model_id``); learned facets
            are looked up for it.
        rules: the admin's merchandising rules this search uses (default: read now).
    """
    encoder = encoder or get_encoder()
    model_id = model_id or encoder.model_id
    text = (text or "").strip() or None
    # what the text encoder and keyword search see: the settings' and the admin's synonyms added
    if text and rules is None:
        rules = merchandising.current_rules()
    words = merchandising.expand(text, rules) if text else None
    if words:  # "back pack": the catalogue's one word for two typed ones, read beside them
        words = expansion.with_phrases(words, compound_words(text, model_id))
    searched = words
    departments = named_departments(text, model_id)
    qualities = named_qualities(text, model_id, departments)
    broad = bool(qualities) or facets_only(text, departments)  # qualities are named only when it is
    if words and departments and broad:  # "clothes", "red clothes": the departments it names ("bottoms tops")
        words = expansion.with_phrases(words, spelled_out_departments(departments, model_id))
    text_vector = None
    if text and words:
        found = catalogue_expansions(text, model_id, rules)
        strings = [words] + [expansion.variant(text, e) for e in found]
        vectors = query_vectors(encoder, model_id, strings)
        weights = np.array([1.0] + [e.weight for e in found], dtype=np.float32)
        text_vector = vectors[0] if not found else fusion.normalize(weights @ np.asarray(vectors, dtype=np.float32))
        words = expansion.expanded_text(words, found)
    shared = features = classes = None
    if image is not None:
        shared, features, classes = encoder.encode_photo_query(image)
    facets = named_facets(words, model_id)
    kinds = (facets if words == text else named_facets(text, model_id)).get(v.CATEGORY, [])
    colours = colour.colours_in_text(text or "")
    gender = gender_in_text(text or "")
    # "in blue", "for men" with a photo: the words name no kind, the photo does (and, for "in blue", its gender)
    if features is not None and (colours or gender) and broad and not departments and not qualities:
        kind, shown = photo_kind(features, model_id)
        facets = {**kind, **facets}
        gender = gender or shown
    # the kinds of product the words and their synonyms name, before the catalogue's expansions
    title_kinds = kinds_named(searched, model_id)
    return Query(
        text=words,
        text_vector=text_vector,
        image_shared=shared,
        image_features=features,
        colours=colours,
        gender=gender,
        photo_colours=colour.colour_distribution(image) if image is not None else None,
        photo_classes=classes,
        facets=facets,
        typed=text,
        departments=departments,
        qualities=qualities,
        broad=broad,
        kinds=kinds,
        title_kinds=title_kinds,
    )


#: the photo's nearest products whose categories say what kind of product it shows
PHOTO_KIND_NEIGHBOURS = 10


def photo_kind(features: np.ndarray, model_id: str) -> tuple[dict[str, list[str]], str | None]:
    """``({"category": [leaves]}, gender)``: the deepest category of the photo's nearest product, and any that at
    least half of its ``PHOTO_KIND_NEIGHBOURS`` nearest are in (stated, else inferred); {} when they state none.
    With words that name only a colour or a gender ("like this photo, but in blue", "for men") the words say
    nothing of the kind: the photo does.
    The majority alone lowered R@1 on Luma where the product's own category was not the majority's
    (``bench/composed.py``, README "A photo and words").

    ``gender``: the gender of the nearest product that states one, when at least half of the neighbours that
    state one state it ("men", "women"; None for unisex, none stated or no majority): "in blue" with a men's hoodie's
    photo asks for men's hoodies in blue, not the women's that look as much like it."""
    store = get_store()
    scope = Scope(model_id, PHOTO_KIND_NEIGHBOURS, ef_search=int(search_settings.HNSW_EF_SEARCH))
    nearest = store.nearest("feature_vector", features, scope)
    fields = store.product_fields([pk for pk, _ in nearest], model_id=model_id)
    # each neighbour's leaf: stated (1), else the classifier's probabilities
    kinds = attributes.photo_kinds([attributes.leaf_odds(fields.get(pk) or {}) for pk, _ in nearest])
    stated = [attributes.stated_gender(fields.get(pk) or {}) for pk, _ in nearest]
    known = [gender for gender in stated if gender is not None]
    first = known[0] if known else None
    shown = first if first in QUERY_GENDERS and 2 * known.count(first) >= len(known) else None
    return ({v.CATEGORY: kinds} if kinds else {}), shown


#: the catalogue's term counts and size per encoder version, kept ``EXPANSION["CACHE_SECONDS"]``: at
#: 100,000 products counting a query's words took up to 14 ms, more than the rest of its expansion
_CATALOGUE_COUNTS = Memo()


#: (model_id, query text) -> its vector, up to ``QUERY_VECTORS`` per process: a vector never changes
#: for one encoder version (its ``model_id`` names the head), so they are kept until the memo is full
_QUERY_VECTORS = Memo()
_FOREVER = float("inf")


def query_vectors(encoder: BaseEncoder, model_id: str, texts: list[str]) -> np.ndarray:
    """``encoder.encode_text(texts)``, the texts encoded before by this process taken from its memo."""
    size = int(search_settings.QUERY_VECTORS)
    if size <= 0:
        return encoder.encode_text(texts)
    _QUERY_VECTORS.max_entries = size

    def encode(keys: list[Any]) -> dict[Any, np.ndarray]:
        return dict(zip(keys, encoder.encode_text([text for _, text in keys])))

    found = _QUERY_VECTORS.get_many([(model_id, text) for text in texts], encode, _FOREVER)
    return np.stack([found[(model_id, text)] for text in texts])


def catalogue_term_counts(model_id: str, terms: Sequence[str], cap: int) -> dict[str, int]:
    """Products of ``model_id`` whose full text uses each term, at most ``cap`` (``store.term_counts``),
    kept in the process for ``EXPANSION["CACHE_SECONDS"]``."""
    store = get_store()

    def read(keys: list[Any]) -> dict[Any, int]:
        counts = store.term_counts(model_id, [term for _, _, term in keys], cap=cap)
        return {(model_id, cap, term): count for term, count in counts.items()}

    seconds = float(search_settings.EXPANSION["CACHE_SECONDS"])
    found = _CATALOGUE_COUNTS.get_many([(model_id, cap, term) for term in terms], read, seconds)
    return {term: int(found.get((model_id, cap, term)) or 0) for term in terms}


def catalogue_uses(model_id: str, terms: Sequence[str]) -> set[str]:
    """Of ``terms``, those some product's full text uses (:func:`catalogue_term_counts`, capped at 1)."""
    return {term for term, count in catalogue_term_counts(model_id, terms, 1).items() if count}


def catalogue_expansions(
    text: str, model_id: str, rules: merchandising.Rules | None = None
) -> list[expansion.Expansion]:
    """The catalogue's words for query phrases it does not use (``ranking.expansion``), counted in the
    full-text index of ``model_id``: one bounded query per text query, a second only when a phrase is
    missing. Phrases the shopper synonym list (``ranking.synonyms``) expands are left to it. [] when
    ``EXPANSION["ENABLED"]`` is off or the WordNet data is not installed. Counts are kept in the process
    for ``EXPANSION["CACHE_SECONDS"]`` (a word new to the catalogue is expanded until then)."""
    config = search_settings.EXPANSION
    if not config["ENABLED"] or not wordnet.available():
        return []
    store = get_store()
    seconds = float(config["CACHE_SECONDS"])
    departments = get_departments(model_id)
    return expansion.plan(
        text,
        lambda terms, cap: catalogue_term_counts(model_id, terms, cap),
        lambda: int(_CATALOGUE_COUNTS.get((model_id, "products"), lambda: store.count(model_id), seconds)),
        count_cap=int(config["COUNT_CAP"]),
        max_terms=int(config["MAX_TERMS"]),
        max_share=float(config["MAX_SHARE"]),
        min_weight=float(config["MIN_WEIGHT"]),
        covered=tokens(" ".join(merchandising.named(text, rules))),
        general=list(departments.classes) if departments is not None else (),
    )


def unsold_kinds(
    typed: str | None, searched: str | None, model_id: str, facets: Mapping[str, Sequence[str]] | None = None
) -> list[str]:
    """The typed words that name a kind of goods the catalogue has no word for ("dress" in a shop of
    sportswear; ``ranking.expansion.unsold``), then those that say for whom a product is made
    (``text.AUDIENCE_WORDS``: "kids") where no product's name, department or text uses any such word, or []: none,
    no departments trained yet, or no WordNet.
    ``searched``: the words as searched (``Query.text``: synonyms and the catalogue's expansions added);
    ``facets``: the learned facets the words name (``Query.facets``: a material named is a word the shop
    uses). What the catalogue calls anything: :func:`catalogue_calls`."""
    departments = get_departments(model_id) if typed else None
    if departments is None or not wordnet.available():
        return []
    values = {stem(word) for names in (facets or {}).values() for name in names for word in tokens(name)}
    named = departments.name_words() | values
    kinds = expansion.unsold(typed, searched, departments.kinds, partial(catalogue_calls, model_id, named))
    # "kids hoodie" where nothing is for kids: the hoodies are sold, not for whom the words say
    typed_words = tokens(typed or "")
    # a word before a colour is its shade ("baby blue"), not whom it is for
    audience = [
        word
        for word, after in zip(typed_words, [*typed_words[1:], ""])
        if word in AUDIENCE_WORDS and not colour.colours_in_text(after)
    ]
    audience = list(dict.fromkeys(audience))
    # any of the words makes the shop one for that audience: a shop that says "kids" answers "children"
    for_nobody = audience if audience and not catalogue_calls(model_id, named, sorted(AUDIENCE_WORDS)) else []
    return kinds + [word for word in for_nobody if word not in kinds]


def unknown_words(typed: str | None, model_id: str, rules: merchandising.Rules | None = None) -> list[str]:
    """The typed words no dictionary has and no product's text uses (``expansion.unknown``): a brand the
    shop does not carry ("adidas hoodie"), a word newer than WordNet ("kettlebell"). The words of the
    synonym lists and of the admin's ``rules`` are known. [] without WordNet."""
    if not typed or not wordnet.available():
        return []
    strange = expansion.unknown(
        typed,
        (rules or merchandising.current_rules()).words
        | synonyms.vocabulary(synonyms.configured_groups(), synonyms.configured_rewrites()),
    )
    used = catalogue_uses(model_id, strange) if strange else set()
    return [word for word in strange if word not in used]


def catalogue_calls(model_id: str, named: Iterable[str], nouns: Sequence[str]) -> set[str]:
    """Of ``nouns`` (words that name goods), those the catalogue calls something by: a stem of ``named``
    (its departments' names), a whole word of a product's title (the word, its singular or its plural:
    "mat", "mats"; read through the titles' word index and kept as the expansions' counts are) or, for a
    word whose commonest sense is no artifact (a material, a food: "cotton", "coffee"), any word of a
    product's full text. A description that says "bring it to your mat" or "room for your shoes" names
    what the product goes with, not what it is, so a yoga brick is no "yoga mat"."""
    named = set(named)
    found = {noun for noun in nouns if stem(noun) in named}
    rest = [noun for noun in nouns if noun not in found]
    found |= catalogue_titles(model_id, rest)
    materials = [noun for noun in rest if noun not in found and wordnet.commonest_goods(noun) != wordnet.ARTIFACT]
    return found | catalogue_uses(model_id, materials)


def catalogue_titles(model_id: str, nouns: Sequence[str]) -> set[str]:
    """Of ``nouns``, those a product's title has as a word, singular or plural (``store.titled``), kept in
    the process for ``EXPANSION["CACHE_SECONDS"]``."""
    store = get_store()

    def read(keys: list[Any]) -> dict[Any, bool]:
        found = store.titled(model_id, [noun_forms(noun) for _, _, noun in keys])
        return dict(zip(keys, found))

    seconds = float(search_settings.EXPANSION["CACHE_SECONDS"])
    found = _CATALOGUE_COUNTS.get_many([(model_id, "titled", noun) for noun in nouns], read, seconds)
    return {noun for noun in nouns if found.get((model_id, "titled", noun))}


def noun_forms(noun: str) -> list[str]:
    """A noun, its singulars and its plural ("mat", "mats"; "shoes", "shoe"; "dress", "dresses")."""
    plural = noun + ("es" if noun.endswith(("s", "x", "z", "ch", "sh")) else "s")
    return list(dict.fromkeys([noun, *wordnet.singulars(noun), plural]))


def correct_spelling(
    text: str | None,
    model_id: str,
    rules: merchandising.Rules | None = None,
    encoder: BaseEncoder | None = None,
) -> spelling.Correction | None:
    """The words with each one no product uses read as the catalogue's nearest word ("hoddie" ->
    "hoodie"; ``ranking.spelling``), or None: nothing to correct, ``SPELLING`` off, or no dictionary
    until mmsearch_train collected one. Whether the catalogue's full text uses a word is counted in
    its keyword index (one bounded query for the words the dictionary lacks, kept as
    :func:`catalogue_expansions` keeps its counts), so a word of a product newer than the dictionary
    is searched as typed. The words of the language (the text model's whole words, ``encoder``'s,
    default the configured one) and those of the admin's synonym rules (``rules``, default: read now)
    are never corrected."""
    speller = _speller(text, model_id)
    if speller is None:
        return None

    known = ((encoder or get_encoder()).known_words(), (rules or merchandising.current_rules()).words)
    return speller.correct(text or "", partial(catalogue_uses, model_id), known=known)


def compound_words(text: str | None, model_id: str) -> list[str]:
    """The catalogue's words that two neighbouring typed words make together ("back pack": ["backpack"],
    ``Speller.compounds``); none with ``SPELLING`` off or no dictionary collected yet."""
    speller = _speller(text, model_id)
    return speller.compounds(text or "") if speller is not None else []


def joined_prefix(text: str | None, model_id: str) -> str | None:
    """The typed text with its last two words run together where the catalogue has a word that starts so
    ("back pa" -> "backpa"; ``Speller.joined_prefix``); None with ``SPELLING`` off, no dictionary or no such word."""
    speller = _speller(text, model_id)
    return speller.joined_prefix(text or "") if speller is not None else None


def _speller(text: str | None, model_id: str) -> spelling.Speller | None:
    """The catalogue's dictionary for words to read, or None: no words, ``SPELLING`` off, or none collected yet."""
    return spelling.get_speller(model_id) if text and search_settings.SPELLING else None


def named_facets(words: str | None, model_id: str) -> dict[str, list[str]]:
    """The learned categories / materials a query names (none until mmsearch_train learned some)."""
    model = attributes.get_model(model_id) if words else None
    if model is None:
        return {}
    found = {}
    for facet in attributes.NAMED_FACETS:
        if facet in model.classifiers:
            values = attributes.named_values(words or "", model.classifiers[facet].classes, facet)
            if values:
                found[facet] = values
    return found


def kinds_named(words: str | None, model_id: str) -> list[str]:
    """The stems of the catalogue's kinds of product (its titles' head nouns and its leaves' words,
    ``Departments.kinds``, found by ``mmsearch_train``) among the words ("yoga capri" -> ["capri"])."""
    departments = get_departments(model_id) if words else None
    return sorted(set(stems(words or "")) & set(departments.kinds)) if departments is not None else []


def sizes_typed(text: str | None, model_id: str | None, *, photo: bool = False) -> SizeIntent | None:
    """The sizes the words name (``intent.parse_size``), those beside a kind of the catalogue's product
    too ("large mens tee", "mens shorts 32": ``Departments.kinds``, once ``mmsearch_train`` found them),
    and with a ``photo`` beside a word that stands for it ("this in large": ``intent.PHOTO_KINDS``)."""
    departments = get_departments(model_id) if text and model_id else None
    kinds = set(departments.kinds) if departments is not None else set()
    return parse_size(text or "", kinds | PHOTO_KINDS if photo and kinds else kinds)


def sizes_in_words(text: str | None, *, photo: bool = False) -> SizeIntent | None:
    """:func:`sizes_typed` with the current encoder's kinds (the words as typed, for the search page's links)."""
    return sizes_typed(text, current_encoder()[1] if text else None, photo=photo)


def named_departments(text: str | None, model_id: str) -> dict[str, list[str]]:
    """The catalogue's departments the typed words name, with their leaves (none until mmsearch_train
    found the catalogue's departments, ``ranking.departments``)."""
    departments = get_departments(model_id) if text else None
    return departments.named(text) if departments is not None else {}


def spelled_out_departments(named: Iterable[str], model_id: str) -> list[str]:
    """The catalogue's departments (and leaves) the classes among ``named`` stand for
    (``Departments.spelled_out``: "clothes" -> ["bottoms", "tops"])."""
    departments = get_departments(model_id)
    return departments.spelled_out(named) if departments is not None else []


def named_qualities(text: str | None, model_id: str, departments: Iterable[str] = ()) -> list[str]:
    """The catalogue's qualities the typed words name when they name nothing but qualities, colours,
    genders and ``departments`` ("wool", "women's striped"; none for "wool hoodie", whose relevance
    does not read them, and none until mmsearch_train found the catalogue's qualities,
    ``ranking.qualities``)."""
    qualities = get_qualities(model_id) if text else None
    named = qualities.named(text) if qualities is not None else []
    return named if named and facets_only(text, departments, named) else []
