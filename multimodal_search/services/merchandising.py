"""Merchandising rules edited in the admin: synonyms, and pins, boosts, burials and hides per query.

Rules are read from the database once per change, not per search: each search reads a stamp of the two
rule tables (their row counts and latest ``updated_at``, two tiny aggregate queries) and reloads the rules
when it differs from the one its process loaded. A change therefore takes effect on the next search in
every process (web workers, the API, the worker), without a restart and without a shared cache.

Synonym rules are *added to* the ``SYNONYMS`` setting's groups (the built-in list when unset), which
stay the seed every shop starts from.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from django.db import connections, router

from multimodal_search.encoders import BaseEncoder
from multimodal_search.ranking import synonyms
from multimodal_search.ranking.text import phrase_key


@dataclass(frozen=True)
class Rule:
    """One active ``QueryRule`` as plain data."""

    id: int
    query: str
    action: str
    product_pk: str
    position: int
    places: int
    similarity: float

    @property
    def key(self) -> str:
        return phrase_key(self.query)


@dataclass
class Rules:
    """The active rules of one version: synonyms for ``encode_query``, query rules for the ranking."""

    groups: tuple[tuple[str, ...], ...] = ()
    rewrites: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = ()
    query_rules: tuple[Rule, ...] = ()
    #: (model_id, expanded rule text) -> its vector, filled as queries need them
    vectors: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)

    @cached_property
    def words(self) -> frozenset[str]:
        """Every word of the synonym groups and rewrites (never read as typos: ``ranking.spelling``)."""
        return frozenset(word for said in synonyms.phrase_words(self.groups, self.rewrites) for word in said)


_lock = threading.Lock()
_loaded: dict[str, Any] = {"version": None, "rules": None}


def rules_changed() -> None:
    """Forget this process's rules (a save or delete here); other processes see the new stamp."""
    with _lock:
        _loaded["rules"] = _loaded["version"] = None


def _stamp() -> tuple[Any, ...]:
    """What changes whenever a rule is added, edited or deleted: each table's row count and latest edit
    (one statement: it runs on every search)."""
    from multimodal_search.models import QueryRule, SynonymRule

    selects = [
        f"(SELECT {what} FROM {model._meta.db_table})"
        for model in (SynonymRule, QueryRule)
        for what in ("COUNT(*)", "MAX(updated_at)")
    ]
    with connections[router.db_for_read(QueryRule)].cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(selects)}")
        row = cursor.fetchone()
    return tuple(row or ())


def current_rules() -> Rules:
    """The active rules, reloaded from the database when another process or request changed them."""
    version = _stamp()
    with _lock:
        if _loaded["rules"] is None or _loaded["version"] != version:
            _loaded["rules"], _loaded["version"] = _load(), version
        rules: Rules = _loaded["rules"]
    return rules


def _load() -> Rules:
    from multimodal_search.models import QueryRule, SynonymRule

    groups, rewrites = [], []
    for rule in SynonymRule.objects.filter(active=True):
        left, right = rule.phrases()
        if rule.kind == SynonymRule.ONEWAY and left and right:
            rewrites.append((left, right))
        elif rule.kind == SynonymRule.GROUP and len(left) > 1:
            groups.append(left)
    query_rules = tuple(
        Rule(r.pk, r.query, r.action, r.product_pk, r.position, r.places, r.similarity)
        for r in QueryRule.objects.filter(active=True).order_by("pk")
    )
    return Rules(tuple(groups), tuple(rewrites), query_rules)


def expand(text: str, rules: Rules | None = None) -> str:
    """``text`` with the synonyms of the settings and of the admin's rules added."""
    rules = rules or current_rules()
    return synonyms.expand(
        text, synonyms.configured_groups() + rules.groups, synonyms.configured_rewrites() + rules.rewrites
    )


def variants(text: str, rules: Rules | None = None) -> list[str]:
    """``text`` and its readings with one synonym put for another (settings and admin groups;
    ``ranking.synonyms.variants``)."""
    rules = rules or current_rules()
    return synonyms.variants(text, synonyms.configured_groups() + rules.groups)


def named(text: str, rules: Rules | None = None) -> list[str]:
    """The synonym-group phrases ``text`` names (settings and admin groups)."""
    rules = rules or current_rules()
    return synonyms.named(text, synonyms.configured_groups() + rules.groups)


def fired_rules(
    text: str | None,
    text_vector: np.ndarray | None,
    *,
    encoder: BaseEncoder,
    model_id: str,
    rules: Rules | None = None,
) -> list[tuple[Rule, str, float]]:
    """The query rules ``text`` fires, as ``(rule, "words" | "meaning", similarity)``.

    A rule fires on the same words, or when the cosine between ``text_vector`` (the query's text
    vector) and the rule query's vector (encoded as a query is, once per rule text and encoder) is at
    least the rule's ``similarity``.
    """
    if not text:
        return []
    rules = rules or current_rules()
    if not rules.query_rules:
        return []
    key = phrase_key(text)
    fired = []
    for rule in rules.query_rules:
        if rule.key == key:
            fired.append((rule, "words", 1.0))
        elif text_vector is not None and rule.similarity < 1.0:
            similarity = float(np.dot(_rule_vector(rules, rule.query, encoder, model_id), text_vector))
            if similarity >= rule.similarity:
                fired.append((rule, "meaning", similarity))
    return fired


def _rule_vector(rules: Rules, text: str, encoder: BaseEncoder, model_id: str) -> np.ndarray:
    words = expand(text, rules)
    found = rules.vectors.get((model_id, words))
    if found is None:
        found = np.asarray(encoder.encode_text([words])[0], dtype=np.float32)
        found = found / (np.linalg.norm(found) or 1.0)
        rules.vectors[(model_id, words)] = found
    return found


def apply_rules(order: Sequence[str], fired: Sequence[Rule], *, insert: bool = True) -> list[str]:
    """``order`` (product pks, best first) with the rules applied: hides, then boosts and burials, then pins.

    Args:
        order: the ranking.
        fired: the rules that fired.
        insert: whether a pinned product that is not in ``order`` is added (False in a category).
    """
    hidden = {rule.product_pk for rule in fired if rule.action == "hide"}
    result = [pk for pk in order if pk not in hidden]
    for rule in fired:
        if rule.action in ("boost", "bury") and rule.product_pk in result:
            at = result.index(rule.product_pk)
            result.pop(at)
            if rule.action == "boost":
                result.insert(0 if rule.places == 0 else max(at - rule.places, 0), rule.product_pk)
            else:
                result.insert(len(result) if rule.places == 0 else at + rule.places, rule.product_pk)
    for rule in sorted(
        (r for r in fired if r.action == "pin" and r.product_pk not in hidden), key=lambda r: r.position
    ):
        if rule.product_pk in result:
            result.remove(rule.product_pk)
        elif not insert:
            continue
        result.insert(max(rule.position - 1, 0), rule.product_pk)
    return result
