"""Catalogue-aware query expansion: the catalogue's own words for what a shopper typed, found in WordNet.

A shop that sells "cushions" never says "throw pillow"; the built-in synonym list
(``ranking.synonyms``) covers apparel and fitness words, not every trade. This module expands
from a general resource instead, and lets the catalogue decide what is worth adding:

1. The query's nouns and noun phrases are found in WordNet (:mod:`ranking.wordnet`), longest
   phrase first ("black throw pillow" -> "throw pillow"). Colour and gender words, stop words and
   short words are left alone (other signals read them), and so are phrases the shopper synonym
   list expands (the search service passes their words as ``covered``).
2. A phrase the catalogue already uses needs nothing: expansion only dilutes a query that matches.
   A phrase is *missing* when no product's text has it and at least one of its words is in no
   product's text.
3. For each missing phrase the candidates are the lemmas of its senses (synonyms), of their direct
   hypernyms ("throw pillow" is a kind of "cushion") and direct hyponyms ("cushion" -> "pillow"),
   from its three most frequent senses that name goods (WordNet's artifact, food, substance,
   plant, animal and natural-object classes: "quarter" the fraction is not one). A candidate is
   kept only when the catalogue uses it, with a weight of
   ``relation x sense x evidence x specificity``:

   * relation: synonym 1.0, hypernym 0.8, hyponym 0.6; sense: 1.0, 0.8, 0.6 by rank among the goods
     senses, and when the word's commonest sense in WordNet's sense-tagged corpus is not goods, times
     how often the corpus uses it in that sense against that commonest one, both plus one
     (:func:`wordnet.tag_counts`: "kids" are children in 53 uses and the leather in none, so "kids"
     is not read as "leather"; "mouse", the animal 14 times and the computer's never, keeps both);
   * evidence: how many products use the term, ``min(1, log(1 + n) / log(1 + FULL_EVIDENCE))``
     (one product might be a passing word in a description; three name a kind the shop sells);
   * specificity: 1 up to ``max_share`` of the catalogue, then falling to 0 as the term covers
     every product (a hypernym like "seat" that matches most of a furniture shop ranks nothing).

   A synonym is a candidate only when the sense is its own commonest goods sense: a shop that says
   "lid" means a cover, though WordNet lists "lid" as slang for a hat ("hat" found the Luma catalogue's
   water bottle by its lid). Senses that name no goods do not count: "pant" is first a breath, and a
   shop's "pant" is a trouser.

   When the catalogue uses a synonym, only synonyms are kept ("couch" -> "sofa", not also "seat");
   of the rest, the best ``max_terms`` per phrase at or above ``min_weight`` are added.

Counting is the caller's: ``count_terms(terms, cap)`` returns how many products use each term
(the search service asks the store's full-text index; see ``services.query``). Nothing here reads a
database, so the rules are tested on plain dictionaries.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise

from multimodal_search.ranking import colour, wordnet
from multimodal_search.ranking.text import GENDER_WORDS, stem, words

SYNONYM = "synonym"
HYPERNYM = "hypernym"
HYPONYM = "hyponym"
RELATION_WEIGHTS = {SYNONYM: 1.0, HYPERNYM: 0.8, HYPONYM: 0.6}
#: weights of a word's most frequent WordNet senses that name goods (later senses are not used)
SENSE_WEIGHTS = (1.0, 0.8, 0.6)
#: products using a term for full evidence that the shop names a kind with it
FULL_EVIDENCE = 3
MAX_PHRASE_WORDS = 3
MIN_WORD_LENGTH = 3
#: candidates counted per missing phrase, best relation first (bounds the counting query)
MAX_CANDIDATES = 40
#: PostgreSQL's English stop words that WordNet also lists as nouns, and other words that name no product
STOP_WORDS = frozenset(
    """all also and any are but can did does doing don few for from had has have her here him his how
    its just more most nor not now off once only other our out own same she should some such than
    that the their them then there these they this those too very was were what when where which
    while who whom why will with you your size new best""".split()  # noqa: SIM905 (a list would take 70 lines)
)
_SKIP = STOP_WORDS | {word for names in GENDER_WORDS.values() for word in names}

#: ``count_terms(terms, cap)``: how many products use each term, up to ``cap`` ({"cushion": 12});
#: terms no product uses may be left out
CountTerms = Callable[[Sequence[str], int], Mapping[str, int]]


@dataclass(frozen=True)
class Expansion:
    """A term added to a query.

    Attributes:
        phrase: the query's words the catalogue does not use ("throw pillow").
        term: the catalogue's word for them ("cushion").
        relation: how WordNet relates them (``SYNONYM``, ``HYPERNYM``, ``HYPONYM``).
        weight: relation x sense x evidence x specificity, in (0, 1].
        products: products that use the term (as counted, possibly capped).
    """

    phrase: str
    term: str
    relation: str
    weight: float
    products: int


def _expandable(word: str) -> bool:
    return len(word) >= MIN_WORD_LENGTH and word.isalpha() and word not in _SKIP and not colour.colours_in_text(word)


def phrases(text: str) -> list[str]:
    """The query's WordNet nouns and noun phrases, longest first from the left ("black throw pillows" ->
    ["throw pillows"]); colour, gender, stop and short words are not phrases of their own."""
    tokens = words(text)
    found: list[str] = []
    i = 0
    while i < len(tokens):
        for size in range(min(MAX_PHRASE_WORDS, len(tokens) - i), 0, -1):
            part = tokens[i : i + size]
            if size == 1 and not _expandable(part[0]):
                continue
            if size > 1 and not any(_expandable(word) for word in part):
                continue
            phrase = " ".join(part)
            if wordnet.is_noun(phrase):
                found.append(phrase)
                i += size
                break
        else:
            i += 1
    return list(dict.fromkeys(found))


def missing(units: Sequence[str], counts: Mapping[str, int]) -> list[str]:
    """The phrases no product uses, and of which at least one word is in no product's text."""
    return [
        unit
        for unit in units
        if not counts.get(unit, 0) and (len(unit.split()) == 1 or any(not counts.get(w, 0) for w in unit.split()))
    ]


