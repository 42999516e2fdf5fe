"""Fits the relevance calibrations (``ranking.calibration``) and the cuts of the ``match`` summary.

Data: pseudo-queries the re-ranker was *not* trained on (``learning.reranker`` makes them with another
seed and other wording), each searched like a shopper's query. Every candidate is labelled relevant
when its pseudo-query grade is above 0 (the kind of product asked for). Each query is used twice:

* as it is (a query the catalogue can answer);
* *leave-kind-out*: the same candidates without every relevant one, standardised again within what
  is left, so every candidate is irrelevant. This is what a search for a kind of product the
  catalogue does not sell looks like to the ranking: the best candidates are merely the least bad.

Only each query's top ``TOP`` candidates (by the re-ranker) are used, as only they are shown.

The ``rerank`` and ``signals`` calibrations are fitted on the pseudo-queries that name a kind of
product; the ``broad`` one on the broad pseudo-queries (a colour, a gender, a department and/or a
quality alone: "red", "women's", "tops", "wool"), used the same two ways, and only when at least
``MIN_QUERIES`` of them are answerable.
The cuts come from the ``rerank`` calibration; the report says what the ``related`` cut does to the
broad queries under each.

Cuts, on the ``rerank`` calibration (the storefront's method):

* ``related`` (the storefront's threshold unless configured): the highest cut that loses the first
  relevant result of at most ``MAX_LOST`` of the answerable pseudo-queries, but never above
  ``EVEN_ODDS``. Pseudo-queries are phrased from the catalogue's own titles, so their relevant
  results score higher than those of shoppers' words: on Luma the 2% rule alone gave 0.84, which
  dropped the first relevant result of 7.9% of the judged text queries; a result at least as likely
  relevant as not is always shown;
* ``exact``: the lowest cut at which the top result of the queries (answerable and leave-kind-out)
  that pass it is relevant at least ``EXACT_PRECISION`` of the time (at least ``related``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from multimodal_search.learning.fitting import fit_probability
from multimodal_search.ranking import calibration as c
from multimodal_search.ranking.reranker import Reranker, feature_matrix

#: candidates per query the calibrations are fitted on (a storefront page)
TOP = 24
#: share of answerable pseudo-queries whose first relevant result the ``related`` cut may drop
MAX_LOST = 0.02
#: the highest ``related`` cut: a result at least as likely relevant as not is shown
EVEN_ODDS = c.EVEN_ODDS
#: how often the top result must be relevant above the ``exact`` cut
EXACT_PRECISION = 0.9
#: fewest answerable pseudo-queries a calibration is fitted on
MIN_QUERIES = 5


@dataclass
class CalibrationQuery:
    """One searched pseudo-query: its candidates, their signals, and which are relevant."""

    pool: list[str]
    signals: Mapping[str, Mapping[str, float]]
    relevant: np.ndarray
    #: a colour and/or a gender alone, no kind of product (the ``broad`` calibration's)
    broad: bool = False

    def leave_kind_out(self) -> CalibrationQuery | None:
        """The same search in a catalogue that does not sell what was asked (None when nothing is left)."""
        pool = [pk for pk, relevant in zip(self.pool, self.relevant) if not relevant]
        return CalibrationQuery(pool, self.signals, np.zeros(len(pool), dtype=bool), self.broad) if pool else None


@dataclass
class _Ranked:
    """One query's top candidates by the re-ranker: the calibration inputs and labels."""

    inputs: dict[str, np.ndarray]
    relevant: np.ndarray
    answerable: bool


def _ranked(model: Reranker, query: CalibrationQuery) -> _Ranked:
    logits = model.decision(feature_matrix(query.pool, query.signals))
    top = np.argsort(-logits, kind="stable")[:TOP]
    pool = [query.pool[i] for i in top]
    inputs = {name: c.calibration_inputs(name, pool, query.signals, logits[top]) for name in c.INPUTS}
    return _Ranked(inputs, query.relevant[top], bool(query.relevant.any()))


def fit_calibrations(
    model: Reranker, queries: Sequence[CalibrationQuery]
) -> tuple[dict[str, c.Calibration], dict[str, float], dict[str, Any]]:
    """Fit every calibration and choose the cuts.

    Returns:
        (calibrations by name, cuts, report); empty calibrations and cuts when there are fewer than
        ``MIN_QUERIES`` answerable queries or no irrelevant candidate to learn from.
    """
    answerable, unanswerable = _both_ways(model, [q for q in queries if not q.broad])
    ranked = answerable + unanswerable
    labels = _labels(ranked)
    report: dict[str, Any] = {"queries": len(answerable), "leave_kind_out": len(unanswerable), "top": TOP}
    if len(answerable) < MIN_QUERIES or labels.min(initial=1) == labels.max(initial=0):
        return {}, {}, {**report, "skipped": "too few pseudo-queries to calibrate on"}
    calibrations = {name: _fit(name, ranked, labels) for name in (c.RERANK, c.SIGNALS)}
    rerank = calibrations[c.RERANK]
    probability = [rerank.probability(r.inputs[c.RERANK]) for r in ranked]
    first = np.array([p[r.relevant.argmax()] for p, r in zip(probability, answerable) if r.relevant.any()])
    related = min(float(np.sort(first)[int(MAX_LOST * len(first))]) if len(first) else EVEN_ODDS, EVEN_ODDS)
    top = np.array([p[0] for p in probability])
    exact = precision_cut(top, np.array([bool(r.relevant[0]) for r in ranked]), floor=related)
    best_unanswerable = np.array([p.max() for p in probability[len(answerable) :]])
    report.update(
        {
            "lost_first_relevant": round(float((first < related).mean()), 4),
            "leave_kind_out_emptied": round(float((best_unanswerable < related).mean()), 4)
            if len(best_unanswerable)
            else None,
            "exact_share": round(float((top[: len(answerable)] >= exact).mean()), 4),
            "brier": round(float(np.mean((np.concatenate(probability) - labels) ** 2)), 4),
        }
    )
    broad = _fit_broad(model, [q for q in queries if q.broad], rerank, related)
    if broad is not None:
        calibrations[c.BROAD], report["broad"] = broad
    return calibrations, {c.RELATED: round(related, 6), c.EXACT: round(exact, 6)}, report


