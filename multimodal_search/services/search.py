"""Search service: one entry point for text, photo and text+photo queries, and similar products."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.db import connections
from django.db.models import Model, QuerySet, prefetch_related_objects
from django.db.models.expressions import RawSQL
from PIL import Image

from multimodal_search.adapters import get_adapter
from multimodal_search.conf import search_settings
from multimodal_search.encoders import get_encoder
from multimodal_search.ranking import attributes, calibration, fusion
from multimodal_search.ranking import vocabulary as v
from multimodal_search.ranking.departments import names_stems
from multimodal_search.ranking.expansion import STOP_WORDS
from multimodal_search.ranking.intent import product_code
from multimodal_search.ranking.personal import Taste
from multimodal_search.ranking.query import Query
from multimodal_search.ranking.reranker import Reranker, feature_matrix, get_reranker
from multimodal_search.ranking.spelling import Correction
from multimodal_search.ranking.text import gender_in_text, head_noun, stem
from multimodal_search.ranking.text import words as tokens
from multimodal_search.ranking.weights import signal_weights
from multimodal_search.services import merchandising, taste
from multimodal_search.services.candidates import Signals, collect_signals
from multimodal_search.services.codes import coded_products
from multimodal_search.services.query import (
    SearchError,
    catalogue_term_counts,
    check_query,
    compound_words,
    correct_spelling,
    current_encoder,
    encode_query,
    kinds_named,
    noun_forms,
    unknown_words,
    unsold_kinds,
)
from multimodal_search.signals import search_performed
from multimodal_search.store import get_store
from multimodal_search.store.base import Scope

METHODS = v.METHODS
TEXT_ONLY_METHODS = v.TEXT_ONLY_METHODS
#: ``min_relevance`` / ``RELEVANCE`` value meaning "the cut ``mmsearch_train`` chose" (``related``)
AUTO = "auto"
#: the trained cut (``min_relevance="auto"``) of a words-only search keeps every result ranked above the
#: last one it passes. The calibrated relevance is a model of its own beside the ranking, and where they
#: disagreed the page had holes: "yoga tights" ranked the Livingston All-Purpose Tight first (0.27 likely
#: relevant) and showed the yoga straps ranked under it (0.53) without it. Not for words of a colour, a
#: department or a quality alone ("clothes", "black sweatpants"): their calibration reads what the
#: ranking does not (whether a product is of the department named, states the quality), so it hides the
#: bags whose descriptions say "clothes" that the ranking puts among the clothes.
CUT_AT_DEPTH = True
#: ``query["fallback"]`` when no result passed the trained cut (``min_relevance="auto"``) and the results
#: shown are the candidates having every word searched (``match`` is then ``none``); a number asked for
#: as ``min_relevance`` is never relaxed
EVERY_WORD = "every_word"
MinRelevance = float | str | None


@dataclass
class SearchHit:
    product_pk: str
    product: Any
    score: float
    signals: dict[str, float]
    explanation: dict[str, float]
    #: calibrated probability (0..1) that the product is relevant; None when nothing is calibrated
    relevance: float | None = None
    #: what personal re-ranking did to it (``services.taste``): ``affinity`` with the shopper's profile,
    #: ``moved_up`` positions and, when it moved up, ``because`` {product, kind, title}; None: not personalised
    personal: dict[str, Any] | None = None
    #: the other products of its group (its other colours) that the same search and filters found, in their
    #: order (``browse_products`` grouping variants); None: results not grouped
    variants: list[Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        adapter = get_adapter()
        data = adapter.to_result(self.product)
        data["score"] = round(self.score, 6)
        data["relevance"] = None if self.relevance is None else round(self.relevance, 4)
        data["explanation"] = self.explanation
        data["signals"] = {k: round(value, 6) for k, value in self.signals.items()}
        if self.personal is not None:
            data["personal"] = self.personal
        if self.variants is not None:
            data["variants"] = [_variant(adapter.to_result(product)) for product in self.variants]
        return data


#: what a grouped result says of each of its variants: enough for a swatch that links to it
VARIANT_KEYS = ("sku", "title", "url", "image", "price", "color")


def _variant(result: dict[str, Any]) -> dict[str, Any]:
    return {key: result[key] for key in VARIANT_KEYS if key in result}


@dataclass
class SearchResponse:
    hits: list[SearchHit]
    method: str
    took_ms: float
    model_id: str
    query: dict[str, Any] = field(default_factory=dict)
    #: ``"exact"``, ``"related"`` or ``"none"`` (``ranking.calibration.match_summary``); None: unknown
    match: str | None = None
    #: the relevance cut results were filtered by (None: none)
    min_relevance: float | None = None
    #: the ``exact`` cut ``match`` was summarised with (None: none); see :func:`likely_match`
    exact_cut: float | None = None


def search_products(
    text: str | None = None,
    image: Image.Image | None = None,
    *,
    k: int = 10,
    category: str | None = None,
    method: str | None = None,
    min_relevance: MinRelevance = None,
    personal: Taste | None = None,
    as_typed: bool = False,
) -> SearchResponse:
    """Find products by text, by photo, or by both.

    Args:
        text: the shopper's words (may be empty when ``image`` is given).
        image: a query photo.
        k: number of results (1-100).
        category: category path; only products in it (or below) are returned.
        method: fusion method, one of ``METHODS`` (default: settings FUSION.METHOD).
        min_relevance: drop results whose relevance is below this (0..1), or ``"auto"`` for the
            ``related`` cut ``mmsearch_train`` chose (when no result passes it, those whose text has
            every word searched are kept: ``query["fallback"]``); None (default) keeps every result. Results
            of unknown relevance (text with a photo, nothing trained) are kept. For a photo query,
            relevance is the probability that a result is the product in the photo.
        personal: the shopper's taste (``services.personal.taste_for``): results are gently re-ranked
            towards it (``PERSONALISATION``); None (anonymous visitors, commands) leaves the ranking as is.
        as_typed: search the words as typed. By default a word no product uses is read as the
            catalogue's nearest word ("hoddie" -> "hoodie", ``ranking.spelling``), and
            ``query["corrected"]`` is the text searched.

    Returns:
        ranked hits with per-modality signals, an explanation of shares over the signals that
        fired, each hit's relevance, and the ``match`` summary.

    Raises:
        SearchError: no query, bad k, unknown method or a bad ``min_relevance``.
    """
    ranked = rank_products(
        text,
        image,
        k=k,
        category=category,
        method=method,
        min_relevance=min_relevance,
        limit=k,
        personal=personal,
        as_typed=as_typed,
    )
    return respond(ranked, ranked.hits)


@dataclass
class Ranked:
    """Every ranked result of one query over the relevance cut, best first (``rank_products``)."""

    hits: list[SearchHit]
    method: str
    model_id: str
    query: dict[str, Any]
    started: float
    cut: float | None
    cuts: Mapping[str, float]
    #: a hit's explanation (``rank_products(explain=False)`` leaves them empty: :meth:`explain` fills them)
    explainer: Callable[[SearchHit], dict[str, float]] | None = None
    #: the typed words read as the catalogue's (``query["corrected"]`` is the text searched)
    correction: Correction | None = None
    #: the products the words found as their code (``query["code"]``), first in ``hits``
    coded: list[str] = field(default_factory=list)

    def explain(self, hits: list[SearchHit]) -> None:
        """Fill these hits' explanations (the ones shown, when ``rank_products`` ran with ``explain=False``)."""
        if self.explainer is not None:
            for hit in hits:
                hit.explanation = self.explainer(hit)


