"""Why a result ranks where it does, in a shopper's words (pure).

``fusion.contributions`` gives each fired signal's share of a result's score; this turns those shares
into what the search page shows: a legend word per signal, and a short sentence ("matches “hoodie” in
the name", "looks like your photo", "colour: black"). Signal names stay developer words in the API;
shoppers never see them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from multimodal_search.ranking import text as words
from multimodal_search.ranking import vocabulary as v

#: the legend word of each signal, as the search page shows it
LEGEND = {
    v.TEXT: "description",
    v.TITLE: "name",
    v.IMAGE: "photos fit the words",
    v.VISUAL: "looks like your photo",
    v.FUSED: "overall likeness",
    v.LEXICAL: "keywords",
    v.NEIGHBOURS: "like the best matches",
    v.COLOUR: "colour",
    v.GENDER: "gender",
    v.CATEGORY: "category",
    v.MATERIAL: "material",
    v.PERSONAL: "your history",
    v.POPULAR: "best sellers",
    v.NEWEST: "new in",
    v.CODE: "product code",
}

#: what the shopper did, as "because you … “title”" says it
DID = {"view": "viewed", "click": "viewed", "cart": "added to your cart", "purchase": "bought"}


@dataclass(frozen=True)
class Reason:
    """One segment of a result's "why" bar."""

    signal: str
    label: str
    share: float
    sentence: str


def reasons(
    explanation: Mapping[str, float],
    *,
    query_text: str | None = None,
    title: str = "",
    colour: str = "",
    category: str = "",
    because: Mapping[str, str] | None = None,
) -> list[Reason]:
    """The segments of a result's bar, largest share first; signals with no share are left out.

    Args:
        explanation: signal -> share of the score (``SearchHit.explanation``).
        query_text: the shopper's words (to say which of them the result's name matches).
        title, colour, category: what the result shows (``adapter.to_result``).
        because: the recent product personal re-ranking moved it up for (``SearchHit.personal["because"]``:
            ``kind`` and ``title``), said as "because you viewed “…”".
    """
    found = [
        Reason(
            name, LEGEND.get(name, name), float(share), _sentence(name, query_text, title, colour, category, because)
        )
        for name, share in explanation.items()
        if share > 0
    ]
    return sorted(found, key=lambda reason: -reason.share)


def _sentence(
    name: str, query_text: str | None, title: str, colour: str, category: str, because: Mapping[str, str] | None
) -> str:
    if name == v.PERSONAL and because and because.get("title"):
        return f"because you {DID.get(str(because.get('kind')), 'viewed')} “{because['title']}”"
    if name in (v.LEXICAL, v.TITLE):
        matched = _matched_words(query_text, title)
        if matched:
            return "matches " + ", ".join(f"“{word}”" for word in matched) + " in the name"
        return "its name is close to your words" if name == v.TITLE else "shares words with your search"
    if name == v.COLOUR and colour:
        return f"colour: {colour.lower()}"
    if name == v.CATEGORY and category:
        return f"category: {category.split('>')[-1].strip().lower()}"
    return {
        v.TEXT: "its description fits your words",
        v.IMAGE: "its photos fit your words",
        v.VISUAL: "looks like your photo",
        v.FUSED: "close to your search overall",
        v.NEIGHBOURS: "looks like the best matches",
        v.COLOUR: "in the colour you asked for",
        v.GENDER: "for the gender you named",
        v.CATEGORY: "in the category you named",
        v.MATERIAL: "of the material you named",
        v.PERSONAL: "like things you looked at before",
        v.POPULAR: "popular with shoppers lately",
        v.NEWEST: "new in the shop",
        v.CODE: "its product code is your search",
    }.get(name, name)


def _matched_words(query_text: str | None, title: str) -> list[str]:
    """The query's words whose stem is in the title, in query order, each once."""
    in_title = set(words.stems(title))
    matched: list[str] = []
    for word in words.words(query_text or ""):
        if words.stem(word) in in_title and word not in matched:
            matched.append(word)
    return matched