def goods_senses(phrase: str, senses: Sequence[wordnet.Synset]) -> list[wordnet.Synset]:
    """The senses of ``phrase`` that name goods, commonest first, without a later one that WordNet names
    first by a compound in which the word is not the last ("scarf joint", "tank car", "short circuit",
    "kettle hole"): there the word alone is short for the compound, and a shopper who types it means
    the word's own sense ("scarf" found a resistance band through "joint", the hypernym of "scarf joint")."""
    words_of = set(words(phrase)) | {word for form in wordnet.base_forms(phrase) for word in words(form)}
    goods = [sense for sense in senses if sense.lexname in wordnet.GOODS]

    def compound(sense: wordnet.Synset) -> bool:
        name = words(sense.lemmas[0]) if sense.lemmas else []
        return len(name) > 1 and name[-1] not in words_of and bool(set(name) & words_of)

    return goods[:1] + [sense for sense in goods[1:] if not compound(sense)]


def candidates(phrase: str) -> dict[str, tuple[str, float]]:
    """term -> (relation, relation x sense weight): the best link from ``phrase`` to each WordNet neighbour."""
    own = set(wordnet.base_forms(phrase)) | {phrase}
    best: dict[str, tuple[str, float]] = {}
    senses = wordnet.senses(phrase)
    goods = goods_senses(phrase, senses)
    counts = wordnet.tag_counts(phrase)
    commonest = max(senses, key=lambda sense: counts.get(sense.offset, 0), default=None)
    # a word mostly used for what no shop sells ("kids": children) is rarely meant in a rare goods sense
    # (the leather): those senses count as often as the sense-tagged corpus uses them, against the commonest
    uses = counts.get(commonest.offset, 0) if commonest is not None and commonest not in goods else 0
    for sense, weight in zip(goods, SENSE_WEIGHTS):
        if uses:
            weight *= (counts.get(sense.offset, 0) + 1) / (uses + 1)
        related = [(SYNONYM, sense.lemmas)]
        related += [(HYPERNYM, wordnet.synset(o).lemmas) for o in sense.hypernyms]
        related += [(HYPONYM, wordnet.synset(o).lemmas) for o in sense.hyponyms]
        for relation, lemmas in related:
            score = RELATION_WEIGHTS[relation] * weight
            for lemma in lemmas:
                if lemma.replace(" ", "_") in own or lemma in own or not words(lemma):
                    continue
                if relation == SYNONYM and wordnet.first_goods_sense(lemma) != sense.offset:
                    continue  # "lid" is a hat only in slang: a shop that says "lid" means a cover
                if lemma not in best or best[lemma][1] < score:
                    best[lemma] = (relation, score)
    ranked = sorted(best.items(), key=lambda item: (-item[1][1], item[0]))
    return dict(ranked[:MAX_CANDIDATES])