def rank_products(
    text: str | None,
    image: Image.Image | None,
    *,
    k: int,
    category: str | None,
    method: str | None,
    min_relevance: MinRelevance,
    limit: int | None,
    personal: Taste | None = None,
    prefetch: bool = True,
    explain: bool = True,
    fields: tuple[str, ...] | None = None,
    as_typed: bool = False,
) -> Ranked:
    """The ranking ``search_products`` answers from: the first ``limit`` results (None: the whole
    candidate pool, ``FUSION["CANDIDATES"]`` or ``k`` if more), those under the cut left out.
    ``prefetch`` False loads the products without the adapter queryset's ``prefetch_related``
    (:func:`prefetch_products` then runs it for the ones shown); ``fields`` loads only those model
    fields (``prefetch_products(..., reload=True)`` then loads the ones shown in full); ``explain``
    False leaves the explanations empty (``Ranked.explain`` fills those of the ones shown); ``as_typed``
    True searches the words as typed, a word no product uses not read as the nearest one
    (``correct_spelling``)."""
    started = time.perf_counter()
    fusion_settings = search_settings.FUSION
    method = method or fusion_settings["METHOD"]
    check_query(text, image is not None, k, method)
    check_min_relevance(min_relevance)
    encoder, model_id = current_encoder()  # a newly published head is picked up here, once per request
    rules = merchandising.current_rules()  # read once per search: synonyms for the words, rules for the ranking
    typed = text
    # words that are one product code ("MH07-Gray", "mh07"): its products first, the words not corrected
    code = product_code(text) if image is None else None
    coded = coded_products(model_id, code, categories=[category] if category else []) if code else []
    coded_pks = set(coded)
    correction = None if as_typed or coded else correct_spelling(text, model_id, rules, encoder)
    if correction is not None:  # "hoddie": searched and matched against the rules as "hoodie" (logged as typed)
        text = correction.text
    query = encode_query(text, image, encoder=encoder, model_id=model_id, rules=rules)
    if method in TEXT_ONLY_METHODS and query.text_vector is None:
        raise SearchError(f"Method {method!r} needs a text query.")
    # "red dress" in a shop without dresses: what it shows are similar items, none the kind asked
    words_only = query.image_features is None and query.text_vector is not None and not coded and not query.broad
    unsold = unsold_kinds(text, query.text, model_id, query.facets) if words_only else []
    # "adidas hoodie" where no product says "adidas": the hoodies are similar items, each still a hoodie
    unknown = [word for word in unknown_words(text, model_id, rules) if word not in unsold] if words_only else []
    carry = encoder.features_carry_colour
    weights = signal_weights(query, method, fusion_settings, features_carry_colour=carry)
    candidates = max(int(fusion_settings["CANDIDATES"]), k)
    names = set(weights) | ({v.FUSED} if method == v.EMBEDDING else set())
    names |= {v.TITLE_KIND} if method in KIND_FIRST_METHODS else set()  # read by kind_first, never weighted
    pool, signals = collect_signals(query, names, model_id, candidates, [category] if category else [])
    trained = get_reranker(model_id) if query.image_features is None else None  # photos: see _relevance
    reranker = trained if method == v.RERANK and v.VISUAL not in weights else None
    if method == v.RERANK and reranker is None:
        method = v.FEATURE  # nothing trained for this encoder yet (or a photo query): feature-level fusion
        weights = signal_weights(query, method, fusion_settings, features_carry_colour=carry)
    explained: Signals = signals
    features: np.ndarray | None = None  # the re-ranker's inputs: its scores and its calibrated relevance use them
    if reranker is not None:
        features = feature_matrix(pool, signals)  # once (0.8 ms for 464 candidates)
        scores, explained, weights = reranker.score(pool, signals, features)
    elif method == v.DECISION:
        ranked = dict(signals)
        if v.LEXICAL in ranked:  # products without a matching term are not in the lexical ranking
            ranked[v.LEXICAL] = {pk: value for pk, value in ranked[v.LEXICAL].items() if value > 0}
        scores, explained = fusion.rrf_scores(ranked, weights)
    elif method == v.EMBEDDING:
        # one shared space: the product's fused vector against the query vector(s)
        parts = [vector for vector in (query.text_vector, query.image_shared) if vector is not None]
        scores = get_store().similarities(
            pool,
            "fused_vector",
            fusion.normalize(sum(parts)),
            model_id=model_id,
        )
        weights = {name: 1.0 for name in (v.TEXT, v.IMAGE, v.VISUAL) if name in signals}
    else:
        scores = fusion.weighted_scores(signals, weights)
    if method == v.LEXICAL_ONLY:
        scores = {pk: value for pk, value in scores.items() if value > 0}
    order = fusion.rank(scores, seed=query.tie_seed)
    nudge = taste.personalise(scores, order, personal, model_id=model_id, seed=query.tie_seed)
    plain_scores = scores
    if nudge is not None:
        order, scores = nudge.order, nudge.scores
    # "women's running shorts": of the shorts, the women's before the men's, at the places shorts hold
    order, scores = gender_within_kind(order, scores, signals.get(v.KIND_ASKED), signals.get(v.GENDER))
    # "yoga capri": the capris before the yoga straps (candidates.kind_words), in the hand-weighted
    # fusions; the re-ranker weighs the words itself (the rule cost it 0.005 nDCG@10 on Luma), and the
    # one-signal methods are the baselines the others are measured against
    if method in KIND_FIRST_METHODS:
        order, scores = kind_first(order, scores, signals.get(v.TITLE_KIND))
    # "like this photo, but in blue": a product stated purple after the others (candidates.stated_otherwise)
    otherwise = {pk for pk, value in signals.get(v.ASKED_OTHERWISE, {}).items() if value}
    if otherwise:
        order = [pk for pk in order if pk not in otherwise] + [pk for pk in order if pk in otherwise]
    fired = merchandising.fired_rules(text, query.text_vector, encoder=encoder, model_id=model_id, rules=rules)
    if fired:  # the admin's pins, boosts, burials and hides for this query
        order = merchandising.apply_rules(order, [rule for rule, _, _ in fired], insert=not category)
    if coded:
        order = coded + [pk for pk in order if pk not in coded_pks]
    ranked_order, order = order, order[:limit]
    photo = encoder.photo_relevance()
    sold = photo_sold_here(photo, query) if query.text_vector is None else None
    relevance, cuts = _relevance(trained, photo, query, pool, signals, features, sold)
    if relevance is not None:
        relevance.update(dict.fromkeys(coded, 1.0))
    cut = _cut(min_relevance, cuts, calibration.RELATED)
    fallback = None
    read_as: list[str] = []
    if cut is not None and relevance is not None:  # before the products load: a cut storefront page loads fewer
        kept = {rule.product_pk for rule, _, _ in fired if rule.action in ("pin", "boost")} | coded_pks
        if min_relevance == AUTO and words_only and not unsold:  # "v neck": the "(V-neck)" tees it names
            kept |= _named_in_titles(order, text or "", model_id)
        passing = [relevance.get(pk) is None or relevance[pk] >= cut for pk in order]
        # the trained cut as a depth: no hole above its last result (:data:`CUT_AT_DEPTH`)
        at_depth = CUT_AT_DEPTH and min_relevance == AUTO and words_only
        depth = 1 + max((i for i, ok in enumerate(passing) if ok), default=-1) if at_depth else 0
        passed = [pk for i, pk in enumerate(order) if i < depth or passing[i] or pk in kept]
        if not passed and min_relevance == AUTO and text and query.text_vector is not None:
            # a word that names departments ("clothes for hiking") is met by being in one, not by a
            # description that uses it (a backpack "with room for clothes")
            within, rest = _in_named_departments(query, signals, text)
            among = ranked_order if within is None else [pk for pk in ranked_order if pk in within]
            passed, read_as = _having_every_word(among, _fallback_readings(rest, model_id, rules), model_id)
            passed = passed[:limit]
            fallback = EVERY_WORD if passed else None
        order = passed

    def explainer(hit: SearchHit) -> dict[str, float]:
        if hit.product_pk in coded_pks:
            return {v.CODE: 1.0}
        shares = fusion.contributions(hit.product_pk, signals, weights, parts=explained)
        if nudge is not None and nudge.moved.get(hit.product_pk):  # the profile's share in it
            return taste.explain(shares, plain_scores.get(hit.product_pk, 0.0), hit.score)
        return shares

    hits = [
        SearchHit(
            product_pk=pk,
            product=product,
            score=scores.get(pk, 0.0),  # a pinned product may not be a candidate
            signals={name: values[pk] for name, values in signals.items() if pk in values},
            explanation={},
            relevance=None if relevance is None else relevance.get(pk),
        )
        for pk, product in _products(order, prefetch=prefetch, fields=fields)
    ]
    if nudge is not None:
        _personal_entries(hits, nudge)
    query_info: dict[str, Any] = {
        "text": (typed or "").strip() or None,
        "image": image is not None,
        "k": k,
        "category": category,
    }
    if correction is not None:
        query_info["corrected"] = correction.text.strip()
    if unsold or unknown:
        query_info["unsold"] = unsold + unknown
    if coded:
        query_info["code"] = (typed or "").strip()
    if fallback is not None:
        query_info["fallback"] = fallback
        if read_as:
            query_info["read_as"] = read_as
    if query.text and query.text != ((text or "").strip() or None):
        query_info["expanded"] = query.text
    if sold is not None:
        query_info["photo_sold_here"] = sold
    if nudge is not None:
        query_info["personalised"] = True
    if fired:
        query_info["rules"] = [
            {
                "id": rule.id,
                "action": rule.action,
                "product": rule.product_pk,
                "matched": how,
                "similarity": round(sim, 4),
            }
            for rule, how, sim in fired
        ]
    result = Ranked(hits, method, model_id, query_info, started, cut, cuts, explainer, correction, coded)
    if explain:  # a few hundred of them for a search page's whole result set, of which it shows one page
        result.explain(hits)
    return result


