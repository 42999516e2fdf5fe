"""A helpful "no match": shorter forms of a query that does find something.

When nothing passes the storefront's relevance cut ("ceramic coffee mug" in a clothes shop, "red
waterproof hiking sandals" where there are no sandals), the page offers the query with one word
left out, then single words, each with how many results it would show and its first few, instead
of a full page of unrelated items. Each form is searched as the search page searches it (one result
per product group), so the counts are what the link will show: "running (23 results)" showed the
Erika Running Short three times, in three colours, and its link's page said 9 results. A form that
names a kind the shop has no word for is not offered: "running shoes" on Luma offered "shoes (2
results)", a tote bag and a yoga bag, which the page itself calls only similar items ("Nothing here
is called “shoes”").
"""

from __future__ import annotations

from dataclasses import dataclass, field

from multimodal_search.ranking import text as words
from multimodal_search.ranking.expansion import STOP_WORDS
from multimodal_search.ranking.intent import parse_exclusions
from multimodal_search.services.browse import browse_products
from multimodal_search.services.search import NOT_NAMING, MinRelevance, SearchHit

#: words that name nothing a product is or has, left out of every shorter form: stop words but those
#: that say something ("not", "size", "new"), and a shopper's "something", "looking for", "please"
FILLER = (
    (NOT_NAMING - {"not", "nor", "off", "size", "new", "best"})
    | {"at", "by", "im", "we", "it"}
    | {"something", "anything", "thing", "things", "stuff", "looking", "want", "need", "please", "show", "find", "get"}
)
#: forms tried at most (each is one search)
MAX_TRIES = 6
#: results shown of each form (its count is that of its link's page: one per product group, after the cut)
SHOWN = 4


@dataclass
class Relaxed:
    """A shorter form of the query, the number of results it shows, and its first results."""

    text: str
    count: int
    hits: list[SearchHit] = field(default_factory=list)


def relaxed_queries(text: str | None, *, min_relevance: MinRelevance, limit: int = 3) -> list[Relaxed]:
    """Up to ``limit`` shorter forms of ``text`` that find results above ``min_relevance``, most results first.

    Tried, longest first: the words that name something (``FILLER`` left out, where the query has
    some), the words with one left out, then each word alone (at most ``MAX_TRIES`` searches). A form
    is never filler alone, nor holds any: "something warm for winter" offered "something warm for" and
    "something". What the words leave out ("not black", ``intent.parse_exclusions``) stays in every
    form, whole: leaving out its "not" searched "hoodie black xyzzy" for "hoodie not black xyzzy". A one-word
    query has no shorter form, and a form whose words name a kind of goods no product is called by, or a
    word no product and no dictionary has (``query["unsold"]``: "dress", "adidas"), is left out: what it
    finds is never the thing named.
    """
    excluded = parse_exclusions(text or "")
    rest, left_out = (excluded.text, " ".join(excluded.phrases)) if excluded else (text or "", "")
    typed = words.words(rest)
    terms = [term for term in typed if term not in FILLER]
    if len(typed) < 2 or not terms:
        return []
    forms = [" ".join(terms)] if terms != typed else []
    forms += [" ".join(terms[:i] + terms[i + 1 :]) for i in range(len(terms))] if len(terms) > 2 else []
    forms += [term for term in terms if len(term) > 2 and not term.isdigit() and term not in STOP_WORDS]
    forms = [f"{form} {left_out}".strip() for form in forms]
    found: list[Relaxed] = []
    for form in list(dict.fromkeys(forms))[:MAX_TRIES]:
        page = browse_products(form, page_size=SHOWN, min_relevance=min_relevance)
        if page.hits and not page.query.get("unsold"):
            found.append(Relaxed(form, page.total, page.hits))
    found.sort(key=lambda relaxed: (-len(relaxed.text.split()), -relaxed.count))
    return found[:limit]