#: hypernym links searched above a one-word phrase for the word it ends with (:func:`broader`)
HEAD_DEPTH = 3


def broader(phrase: str) -> dict[str, tuple[str, float]]:
    """term -> (``HYPERNYM``, hypernym x sense weight): for a one-word phrase that ends with the name of
    something it is a kind of, within ``HEAD_DEPTH`` hypernym links ("sports*wear*" is a kind of attire,
    a kind of clothing, whose lemmas include "wear"), that thing's lemmas. English compounds name a kind
    of their last part, so the word says which of its ancestors it belongs under.

    Used for a phrase none of whose own relatives the catalogue uses: WordNet files "sportswear" and
    "activewear" under "attire", a word no sports shop says, and the demo answered both with "No
    results" though all its clothes are sportswear. A word that does not end with an ancestor's name
    ("hat", a kind of headdress, a kind of clothing) gets nothing from here: a shop without hats
    answers "No results", not with its sweatshirts."""
    if " " in phrase or not wordnet.is_noun(phrase):
        return {}
    own = set(wordnet.base_forms(phrase)) | {phrase}
    forms = [form for form in own if " " not in form and "_" not in form]
    best: dict[str, tuple[str, float]] = {}
    goods = goods_senses(phrase, wordnet.senses(phrase))
    for sense, weight in zip(goods, SENSE_WEIGHTS):
        for offset in wordnet.ancestors(sense.offset, HEAD_DEPTH):
            lemmas = wordnet.synset(offset).lemmas
            if not any(_is_head(lemma, forms) for lemma in lemmas):
                continue
            score = RELATION_WEIGHTS[HYPERNYM] * weight
            for lemma in lemmas:
                if lemma in own or not words(lemma) or best.get(lemma, ("", 0.0))[1] >= score:
                    continue
                best[lemma] = (HYPERNYM, score)
    ranked = sorted(best.items(), key=lambda item: (-item[1][1], item[0]))
    return dict(ranked[:MAX_CANDIDATES])


def _is_head(lemma: str, forms: Sequence[str]) -> bool:
    """Whether one of the word's ``forms`` ends with ``lemma`` and has more before it ("sportswear", "wear")."""
    return (
        len(lemma) >= MIN_WORD_LENGTH
        and lemma.isalpha()
        and any(form.endswith(lemma) and len(form) > len(lemma) for form in forms)
    )


def support(products: int, total: int, max_share: float) -> float:
    """evidence x specificity of a term used by ``products`` of ``total`` products (0 when unused)."""
    if products <= 0:
        return 0.0
    evidence = min(1.0, math.log1p(products) / math.log1p(FULL_EVIDENCE))
    share = products / max(total, products)
    specificity = 1.0 if share <= max_share else max(0.0, (1.0 - share) / (1.0 - max_share))
    return evidence * specificity