#: typed words that name nothing a title would (``_named_in_titles``, ``relaxed.FILLER``)
NOT_NAMING = STOP_WORDS | {"a", "an", "of", "in", "on", "to", "s", "my", "me", "i"}


def _named_in_titles(order: list[str], text: str, model_id: str) -> set[str]:
    """Of ``order``, the products whose title has every word typed, stop words aside (a word, its singular
    or its plural; ``store.titles_having``): the trained cut never leaves out a product the words name.
    Two neighbouring words may be the one word they make ("crew neck": "Crewneck", ``query.compound_words``).
    On Luma "v neck" showed one tee where three more titles say "V-Neck" or "(V-neck)", each about 0.28
    likely relevant by the re-ranker's calibration (the cut is its ``related`` one). Nor one called by a
    kind the words name (:func:`_called_by_kinds`: "yoga leggings", the leggings)."""
    asked = [word for word in dict.fromkeys(tokens(text)) if word not in NOT_NAMING]
    if not asked:
        return set()
    readings = [asked] + [
        [*asked[:i], joined, *asked[i + 2 :]]
        for joined in compound_words(text, model_id)
        for i in range(len(asked) - 1)
        if asked[i] + asked[i + 1] == joined
    ]
    store = get_store()
    named: set[str] = set()
    for reading in readings:
        named |= store.titles_having(model_id, order, [noun_forms(word) for word in reading])
    kinds = kinds_named(text, model_id)  # one kind: "backpack watch" asks for neither alone
    return named | (_called_by_kinds(order, kinds, model_id, gender_in_text(text)) if len(kinds) == 1 else set())


