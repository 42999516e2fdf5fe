"""The first stage of every search: the candidate pool and each signal's value for every candidate."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from multimodal_search.conf import search_settings
from multimodal_search.encoders import get_encoder
from multimodal_search.ranking import attributes, colour
from multimodal_search.ranking import vocabulary as v
from multimodal_search.ranking.fusion import RRF_K
from multimodal_search.ranking.qualities import quality_match
from multimodal_search.ranking.query import Query
from multimodal_search.ranking.text import stems
from multimodal_search.store import get_store
from multimodal_search.store.base import POOL_COLUMN, CandidateRequest, Neighbours, Scope

#: signal -> the product column it is read from
COLUMNS = {v.TEXT: "text_vector", v.TITLE: "title_vector", v.IMAGE: "image_vector", v.FUSED: "fused_vector"}
Signals = dict[str, dict[str, float]]


def collect_signals(
    query: Query, names: set[str], model_id: str, candidates: int, categories: list[str]
) -> tuple[list[str], Signals]:
    """Candidate products from every index the signals read, and each signal's value for them.

    Words: the top candidates of the text, title and photo-in-text-space indexes (and of
    the fused one for embedding-level fusion) and the keyword matches, plus a photo's
    nearest products for text + photo, are scored exactly in one database round trip.
    Photo-only queries take the nearest products by photo.
    """
    store = get_store()
    scope = Scope(model_id, candidates, categories, int(search_settings.HNSW_EF_SEARCH))
    visual: list[str] = []
    siblings: dict[str, list[str]] = {}
    if query.image_features is not None and v.VISUAL in names:
        visual = [pk for pk, _ in store.nearest("feature_vector", query.image_features, scope)]
        if _recoloured(query):  # the photo's products in the colour the words name join the pool
            siblings = store.siblings(visual, model_id=model_id, categories=categories)
            visual = list(dict.fromkeys(visual + [pk for found in siblings.values() for pk in found]))
    signals: Signals = {}
    fields: dict[str, dict[str, Any]] = {}
    if query.text_vector is not None:
        # the fused index only feeds embedding-level fusion; the others cover its neighbours
        request = CandidateRequest(
            vector=query.text_vector,
            rank_columns=rank_columns(names),
            signal_columns={
                name: column
                for name, column in COLUMNS.items()
                if name != v.FUSED and (name in names or name in (v.TEXT, v.IMAGE))
            },
            lexical_text=(query.text or "") if v.LEXICAL in names else None,
            all_words=query.typed,
            extra_pks=visual,
            field_keys=v.fields_for(_field_signals(query, names)),
            neighbours=_neighbours(names),
        )
        found = store.candidates(request, scope)
        pool, signals, fields = found.pool, found.signals, found.fields
    else:
        pool = visual
    _derived_signals(query, pool, signals, fields, model_id, names)
    if siblings and v.VISUAL in signals:
        signals[v.VISUAL] = like_a_sibling(signals[v.VISUAL], siblings)
    return pool, signals


def _recoloured(query: Query) -> bool:
    """A photo with words that name a colour ("like this photo, but in blue"): the words ask for the
    photo's product in another colour."""
    return _photo_and_words(query) and bool(query.colours)


def _photo_and_words(query: Query) -> bool:
    return query.image_features is not None and query.text_vector is not None


def stated_otherwise(query: Query, fields: Mapping[str, Any]) -> bool:
    """Whether a product's stated colour or gender (``fields``) is not the one the words ask for. With a photo
    the words say how the product wanted differs from the one photographed ("like this photo, but in blue" with
    a purple product's photo, "for women" with a men's hoodie's), so that product, which looks most like the
    photo, is not what is asked. A product that states neither is never ruled out."""
    colours = set(colour.colours_in_text(str(fields.get(v.FIELD_COLOR) or "")))
    if query.colours and colours and not colours & set(query.colours):
        return True
    gender = attributes.stated_gender(fields)
    return bool(query.gender) and gender not in (None, query.gender, "unisex")


def like_a_sibling(visual: dict[str, float], siblings: dict[str, list[str]]) -> dict[str, float]:
    """Each product's photo similarity, at least that of another product of its group (``siblings``: a
    product -> the others of its group). Colour variants share their shape, so when the words name the
    colour, the photo's product in that colour looks as much like the photo as the photographed colour
    does; the colour signal then tells them apart (on Luma, ``bench/composed.py``)."""
    lifted = dict(visual)
    for pk, others in siblings.items():
        for other in others:
            if pk in visual and other in lifted:
                lifted[other] = max(lifted[other], visual[pk])
    return lifted


