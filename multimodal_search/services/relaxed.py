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
from multimodal_search.services.browse import browse_products
from multimodal_search.services.search import MinRelevance, SearchHit

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

    Tried, longest first: the words with one left out, then each word alone (at most ``MAX_TRIES``
    searches). A one-word query has no shorter form, and a form whose words name a kind of goods no
    product is called by (``query["unsold"]``) is left out: what it finds is never the thing named.
    """
    terms = words.words(text or "")
    if len(terms) < 2:
        return []
    forms = [" ".join(terms[:i] + terms[i + 1 :]) for i in range(len(terms))] if len(terms) > 2 else []
    forms += [term for term in terms if len(term) > 2]
    found: list[Relaxed] = []
    for form in list(dict.fromkeys(forms))[:MAX_TRIES]:
        page = browse_products(form, page_size=SHOWN, min_relevance=min_relevance)
        if page.hits and not page.query.get("unsold"):
            found.append(Relaxed(form, page.total, page.hits))
    found.sort(key=lambda relaxed: (-len(relaxed.text.split()), -relaxed.count))
    return found[:limit]