def _called_by_kinds(order: list[str], kinds: list[str], model_id: str, gender: str | None = None) -> set[str]:
    """Of ``order``, the products whose title's head noun (its last word that says what it is, a
    parenthesis aside: ``text.head_noun``) is one of ``kinds`` (stems the words name,
    ``services.query.kinds_named``): "yoga leggings" keeps "Emma Leggings", not "Fiona Fitness Short" for
    "fitness tracker". On Luma, "yoga leggings" showed a tight and two yoga pants; the re-ranker's
    calibration called both leggings unlikely (0.21 and 0.25) under yoga straps. With a ``gender`` the
    words name, none stating the other ("mens tee" keeps no women's tee)."""
    store = get_store()
    titled = set().union(*(store.titles_having(model_id, order, [noun_forms(kind)]) for kind in kinds))
    fields = store.product_fields(sorted(titled), model_id=model_id) if titled else {}
    heads = {pk: head_noun(_PARENTHESIS.sub(" ", str(row.get(v.FIELD_TITLE) or ""))) for pk, row in fields.items()}
    return {
        pk
        for pk, head in heads.items()
        if head is not None and stem(head) in kinds and not attributes.states_another_gender(fields[pk], gender)
    }


#: a title's parenthesis ("Atomic Endurance Running Tee (V-neck)"): not its head noun
_PARENTHESIS = re.compile(r"\([^)]*\)")