def plan(
    text: str,
    count_terms: CountTerms,
    total: Callable[[], int],
    *,
    max_terms: int = 3,
    max_share: float = 0.25,
    min_weight: float = 0.1,
    count_cap: int = 1000,
    covered: Collection[str] = (),
    general: Collection[str] = (),
) -> list[Expansion]:
    """The catalogue's terms for the query's phrases it does not use, best first per phrase: its
    synonyms, direct hypernyms and hyponyms (:func:`candidates`), and for a phrase none of whose
    relatives the catalogue uses, the ancestor its word ends with (:func:`broader`).

    Args:
        text: the shopper's words.
        count_terms: products using each term, up to a cap (called at most three times: whether the
            query's phrases and words are used at all, cap 1, then the candidates of the missing ones,
            then the broader candidates of those that found none).
        total: products in the catalogue (called only when something is missing).
        max_terms: most terms added per missing phrase.
        max_share: share of the catalogue a term may cover before it counts as too general.
        min_weight: weakest expansion kept.
        count_cap: most products counted per candidate (a larger count is taken as this many).
        covered: words another expansion already handles (those of the shopper synonym list's phrases
            the query names): a phrase with any of them is not expanded.
        general: the catalogue's words for several departments at once ("clothing", "apparel", "garment":
            ``ranking.departments``' classes). They are not a phrase's synonym, hypernym or hyponym here: a
            kind the shop does not sell is not answered by all of its clothes ("red dress" found Luma's
            hoodies through "apparel", as WordNet also files "dress" under clothing in general, and "jumpsuit",
            "swimsuit" and "scarf" through "garment"). A word that ends with one of them still gets it
            (:func:`broader`: "sportswear", "activewear": clothing).
    """
    units = [unit for unit in phrases(text) if not set(unit.split()) & set(covered)]
    if not units:
        return []
    asked = list(dict.fromkeys(units + [w for unit in units if " " in unit for w in unit.split()]))
    gaps = missing(units, count_terms(asked, 1))
    if not gaps:
        return []
    wide = {term.lower() for term in general}
    options = {gap: {term: link for term, link in candidates(gap).items() if term.lower() not in wide} for gap in gaps}
    terms = list(dict.fromkeys(term for found in options.values() for term in found))
    counts = count_terms(terms, count_cap) if terms else {}
    size = total() if counts else 0
    present = set(words(text))

    def keep(gap: str, found: Mapping[str, tuple[str, float]], counts: Mapping[str, int], size: int) -> list[Expansion]:
        kept = []
        for term, (relation, score) in found.items():
            if set(words(term)) <= present:
                continue
            products = int(counts.get(term, 0))
            weight = score * support(products, size, max_share)
            if weight >= min_weight:
                kept.append(Expansion(gap, term, relation, round(weight, 4), products))
        if any(e.relation == SYNONYM for e in kept):  # the shop's synonym is its word; relatives only widen
            kept = [e for e in kept if e.relation == SYNONYM]
        kept.sort(key=lambda e: (-e.weight, e.term))
        return kept[:max_terms]

    found = {gap: keep(gap, options[gap], counts, size) for gap in gaps}
    wider = {gap: broader(gap) for gap, kept in found.items() if not kept}
    wider = {gap: terms for gap, terms in wider.items() if terms}
    if wider:
        more = list(dict.fromkeys(term for terms in wider.values() for term in terms))
        counts = count_terms(more, count_cap)
        size = size or (total() if counts else 0)
        found.update({gap: keep(gap, terms, counts, size) for gap, terms in wider.items()})
    return [expansion for gap in gaps for expansion in found[gap]]


def unsold(
    typed: str | None, searched: str | None, kinds: Collection[str], called: Callable[[list[str]], set[str]]
) -> list[str]:
    """The words of ``typed`` that name a kind of goods the catalogue has no word for ("dress" in a shop of
    sportswear, "mat" in one whose descriptions say "bring it to your mat"), or [] when it has one.

    A word names goods when WordNet's commonest sense of it, as typed or as a plural, is a thing
    (:func:`wordnet.names_goods`: "dress", "shoes", "mat"; not "yoga", "winter" or "running"). The shop
    has no word for it when nothing is called by it (``called``: of the words given, those a product's
    name or a department uses, :func:`services.query.catalogue_calls`) and no word of ``searched`` (the
    words as searched: the typed ones with their synonyms and the catalogue's expansions) is one of the
    catalogue's ``kinds`` (stems of its titles' head nouns and category leaves' words,
    ``Departments.kinds``): "trousers" is a shop's "pants", and "cashmere hoodie" a hoodie. A kind's word
    that WordNet knows only as an abstraction ("fitness", of the leaf "fitness equipment", which the
    synonym "fitness mat" adds to "yoga mat") names no kind here. Nor is a word unsold when one of the
    ``kinds`` is a kind of it (:func:`_kinds_of`: "shirt" where "tank tops" are sold). Colour, gender, stop
    and short words are not kinds. [] without ``kinds`` (nothing trained yet)."""
    if not typed or not kinds:
        return []
    typed_words = words(typed)
    # what the shopper has is what the product goes with: "something to carry my laptop", "case for your phone"
    owned = {word for before, word in pairwise(typed_words) if before in POSSESSIVES}
    nouns = [
        word
        for word in dict.fromkeys(typed_words)
        if word not in owned and _expandable(word) and wordnet.names_goods(word)
    ]
    catalogue = tuple(sorted(set(kinds)))  # once: a set to look words up in, and the kind-of lookup's key
    known = frozenset(catalogue)
    if not nouns or any(_names_kind(word, known) for word in dict.fromkeys(words(searched or typed))):
        return []
    named = called(nouns)
    return [word for word in nouns if word not in named and not _kinds_of(word, catalogue)]