def _both_ways(model: Reranker, queries: Sequence[CalibrationQuery]) -> tuple[list[_Ranked], list[_Ranked]]:
    """The answerable queries as they are, and every query left kind out."""
    answerable = [_ranked(model, q) for q in queries if q.relevant.any()]
    unanswerable = [_ranked(model, left) for q in queries if (left := q.leave_kind_out()) is not None]
    return answerable, unanswerable


def _labels(ranked: Sequence[_Ranked]) -> np.ndarray:
    return np.concatenate([r.relevant for r in ranked]).astype(np.float64) if ranked else np.zeros(0)


def _fit(name: str, ranked: Sequence[_Ranked], labels: np.ndarray) -> c.Calibration:
    weights, bias, mean, scale = fit_probability(np.concatenate([r.inputs[name] for r in ranked]), labels)
    return c.Calibration(name, weights, bias, mean, scale)


def _fit_broad(
    model: Reranker, queries: Sequence[CalibrationQuery], rerank: c.Calibration, related: float
) -> tuple[c.Calibration, dict[str, Any]] | None:
    """The ``broad`` calibration and what the ``related`` cut does with it: of the answerable broad
    queries, the share whose first relevant result it keeps (and would keep under ``rerank``); of the
    leave-kind-out ones, the share it empties. None when fewer than ``MIN_QUERIES`` are answerable."""
    answerable, unanswerable = _both_ways(model, queries)
    ranked = answerable + unanswerable
    labels = _labels(ranked)
    if len(answerable) < MIN_QUERIES or labels.min(initial=1) == labels.max(initial=0):
        return None
    broad = _fit(c.BROAD, ranked, labels)

    def kept(calibration: c.Calibration) -> float:
        first = [calibration.probability(r.inputs[calibration.name])[r.relevant.argmax()] for r in answerable]
        return round(float((np.array(first) >= related).mean()), 4)

    emptied = [broad.probability(r.inputs[c.BROAD]).max() < related for r in unanswerable]
    return broad, {
        "queries": len(answerable),
        "leave_kind_out": len(unanswerable),
        "kept_first_relevant": kept(broad),
        "kept_first_relevant_rerank": kept(rerank),
        "leave_kind_out_emptied": round(float(np.mean(emptied)), 4) if emptied else None,
    }


def precision_cut(scores: np.ndarray, hits: np.ndarray, *, floor: float) -> float:
    """The lowest score down to which the top-scored items are hits at least ``EXACT_PRECISION`` of the time."""
    order = np.argsort(-scores, kind="stable")
    precision = np.cumsum(hits[order]) / np.arange(1, len(order) + 1)
    passing = np.flatnonzero(precision >= EXACT_PRECISION)
    if not len(passing):
        return 1.0
    return max(float(scores[order][passing[-1]]), floor)


def report_line(report: Mapping[str, Any], cuts: Mapping[str, float]) -> str:
    """One line for ``mmsearch_train``'s output."""
    if not cuts:
        return f"Relevance calibration skipped: {report.get('skipped', 'nothing to fit')}."
    return (
        f"Relevance calibrated on {report['queries']} held-out pseudo-queries (+{report['leave_kind_out']} "
        f"leave-kind-out): related >= {cuts[c.RELATED]:.3f} (loses the first relevant result of "
        f"{report['lost_first_relevant']:.1%}, empties {report['leave_kind_out_emptied']:.1%} of leave-kind-out), "
        f"exact >= {cuts[c.EXACT]:.3f}." + _broad_line(report.get("broad"))
    )


def _broad_line(broad: Mapping[str, Any] | None) -> str:
    if not broad:
        return " No broad calibration (too few queries of a colour, a gender, a department or a quality alone)."
    emptied = broad["leave_kind_out_emptied"]
    return (
        f" Queries of a colour, a gender, a department or a quality alone ({broad['queries']}): related keeps the first "
        "relevant result "
        f"of {broad['kept_first_relevant']:.0%} ({broad['kept_first_relevant_rerank']:.0%} under the rerank "
        f"calibration), empties {0 if emptied is None else emptied:.0%} of leave-kind-out."
    )