def _having_every_word(order: list[str], texts: list[str], model_id: str) -> tuple[list[str], list[str]]:
    """The candidates of ``order`` (in its order) whose stored text has every word of the first of
    ``texts`` (the words searched), else of one of the others (:func:`_fallback_readings`), and those
    others when it was they that found them: what a search shows when no candidate passes the
    relevance cut. "winter" (in 3 of Luma's descriptions, the re-ranker calling each unlikely) then
    shows those 3 products, and "quarter zip" the "1/4 zip" jacket, not "No results"; a word no
    product has ("shoes" in a shop without them) still finds nothing."""
    store = get_store()
    having = store.having_every_word(model_id, order, texts[:1])
    read_as: list[str] = []
    if not having:  # a few readings, one read each, in the rare search the cut leaves empty
        for reading in texts[1:]:
            found = store.having_every_word(model_id, order, [reading])
            if found:
                having |= found
                read_as.append(reading)
    return [pk for pk in order if pk in having], read_as


def _in_named_departments(query: Query, signals: Signals, text: str) -> tuple[set[str] | None, str]:
    """The candidates in a department the words name (their ``department`` signal at least even), and the
    words without those naming it ("clothes for hiking" -> "for hiking"); None (every candidate) and the
    words as typed when they name no department, or nothing else."""
    named = names_stems(query.departments)
    rest = " ".join(word for word in tokens(text) if stem(word) not in named)
    if not named or v.DEPARTMENT not in signals or not rest:
        return None, text
    return {pk for pk, value in signals[v.DEPARTMENT].items() if value >= 0.5}, rest


def _fallback_readings(text: str, model_id: str, rules: merchandising.Rules | None) -> list[str]:
    """The words searched and, when one of them is in no product's text, their readings with a synonym
    put for the phrase that holds it (``merchandising.variants``: "quarter zip" -> "1/4 zip" where no
    product says "quarter"). A word some product uses is read as typed only: "sneakers", in one bag's
    description, is not read as "trainers" (the name of a jacket here)."""
    readings = merchandising.variants(text, rules)
    if len(readings) < 2:
        return readings
    typed = tokens(text)
    counts = catalogue_term_counts(model_id, typed, 1)
    unused = {word for word in typed if not counts.get(word)}  # stop words too, but no synonym replaces one
    return readings[:1] + [reading for reading in readings[1:] if unused & (set(typed) - set(tokens(reading)))]


def _personal_entries(hits: list[SearchHit], nudge: taste.Nudge) -> None:
    """Each hit's ``personal`` entry (the profile's share in its explanation is the explainer's)."""
    for hit in hits:
        if hit.product_pk not in nudge.affinity:
            continue
        hit.signals[v.PERSONAL] = round(nudge.affinity[hit.product_pk], 6)
        hit.personal = {"affinity": round(nudge.affinity[hit.product_pk], 4), "moved_up": 0}
        moved = nudge.moved.get(hit.product_pk, 0)
        if moved:
            hit.personal["moved_up"] = moved
            if hit.product_pk in nudge.because:
                hit.personal["because"] = nudge.because[hit.product_pk]


def respond(
    ranked: Ranked,
    hits: list[SearchHit],
    response_class: type[SearchResponse] = SearchResponse,
    matched: list[SearchHit] | None = None,
    **extra: Any,
) -> SearchResponse:
    """The answer to a query: ``hits`` (a part of ``ranked.hits``) and the ``match`` summary of
    ``matched`` (default ``hits``; best first); ``search_performed`` is sent. ``extra``: more fields of
    ``response_class`` (a subclass, e.g. ``services.browse.SearchPage``; its ``total`` is the result
    count sent)."""
    exact = exact_cut(ranked)
    match = calibration.match_summary(
        [hit.relevance for hit in (hits if matched is None else matched)],
        exact,
        _cut(_setting("RELATED"), ranked.cuts, calibration.RELATED),
    )
    if match == calibration.EXACT and ranked.query.get("unsold"):  # no product is the kind the words name
        match = calibration.RELATED
    took_ms = (time.perf_counter() - ranked.started) * 1000
    result_count = extra.get("total", len(hits))
    page, page_size = int(extra.get("page", 1)), int(extra.get("page_size", len(hits)))
    search_performed.send(
        sender=SearchResponse,
        query=ranked.query,
        result_count=result_count,
        took_ms=took_ms,
        shown=[hit.product_pk for hit in hits],
        first_position=(page - 1) * page_size + 1,
        filters=_refinements(extra),
        match=match,
    )
    return response_class(
        hits=hits,
        method=ranked.method,
        took_ms=took_ms,
        model_id=ranked.model_id,
        query=ranked.query,
        match=match,
        min_relevance=ranked.cut,
        exact_cut=exact,
        **extra,
    )