def unknown(typed: str | None, known: Collection[str]) -> list[str]:
    """The words of ``typed`` no dictionary has: WordNet knows them as no part of speech
    (:func:`wordnet.is_word`), nor as two words run together ("tshirt": "t-shirt"), and ``known`` (the
    synonym lists' words: "hoodie") lacks them. A brand ("adidas"), a word newer than WordNet
    ("kettlebell") or a typo no catalogue word is near. Colour, gender, stop and short words are none."""
    return [
        word
        for word in dict.fromkeys(words(typed or ""))
        if _expandable(word) and word not in known and not wordnet.is_word(word) and not _run_together(word)
    ]


def _run_together(word: str) -> bool:
    """Whether a word is two words WordNet has as one noun, run together ("tshirt": "t-shirt", "tee shirt";
    "tshirts" their plural). Words longer than ``MAX_RUN_TOGETHER`` letters are none (each split is a read)."""
    if len(word) > MAX_RUN_TOGETHER:
        return False
    return any(wordnet.is_noun(f"{word[:i]}{joint}{word[i:]}") for i in range(1, len(word) - 1) for joint in ("-", " "))


#: the longest word read as two run together
MAX_RUN_TOGETHER = 24


#: words before what a shopper has, not what they ask for ("my laptop")
POSSESSIVES = frozenset({"my", "your", "our", "his", "her", "their"})


def _names_kind(word: str, kinds: Collection[str]) -> bool:
    """Whether a searched word is one of the catalogue's ``kinds``, in a sense that can be a thing."""
    return stem(word) in kinds and not wordnet.only_abstract(word)


#: how far up WordNet's hypernyms a kind the catalogue sells may be a kind of a word ("tee shirt" -> shirt: 1;
#: "jacket" -> coat -> overgarment -> garment: 3)
KIND_OF_DEPTH = 3


@lru_cache(maxsize=4096)
def _kinds_of(word: str, kinds: tuple[str, ...]) -> bool:
    """Whether one of the catalogue's ``kinds`` is a kind of ``word`` in one of its goods senses (a tee is a
    shirt: "shirt" in a shop of tees is no unsold kind, though no title says "shirt")."""
    senses = {sense.offset for sense in wordnet.senses(word) if sense.lexname in wordnet.GOODS}
    if senses & _kind_senses(kinds):
        return True
    # or one of its own kinds' or synonyms' head noun is one ("shirt" -> "tank top": a top)
    narrower = [term for term, (relation, _) in candidates(word).items() if relation != HYPERNYM]
    return any(stem(words(term)[-1]) in kinds for term in narrower if words(term))


@lru_cache(maxsize=8)
def _kind_senses(kinds: tuple[str, ...]) -> frozenset[int]:
    """The goods senses of the catalogue's kinds, each of them, and their hypernyms up to :data:`KIND_OF_DEPTH`."""
    found: set[int] = set()
    for kind in kinds:
        for sense in wordnet.senses(kind):
            if sense.lexname in wordnet.GOODS:  # every one: a shop's "tee" is a tee shirt, WordNet's first a golf tee
                found |= {sense.offset} | wordnet.ancestors(sense.offset, KIND_OF_DEPTH)
    return frozenset(found)


def expanded_text(text: str, expansions: Sequence[Expansion]) -> str:
    """``text`` followed by the expansions' terms not already in it (what keyword search ORs)."""
    return with_phrases(text, [e.term for e in expansions])


def with_phrases(text: str, phrases: Sequence[str]) -> str:
    """``text`` followed by each of ``phrases`` whose words it does not all have yet, once."""
    present = set(words(text))
    extra = [phrase for phrase in phrases if not set(words(phrase)) <= present]
    return f"{text} {' '.join(dict.fromkeys(extra))}" if extra else text


def variant(text: str, expansion: Expansion) -> str:
    """``text`` with the expansion's phrase replaced by its term ("black throw pillow" -> "black cushion")."""
    pattern = r"\b" + r"\W+".join(re.escape(word) for word in expansion.phrase.split()) + r"\b"
    replaced, count = re.subn(pattern, expansion.term, text, count=1, flags=re.IGNORECASE)
    return replaced if count else f"{text} {expansion.term}"