def rank_columns(names: set[str]) -> dict[str, str]:
    """The product columns whose nearest products join a words search's pool: one per signal read, but
    the text and photo-in-text-space signals together from one index over their sum with the title
    (``POOL_COLUMN``, three times as many rows); the title keeps its own branch. At 100,000 products
    that pool ranked as well as the three branches did, one HNSW read fewer (``store.sql.POOL_ROWS_FACTOR``)."""
    columns = {name: column for name, column in COLUMNS.items() if name in names}
    if v.TEXT in columns and v.IMAGE in columns:
        del columns[v.TEXT], columns[v.IMAGE]
        columns = {"pool": POOL_COLUMN, **columns}
    return columns


def _field_signals(query: Query, names: set[str]) -> set[str]:
    """The signals whose stored fields the candidates are read with: ``names`` (the kind's only when the
    words name one), and the department and quality signals when the words name a department or a quality."""
    names = names - {v.TITLE_KIND} if not _kind_asked_by_name(query) else names
    return names | ({v.DEPARTMENT} if query.departments else set()) | ({v.QUALITY} if query.qualities else set())


def _kind_asked_by_name(query: Query) -> bool:
    """Words without a photo that name a kind of product the catalogue's titles or leaves use."""
    return bool(query.title_kinds) and query.image_features is None and query.text_vector is not None


def kind_words(fields: Mapping[str, Any]) -> set[str]:
    """The stems of a product's title and of its category leaf (the stored leaf, else the inferred one
    at least even odds): what says its kind ("Bardot Capri", "pants")."""
    leaves = [leaf for leaf, odds in attributes.leaf_odds(fields).items() if odds >= 0.5]
    return set(stems(" ".join([str(fields.get(v.FIELD_TITLE) or ""), *leaves])))


def _neighbours(names: set[str]) -> Neighbours | None:
    """Pseudo-relevance feedback in photo space ("neighbours"): how much each candidate looks
    like the best word matches (RRF of text, title and keyword ranks). Products of the kind
    asked for look alike, so this spreads the words' evidence to products whose own text
    does not use the shopper's words."""
    if v.NEIGHBOURS not in names:
        return None
    return Neighbours(v.NEIGHBOUR_LEADER_SIGNALS, v.NEIGHBOUR_LEADERS, get_encoder().feature_dimensions, RRF_K)


def _derived_signals(
    query: Query, pks: list[str], signals: Signals, fields: dict[str, dict[str, Any]], model_id: str, names: set[str]
) -> None:
    """Signals computed from the exact ones and the stored fields (added to ``signals``)."""
    store = get_store()
    if query.image_features is not None:
        signals[v.VISUAL] = store.similarities(pks, "feature_vector", query.image_features, model_id=model_id)
    if v.SIGNAL_FIELDS.keys() & _field_signals(query, names) and not fields:
        fields.update(store.product_fields(pks, model_id=model_id))
    if query.departments:  # read by the broad calibration only ("tops": how surely each is a top)
        leaves = sorted({leaf for found in query.departments.values() for leaf in found})
        signals[v.DEPARTMENT] = {pk: attributes.facet_match(v.CATEGORY, leaves, fields.get(pk) or {}) for pk in pks}
    if query.qualities:  # read by the broad calibration only ("wool": whether each states it)
        signals[v.QUALITY] = {pk: quality_match(query.qualities, fields.get(pk) or {}) for pk in pks}
    if v.GENDER in names and query.gender:
        signals[v.GENDER] = {pk: attributes.gender_match(query.gender, fields.get(pk) or {}) for pk in pks}
    for facet, wanted in query.facets.items():
        if facet in names:
            signals[facet] = {pk: attributes.facet_match(facet, wanted, fields.get(pk) or {}) for pk in pks}
    if v.GENDER in signals and query.kinds and query.image_features is None:  # "women's shorts": of the shorts
        # the category signal already is it when the synonyms named no other category
        same = query.kinds == query.facets.get(v.CATEGORY) and v.CATEGORY in signals
        signals[v.KIND_ASKED] = (
            signals[v.CATEGORY]
            if same
            else {pk: attributes.facet_match(v.CATEGORY, query.kinds, fields.get(pk) or {}) for pk in pks}
        )
    if v.TITLE_KIND in names and _kind_asked_by_name(query):  # "yoga capri": the title or leaf says "capri"?
        kinds = set(query.title_kinds)
        signals[v.TITLE_KIND] = {pk: float(bool(kinds & kind_words(fields.get(pk) or {}))) for pk in pks}
    if _photo_and_words(query) and (query.colours or query.gender):
        signals[v.ASKED_OTHERWISE] = {pk: float(stated_otherwise(query, fields.get(pk) or {})) for pk in pks}
    if v.COLOUR in names:
        if query.colours:  # words win: "like this photo, but in red"
            signals[v.COLOUR] = {
                pk: colour.colour_match(query.colours, attributes.colour_profile(fields.get(pk) or {})) for pk in pks
            }
        elif query.photo_colours is not None:
            signals[v.COLOUR] = {
                pk: colour.profile_overlap(query.photo_colours, (fields.get(pk) or {}).get(v.FIELD_COLOURS, {}))
                for pk in pks
            }