def _refinements(extra: Mapping[str, Any]) -> dict[str, Any]:
    """The filters, price range, sort and page of a refined search that differ from the defaults
    (``search_performed``'s ``filters``)."""
    chosen: dict[str, Any] = {
        name: str(extra[name]) for name in ("price_min", "price_max") if extra.get(name) is not None
    }
    if extra.get("filters"):
        chosen["filters"] = extra["filters"]
    if extra.get("sort", "relevance") != "relevance":
        chosen["sort"] = extra["sort"]
    if extra.get("page", 1) != 1:
        chosen["page"] = extra["page"]
    return chosen


def exact_cut(ranked: Ranked) -> float | None:
    """The relevance at which a result of ``ranked`` is the one asked for (``RELEVANCE["EXACT"]``)."""
    return _cut(_setting("EXACT"), ranked.cuts, calibration.EXACT)


def likely_match(hit: SearchHit, response: SearchResponse) -> bool:
    """Whether the search page calls ``hit`` "Likely a match" rather than "Similar item"
    (``ranking.calibration.likely_match``: even odds, or the ``exact`` cut the page's ``match`` used),
    never when it is surely for another gender than the words name (:func:`other_gender`) nor when the
    words name a kind of goods the shop has no word for (``query["unsold"]``: "red dress" in a shop without
    dresses). The page says "No exact results" only when it calls none of its results likely."""
    if response.query.get("unsold") or other_gender(hit.signals, words_as_read(response.query)):
        return False
    return calibration.likely_match(hit.relevance, response.exact_cut)


def words_as_read(query: Mapping[str, Any]) -> str | None:
    """A search's words as the search read them (``SearchResponse.query``): corrected ("womems" ->
    "womens"), else without a price phrase, else as typed."""
    return query.get("corrected") or query.get("searched") or query.get("text")


def other_gender(signals: Mapping[str, float], text: str | None) -> bool:
    """Whether a result's ``signals`` say it is surely for another gender than the words ``text`` name
    (the ``gender`` signal 0: stated for the other, or inferred for it so surely that the asked gender's
    share is under 0.5%). False when the words name none (a gender read from a query photo's neighbours
    is not one the shopper named). Such a result stays in the results, as the kind asked ("women's running
    shorts": a men's running short, after the women's; :func:`gender_within_kind`), but the search page
    calls it a similar item and says why."""
    return signals.get(v.GENDER, 1.0) <= 0.0 and gender_in_text(text or "") is not None


def check_min_relevance(value: MinRelevance) -> None:
    """Raise ``SearchError`` unless ``value`` is None, ``"auto"`` or a number from 0 to 1."""
    if value is None or value == AUTO:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise SearchError(f"min_relevance must be a number from 0 to 1, or {AUTO!r}.")


def storefront_min_relevance() -> MinRelevance:
    """The relevance cut the storefront's search page applies (``RELEVANCE["STOREFRONT_MIN"]``)."""
    return _setting("STOREFRONT_MIN")


def _setting(name: str) -> MinRelevance:
    value: MinRelevance = search_settings.RELEVANCE[name]
    return value


def _relevance(
    trained: Reranker | None,
    photo: Mapping[str, Any] | None,
    query: Query,
    pool: list[str],
    signals: Signals,
    features: np.ndarray | None,
    sold: bool | None,
) -> tuple[dict[str, float] | None, Mapping[str, float]]:
    """Each candidate's calibrated relevance and the cuts that go with it (None and no cuts: unknown).

    Text queries: from the re-ranker's logit when it ranked them (``features``: its inputs, else None), else
    from the text and photo cosines; a query of a colour, a gender, a department and/or a quality alone
    from the logit and those facets (the ``broad`` calibration, where ``mmsearch_train`` fitted one).
    Photo queries (no words): the probability that a result is the product in the photo, from its best
    photo's cosine (``photo``: the encoder's fitted calibration), 0 for every result when the photo shows
    nothing the catalogue sells (``sold`` False). Text with a photo: unknown.
    """
    if trained is not None:
        kind = calibration.SIGNALS if features is None else calibration.RERANK
        if kind == calibration.RERANK and calibration.BROAD in trained.calibrations and query.broad:
            kind = calibration.BROAD  # "red", "women's black", "tops", "wool": every product of that facet answers
        return trained.relevance(pool, signals, kind, features), trained.cuts
    if photo is None or query.text_vector is not None or query.image_features is None or v.VISUAL not in signals:
        return None, {}
    model = calibration.PhotoCalibration.from_json(photo.get("calibration"))
    if model is None:
        return None, {}
    cuts = {name: float(value) for name, value in photo["cuts"].items()}
    if sold is False:  # a plate in a clothes shop: however alike, nothing is the product
        return dict.fromkeys(pool, 0.0), cuts
    return model.relevance(pool, signals), cuts


def photo_sold_here(photo: Mapping[str, Any] | None, query: Query) -> bool | None:
    """Whether a query photo shows a kind of thing the catalogue sells (``ranking.calibration.PhotoDomain``);
    None: unknown (no photo, no classifier or nothing fitted)."""
    domain = calibration.PhotoDomain.from_json(photo.get("domain")) if photo else None
    if domain is None or query.photo_classes is None:
        return None
    return domain.sells(query.photo_classes)


def _cut(value: MinRelevance, cuts: Mapping[str, float], name: str) -> float | None:
    """A configured or requested cut as a number: ``"auto"`` is the trained one (None when untrained)."""
    if value == AUTO:
        return cuts.get(name)
    return None if value is None else float(value)


def first_stage(text: str, *, model_id: str) -> tuple[list[str], Signals]:
    """The candidates and signals the re-ranker scores for a text query (what ``mmsearch_train`` learns from)."""
    encoder = get_encoder()
    query = encode_query(text, None, encoder=encoder, model_id=model_id)
    names = set(signal_weights(query, v.RERANK, search_settings.FUSION))
    return collect_signals(query, names, model_id, int(search_settings.FUSION["CANDIDATES"]), [])


def plain_knn(text: str | None, image: Image.Image | None, *, k: int) -> list[tuple[Any, float]]:
    """The latency and relevance reference: the raw query encoded and one HNSW query, nothing else.

    Returns:
        ``[(product, similarity)]``, best first (photo features for a photo, else the text vector).
    """
    encoder, model_id = current_encoder()
    scope = Scope(model_id, k, ef_search=int(search_settings.HNSW_EF_SEARCH))
    store = get_store()
    if image is not None:
        _shared, features = encoder.encode_image_pair([image.convert("RGB")])
        nearest = store.nearest("feature_vector", features[0], scope)
    else:
        nearest = store.nearest("text_vector", encoder.encode_text([text or ""])[0], scope)
    similarity = dict(nearest)
    return [(product, similarity[pk]) for pk, product in _products([pk for pk, _ in nearest])]


#: nearest products read per similar product asked for: colour variants of one group collapse to one
SIMILAR_READ = 4


def similar_products(product: Any, *, k: int = 8) -> list[SearchHit]:
    """Products closest to ``product`` by its fused vector, one per group (its nearest colour or
    variant: ``fields["group"]``), the product's own group left out: its other colours are the same
    product, which a product page lists apart (the demo's Chaz Kangeroo Hoodie showed its two other
    colours first among eight).

    Those that state another gender than the product's own come after the rest (:func:`gender_apart`):
    on the demo's men's and women's clothes 26% of the similar products were of the other gender."""
    _encoder, model_id = current_encoder()
    store = get_store()
    own = str(product.pk)
    vector = store.product_vector(own, "fused_vector", model_id=model_id)
    if vector is None:
        return []
    scope = Scope(model_id, SIMILAR_READ * k + 1, ef_search=int(search_settings.HNSW_EF_SEARCH))
    nearest = store.nearest("fused_vector", vector, scope)
    fields = store.product_fields([own] + [pk for pk, _ in nearest], model_id=model_id)
    similarity = one_per_group(nearest, fields, taken=[own])
    order = gender_apart(attributes.stated_gender(fields.get(own) or {}), list(similarity), fields)[:k]
    return [
        SearchHit(
            product_pk=pk,
            product=item,
            score=similarity[pk],
            signals={v.FUSED: similarity[pk]},
            explanation=fusion.contributions(pk, {v.FUSED: similarity}, {v.FUSED: 1.0}),
        )
        for pk, item in _products(order)
    ]


def one_per_group(
    nearest: list[tuple[str, float]], fields: Mapping[str, Mapping[str, Any]], *, taken: Iterable[str] = ()
) -> dict[str, float]:
    """pk -> similarity of the nearest of ``nearest`` in each product group (``attributes.product_group``: a
    product's colours), none in the group of a product of ``taken``; in ``nearest``'s order."""

    def group(pk: str) -> str:
        return attributes.product_group(pk, fields.get(pk) or {})

    groups = {group(pk) for pk in taken}
    kept: dict[str, float] = {}
    for pk, sim in nearest:
        if group(pk) not in groups:
            groups.add(group(pk))
            kept[pk] = sim
    return kept


def gender_apart(gender: str | None, order: list[str], fields: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """``order`` with the products that state a gender other than ``gender`` ("men", "women") after the
    others (each part in its order). A shopper on a men's hoodie's page wants men's clothes, however alike
    the women's hoodie looks; unisex products, and products or catalogues that state no gender, keep
    their place, and so does everything when ``gender`` is None or "unisex"."""
    if gender in (None, "unisex"):
        return order

    def other(pk: str) -> bool:
        return attributes.states_another_gender(fields.get(pk) or {}, gender)

    return [pk for pk in order if not other(pk)] + [pk for pk in order if other(pk)]


#: the methods whose results put the products of a kind the words name first (``kind_first``)
KIND_FIRST_METHODS = (v.FEATURE, v.DECISION, v.EMBEDDING)


def kind_first(
    order: list[str], scores: dict[str, float], kind: Mapping[str, float] | None
) -> tuple[list[str], dict[str, float]]:
    """``order`` with the products of a kind the words name (``kind``: the ``title_kind`` signal, 1 when
    the product's title or category leaf says it) before the others, each in its order, and the scores of
    the places they take. "yoga capri" ranked the capris whose descriptions say yoga first, then yoga
    straps, bricks and bags before the other capris (whose text says only "capri"). Unchanged when the
    words name no kind the catalogue uses or every product or none is of it."""
    if not kind:
        return order, scores
    ours = [pk for pk in order if kind.get(pk, 0.0) >= 0.5]
    if not ours or len(ours) == len(order):
        return order, scores
    return _in_places(order, scores, range(len(order)), ours + [pk for pk in order if kind.get(pk, 0.0) < 0.5])


def gender_within_kind(
    order: list[str],
    scores: dict[str, float],
    kind: Mapping[str, float] | None,
    gender: Mapping[str, float] | None,
) -> tuple[list[str], dict[str, float]]:
    """``order`` with the products of the kind a query's typed words name (``kind``: the ``kind_asked``
    signal, at least 0.5) that are surely not for the gender it names (the ``gender`` signal 0: stated
    for the other, or inferred for it so surely that the asked gender's share is under the 0.5% the
    inferred facets keep) after those of that kind that may be, in the places products of that kind hold, and the
    ``scores`` that go with it: a product moved takes the score of the place it takes (as personalisation's
    nudge does), so that scores fall with the order. "women's running shorts under 40": where the price
    leaves few women's shorts, a men's running short came first for its words; now the women's shorts hold
    the first places shorts hold, and the men's the later ones. No other product moves, so a product of
    another kind (a women's tank) never passes one of the kind asked. Unchanged when the query names no
    gender or no kind."""
    if not kind or not gender:
        return order, scores

    def of_kind(pk: str) -> bool:
        return kind.get(pk, 0.0) >= 0.5

    places = [i for i, pk in enumerate(order) if of_kind(pk)]
    ours = [order[i] for i in places if gender.get(order[i], 1.0) > 0]
    others = [order[i] for i in places if gender.get(order[i], 1.0) <= 0]
    if not ours or not others:
        return order, scores
    return _in_places(order, scores, places, ours + others)


def _in_places(
    order: list[str], scores: dict[str, float], places: Iterable[int], products: list[str]
) -> tuple[list[str], dict[str, float]]:
    """``order`` with ``products`` put in the ``places`` (indexes of ``order``) in turn, each taking the score
    of the place it takes, so that scores fall with the order; the other products keep their places."""
    moved, placed = list(order), dict(scores)
    for i, pk in zip(places, products):
        moved[i], placed[pk] = pk, scores.get(order[i], 0.0)
    return moved, placed


def _products(
    order: list[str], *, prefetch: bool = True, fields: tuple[str, ...] | None = None
) -> list[tuple[str, Any]]:
    """``(pk, product)`` in the given order, for the products the adapter still returns (``prefetch``
    False: without the queryset's ``prefetch_related``; ``fields``: only those model fields)."""
    if not order:
        return []
    queryset = get_adapter().get_queryset()
    queryset = queryset.filter(pk__in=_pk_array(queryset.model, order, queryset.db)).order_by()  # in ``order`` below
    products = {str(p.pk): p for p in lean_queryset(queryset, prefetch=prefetch, fields=fields)}
    return [(pk, products[pk]) for pk in order if pk in products]


def lean_queryset(queryset: QuerySet[Any], *, prefetch: bool, fields: tuple[str, ...] | None) -> QuerySet[Any]:
    """``queryset`` without its ``prefetch_related`` (``prefetch`` False) and loading only ``fields``
    (None: every field): a result set that is filtered and counted, of which one page is shown."""
    if not prefetch:
        queryset = queryset.prefetch_related(None)
    return queryset if fields is None else queryset.only(*fields)


def _pk_array(model: type[Model], pks: list[str], alias: str) -> RawSQL:
    """``pks`` as one array parameter, for ``pk__in``: a search page's few hundred products as ``IN
    (%s, %s, ...)`` cost Django and psycopg about 4 ms to compose, one array almost nothing."""
    field = model._meta.pk
    assert field is not None
    return RawSQL(f"SELECT unnest(%s::{field.db_type(connections[alias])}[])", [[field.to_python(pk) for pk in pks]])


def prefetch_products(hits: list[SearchHit], *, reload: bool = False) -> None:
    """Run the adapter queryset's ``prefetch_related`` for these hits' products (loaded without it).

    ``reload``: they were loaded with some fields only; load them again in full, prefetch included (a
    product gone since keeps what was loaded)."""
    if reload:
        full = dict(_products([hit.product_pk for hit in hits]))
        for hit in hits:
            hit.product = full.get(hit.product_pk, hit.product)
        return
    lookups = getattr(get_adapter().get_queryset(), "_prefetch_related_lookups", ())
    if lookups and hits:
        prefetch_related_objects([hit.product for hit in hits], *lookups)
