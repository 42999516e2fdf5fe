"""What a shopper's words ask for beyond their meaning: a price, an order, a size, or facets alone.

Pure: :func:`parse_price` takes the query text and returns the price range it names, the order
its words ask for ("cheap", "most expensive", "newest", "best sellers") and the text without those phrases (what the
encoders see). Ranges are half-open, ``minimum <= price < maximum``, so that "under 50" leaves out
an item at 50.00 and the storefront's ranges do not overlap.
:func:`facets_only` tells a query that names only a colour, a gender, a department and/or a quality
("red", "women's black", "tops", "wool"): every product of that colour, gender or department, or
stating that quality, answers it, so its relevance is calibrated on its own
(``ranking.calibration.BROAD``).
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from multimodal_search.ranking import wordnet
from multimodal_search.ranking.colour import colours_in_text
from multimodal_search.ranking.departments import names_stems
from multimodal_search.ranking.text import RECIPIENTS, normal_gender, stem, words

#: a currency after a number: a sign, or a word whole ("50 euros" left "os" when "eur" was the word)
_CURRENCY = r"(?:\$|€|£|(?:dollars?|bucks?|usd|euros?|eur|pounds?|gbp)(?![a-z]))"
_NUMBER = rf"\$?\s*(\d{{1,7}}(?:\.\d{{1,2}})?)\s*{_CURRENCY}?"
_UNDER = r"under|below|less\s+than|cheaper\s+than|up\s+to|max(?:imum)?|<"
_OVER = r"over|above|more\s+than|at\s+least|min(?:imum)?|from|>"
_AROUND = r"around|about|approx(?:imately|\.)?|roughly|circa|~"
#: what a number is a count or a measure of ("2-3 days", "about 3 pockets", "30-40 cm", "10-12 years"): no price
_UNIT = (
    r"(?:l|g|m|cm|mm|ml|kg|oz|lbs?|inch(?:es)?|ft|feet|foot|years?|yrs?|days?|weeks?|months?|hours?|mins?|"
    r"minutes?|pcs|pieces?|packs?|pairs?|pockets?|items?|litres?|liters?|percent)(?![a-z])"
)
#: "around 50": this share either side of the number (40 to 60)
AROUND_SHARE = Decimal("0.2")
_PATTERNS = [
    ("range", re.compile(rf"\b(?:between|from)\s+{_NUMBER}\s+(?:and|to|-)\s+{_NUMBER}", re.IGNORECASE)),
    ("range", re.compile(rf"(?<![\w.])\$\s*(\d{{1,7}}(?:\.\d{{1,2}})?)\s*(?:-|–|to)\s*{_NUMBER}", re.IGNORECASE)),
    ("range", re.compile(r"(?<![\w.])(\d{1,7}(?:\.\d{1,2})?)\s*(?:-|–)\s*\$\s*(\d{1,7}(?:\.\d{1,2})?)")),
    # "30-50", "30 - 50 euros": two bare numbers with no unit after but a currency, nor a size or a count
    # before them ("size 28-30", "pack of 2-3": ``_NOT_PRICED``)
    (
        "bare range",
        re.compile(
            rf"(?<![\w.$-])(\d{{1,7}}(?:\.\d{{1,2}})?)\s*(?:-|–)\s*(\d{{1,7}}(?:\.\d{{1,2}})?)(?![\w.-])"
            rf"(?:\s*{_CURRENCY})?(?!\s*(?:[%\"']|{_UNIT}))",
            re.IGNORECASE,
        ),
    ),
    ("under", re.compile(rf"(?:\b|(?<=\s)|^)(?:{_UNDER})\s*{_NUMBER}", re.IGNORECASE)),
    ("over", re.compile(rf"(?:\b|(?<=\s)|^)(?:{_OVER})\s*{_NUMBER}", re.IGNORECASE)),
    ("around", re.compile(rf"(?:\b|(?<=\s)|^)(?:{_AROUND})\s*{_NUMBER}(?![\w.])(?!\s*{_UNIT})", re.IGNORECASE)),
]
#: the word before two bare numbers that makes them no price ("size 28-30", "pack of 2-3", "ages 4-6")
_NOT_PRICED = re.compile(r"\b(?:size|sizes|sz|of|pack|ages?|aged)\s*[:#]?\s*$", re.IGNORECASE)
PRICE_ASC, PRICE_DESC, NEWEST, BEST_SELLING = "price_asc", "price_desc", "newest", "best_selling"
#: words that ask for an order rather than describe the product ("cheap wool", "latest hoodies"); the
#: low prices are tried first, so that "less expensive" and "inexpensive" ask for low prices
_ORDERS = [
    (
        PRICE_ASC,
        re.compile(
            r"\b(?:(?:the\s+)?cheap(?:er|est)?|inexpensive|affordable|budget|bargains?|"
            r"low[\s-]+(?:cost|priced?)|(?:less|least|not)\s+expensive)\b",
            re.IGNORECASE,
        ),
    ),
    (
        PRICE_DESC,
        re.compile(
            r"\b(?:(?:the\s+)?most\s+expensive|more\s+expensive|expensive|pricey|pricier|priciest|dearer|"
            r"higher[\s-]+priced)\b",
            re.IGNORECASE,
        ),
    ),
    # words that ask for the products shoppers buy most first ("best selling hoodies", "most popular bag")
    (
        BEST_SELLING,
        re.compile(
            r"\b(?:(?:the\s+)?best[\s-]*sell(?:ers?|ing)|top[\s-]*sell(?:ers?|ing)|(?:the\s+)?most\s+popular|trending)\b",
            re.IGNORECASE,
        ),
    ),
    # words that ask for the newest products first ("new arrivals", "latest hoodies"); "new" alone does not
    (
        NEWEST,
        re.compile(r"\b(?:(?:the\s+)?(?:newest|latest)|new\s+(?:arrivals?|in|releases?)|just\s+in)\b", re.IGNORECASE),
    ),
]


#: words that ask for a gift: the shop's best sellers for whoever it is for ("gift for him", "gift ideas");
#: "gift card", "gift set", "gift wrap" are products
_GIFT = re.compile(
    r"\b(?:gifts?|presents?)(?!\s+(?:cards?|certificates?|vouchers?|wrap\w*|box(?:es)?|sets?|bags?|tags?)\b)"
    r"(?:\s+ideas?)?(?:\s+(?:for|to)(?:\s+(?:my|a|an|the|your))?(?:\s+(?P<who>[a-z]+))?)?\b",
    re.IGNORECASE,
)


def _without_gift(text: str) -> tuple[str, bool]:
    """The text without a gift phrase, its recipient read as a gender ("gift for him" -> "men") or as what
    they do ("present for a runner" -> "running", ``wordnet.activity``), and whether there was one."""
    match = _GIFT.search(text)
    if match is None:
        return text, False
    who = (match.group("who") or "").lower()
    # a gender ("him": men), what the recipient does ("runner": running, as shops name an activity), or as typed
    kept = RECIPIENTS.get(who) or (wordnet.activity(who) if who else None) or who
    return " ".join((text[: match.start()] + " " + kept + " " + text[match.end() :]).split()), True


@dataclass(frozen=True)
class PriceIntent:
    """The text without the price and order phrases, the range they named (None: open on that side) and the
    order they asked for (``PRICE_ASC``, ``PRICE_DESC``, ``NEWEST``, ``BEST_SELLING`` or None)."""

    text: str
    minimum: Decimal | None = None
    maximum: Decimal | None = None
    order: str | None = None

    @property
    def found(self) -> bool:
        return self.minimum is not None or self.maximum is not None

    @property
    def worded(self) -> bool:
        """Whether the words named a price or an order (the text searched is then ``text``)."""
        return self.found or self.order is not None


def parse_price(text: str) -> PriceIntent:
    """The first price phrase and the first order word ("cheap", "newest") in ``text``, and the text without
    them. A gift phrase ("gift for him", "gift ideas", "present for a runner") asks for the best sellers
    unless another order is named, and its recipient is searched as a gender ("men"), as what they do
    ("running") or as typed (:func:`_without_gift`).

    Args:
        text: the shopper's words, e.g. "cheap jacket under 50".

    Returns:
        ``PriceIntent("jacket", None, Decimal("50"), "price_asc")``; the text unchanged, no bounds
        and no order when it names no price. "between 40 and 20" is read as 20 to 40.
    """
    text, gift = _without_gift(text)
    bounds = _parse_bounds(text)
    for order, pattern in _ORDERS:
        match = pattern.search(bounds.text)
        if match is not None:
            rest = " ".join((bounds.text[: match.start()] + " " + bounds.text[match.end() :]).split())
            return PriceIntent(rest, bounds.minimum, bounds.maximum, order)
    # a gift: the best sellers of what the rest asks for ("gifts", "gift for him", "a present under 30")
    return PriceIntent(bounds.text, bounds.minimum, bounds.maximum, BEST_SELLING) if gift else bounds


def _parse_bounds(text: str) -> PriceIntent:
    for kind, pattern in _PATTERNS:
        match = pattern.search(text)
        if match is None:
            continue
        numbers = [_decimal(group) for group in match.groups() if group is not None]
        if any(number is None for number in numbers):
            continue
        if kind == "bare range" and _NOT_PRICED.search(text[: match.start()]):
            continue
        rest = " ".join((text[: match.start()] + " " + text[match.end() :]).split())
        if kind == "under":
            return PriceIntent(rest, None, numbers[0])
        if kind == "over":
            return PriceIntent(rest, numbers[0], None)
        about = numbers[0]
        if kind == "around" and about is not None:  # "around 50": 40 to 60, whole units
            spread = about * AROUND_SHARE
            return PriceIntent(rest, (about - spread).quantize(Decimal(1)), (about + spread).quantize(Decimal(1)))
        low, high = sorted(number for number in numbers if number is not None)
        if kind == "bare range" and low == high:
            continue
        return PriceIntent(rest, low, high)
    return PriceIntent(text)


def _decimal(value: str) -> Decimal | None:
    try:
        return Decimal(value)
    except InvalidOperation:
        return None


#: "size 32", "in size M", "sz xl", "size: 10.5", "size medium": the size a shopper wants (its value the
#: group). The value must look like a size (a number, S/M/L with X's, a size word), so that "plus size tee"
#: keeps its "tee"
_SIZE = re.compile(
    r"\b(?:in\s+)?(?:size|sz)\s*[:#]?\s*"
    r"((?:extra|x)[\s-]*(?:large|small)|small|medium|large|\d{1,3}(?:\.\d)?|[2-6]?x{0,4}[sml])(?![\w.])",
    re.IGNORECASE,
)
#: "hoodie xl", "xs leggings", "tee in xxl": the letter sizes no word of a description spells, sizes without "size"
_BARE_SIZE = re.compile(r"(?:\bin\s+)?(?<![\w./-])(xxs|xs|x{1,3}l|[2-6]xl)(?![\w./-])", re.IGNORECASE)
#: the forms of one size a shopper types or a catalogue states (compared lower case, without spaces or hyphens)
_SIZE_WORDS = (
    ("s", "small", "sm"),
    ("m", "medium", "med", "md"),
    ("l", "large", "lg"),
    ("xl", "extra large", "x large"),
    ("xs", "extra small", "x small"),
)


def _squeezed(value: str) -> str:
    return "".join(value.lower().split()).replace("-", "")


_SIZE_FORMS = tuple(frozenset(_squeezed(form) for form in group) for group in _SIZE_WORDS)


@dataclass(frozen=True)
class SizeIntent:
    """The text without its size phrases, and the sizes as typed ("m", "32", "extra large")."""

    text: str
    sizes: tuple[str, ...]
    #: of ``sizes``, those read without "size" from words a description may also use ("large mens tee",
    #: "shorts 32"), and the kinds they size (stems: "tee"), in the same order
    loose: tuple[str, ...] = ()
    loose_kinds: tuple[str, ...] = ()

    def values_in(self, values: Iterable[str]) -> list[str]:
        """Which of a catalogue's size values (a search's ``size`` facet values) the typed sizes name, in
        the order typed: the same letters whatever their case ("m" -> "M"), or a form of the same word
        ("medium" -> "M", "m" -> "Medium"); a size none of them is named by is left out."""
        by_form = {_squeezed(str(value)): str(value) for value in values}
        found: list[str] = []
        for size in self.sizes:
            typed = _squeezed(size)
            forms = next((group for group in _SIZE_FORMS if typed in group), (typed,))
            value = next((by_form[form] for form in sorted(forms) if form in by_form), None)
            if value is not None and value not in found:
                found.append(value)
        return found

    def text_without(self, value: str) -> str:
        """The words with the size phrases of every other size than the catalogue's ``value`` (what
        unticking that value searches): "tee size m or size l" without "M" -> "tee or size l"."""
        kept = [size for size in self.sizes if not SizeIntent(self.text, (size,)).values_in([value])]
        return " ".join([self.text, *(f"size {size}" for size in kept)]).strip()


def parse_size(text: str, kinds: Collection[str] = ()) -> SizeIntent | None:
    """The size phrases in ``text`` ("black leggings size m" -> ``SizeIntent("black leggings", ("m",))``;
    "tee size m size l" -> both); None when it names none. "size" or "sz" before the value makes it a
    size ("32" alone or "m" alone is not one), except for the letter sizes XS, XL and their X's
    ("hoodie xl", "2xl tee"), which no word of a description spells.

    With the catalogue's ``kinds`` (stems of what its products are called: ``Departments.kinds``), a
    size word beside one of them is a size too, ``loose`` (:func:`_loose_sizes`): "large mens tee",
    "hoodie medium", "mens shorts 32"; not "medium support bra" or "bottle 32 oz"."""
    sizes = [" ".join(match.group(1).split()) for match in _SIZE.finditer(text)]
    rest = " ".join(_BARE_SIZE.sub(" ", _SIZE.sub(" ", text)).split())
    sizes += [match.group(1) for match in _BARE_SIZE.finditer(_SIZE.sub(" ", text))]
    loose = _loose_sizes(rest, kinds) if kinds else []
    if not sizes and not loose:
        return None
    # the sizes' words go, with "and" / "or" between two of them ("shorts 32 and 34" -> "shorts")
    cuts: list[list[int]] = []
    for match, _ in loose:
        if cuts and _JOINED.fullmatch(rest, cuts[-1][1], match.start()):
            cuts[-1][1] = match.end()
        else:
            cuts.append([match.start(), match.end()])
    without = rest
    for start, end in reversed(cuts):
        without = without[:start] + " " + without[end:]
    found = tuple(" ".join(match.group(1).lower().split()) for match, _ in loose)
    return SizeIntent(" ".join(without.split()), (*sizes, *found), found, tuple(kind for _, kind in loose))


#: size words a description may also use ("large pockets", "medium support") and two-digit sizes (of
#: trousers, shorts): sizes only beside a kind of product (:func:`_loose_sizes`)
_LOOSE_SIZE = re.compile(
    r"(?<![\w'./$#-])(?:in\s+(?:an?\s+)?|an?\s+)?((?:extra|x)[\s-]?(?:large|small)|small|medium|large|\d{2})(?![\w'./%-])",
    re.IGNORECASE,
)
#: words that start what the words leave out (``parse_exclusions``), a price or an order (``parse_price``)
_ENDS_DESCRIPTION = frozenset(
    {"not", "no", "non", "without", "except", "excluding", "minus", "isn", "aren"}
    | {"under", "below", "over", "above", "between", "from", "less", "more", "around", "about", "max", "up"}
    | {"cheap", "cheapest", "cheaper", "newest", "latest", "best", "sorted"}
)
#: the words that stand for a query photo's kind, sized as a kind is ("this in large", "a large one")
PHOTO_KINDS = frozenset({"this", "it", "one", "these", "ones"})
#: a word, as ``text.words`` reads them
_TOKEN = re.compile(r"[a-z0-9]+", re.IGNORECASE)
#: words that may stand between a size word and the kind it sizes ("large mens black tee", "men's")
_BETWEEN = frozenset({"s", "a", "in", "the", "but", "please"})


def _loose_sizes(text: str, kinds: Collection[str]) -> list[tuple[re.Match[str], str]]:
    """The size words of ``text`` that size one of the ``kinds`` (stems), with that kind: before it, genders and colours
    between ("large mens tee", "medium black hoodie"; a number never: "32 oz bottle"), or after it with
    nothing after them but genders and colours ("hoodie medium", "hoodie in large", "mens shorts 32",
    "tee large black"). Several sizes side by side size the same kind ("mens shorts 32 and 34", "pants 30
    32", "small or medium tee"). With a photo, ``PHOTO_KINDS`` stand for the kind it shows ("this in large")."""

    def describing(word: str) -> bool:
        return word in _BETWEEN or normal_gender(word) is not None or bool(colours_in_text(word))

    # the words once, with where each starts: a long text is read once, not once per size word in it
    spans = [(token.start(), token.group(0).lower()) for token in _TOKEN.finditer(text)]
    starts = [start for start, _ in spans]
    said = [word for _, word in spans]
    # past each word, the first that is no size, no "and"/"or" between sizes and (after a size) nothing
    # that describes: each list made in one pass, so that a long run of size words is read once
    after, before = _first_past(said, describing, _ENDS_DESCRIPTION), _first_past(said[::-1], _BETWEEN.__contains__)
    found = []
    for match in _LOOSE_SIZE.finditer(text):
        first_after, first_in = bisect_left(starts, match.end()), bisect_left(starts, match.start())
        # what the words leave out, a price or an order ends what they describe: "hoodie large not black",
        # "shorts 32 under 50" (the search page reads the words with their price words, browse without)
        index = after[first_after] if first_after < len(said) else None
        nearest = said[index] if index is not None else None
        # the kind it sizes: the word it stands before (a size word, not a number), else the one it follows
        kind = _kind_word(nearest) if nearest is not None and not match.group(1).isdigit() else None
        # "hoodie large", "hoodie in large", "like this but large"
        back = before[len(said) - first_in] if first_in > 0 else None
        last = said[len(said) - 1 - back] if back is not None else None
        kind = kind if nearest is not None else (_kind_word(last) if last is not None else None)
        if kind is not None and kind in kinds:
            found.append((match, kind))
    return found


#: words that join sizes ("32 and 34", "small or medium"), and what stands between two joined sizes
_JOINS = frozenset({"and", "or"})
_JOINED = re.compile(r"[\s,&/]*(?:(?:and|or)\b)?[\s,&/]*", re.IGNORECASE)
#: the words of the loose sizes ("extra large" is two)
_SIZE_TOKENS = frozenset({"small", "medium", "large", "extra", "x", "xs", "xl", "xxl", "xxs"})


def _a_size_word(word: str) -> bool:
    return word in _SIZE_TOKENS or (len(word) == 2 and word.isdigit())


def _first_past(said: list[str], passed: Callable[[str], bool], ends: Collection[str] = ()) -> list[int | None]:
    """For each word of ``said``, the index of the first word from it on that is neither ``passed``, nor a
    size word, nor "and"/"or" before a size word; None where one of ``ends`` or the end comes first."""
    first: list[int | None] = [None] * (len(said) + 1)
    for index in range(len(said) - 1, -1, -1):
        word = said[index]
        if word in ends:
            first[index] = None
        elif (
            passed(word)
            or _a_size_word(word)
            or (word in _JOINS and index + 1 < len(said) and _a_size_word(said[index + 1]))
        ):
            first[index] = first[index + 1]
        else:
            first[index] = index
    return first


def _kind_word(word: str) -> str:
    """A word as it may name a kind: a word for the photo's kind as it is, another word's stem."""
    return word if word in PHOTO_KINDS else stem(word)


#: "not black", "without a hood", "no pockets", "except white", "other than red", "that aren't black",
#: "which is not cotton", "non-black", "-black": what a shopper wants left out. The word after the phrase
#: is the term (a colour word may bring its shade: "not light blue"); "or", "nor" and commas add more
#: ("not black or white"). "no-show" and "t-shirt" are no phrase.
_APOSTROPHE = "['\u2019]?"
_NOT = (
    rf"(?:(?:but|that|which)\s+|that{_APOSTROPHE}s\s+)?(?:(?:is|are)\s+)?"
    rf"(?:not|no|non|without|except|excluding|minus|other\s+than|isn{_APOSTROPHE}t|aren{_APOSTROPHE}t)"
)
_FILLER = r"(?:(?:in|a|an|any|the|for|with)\s+)*"
#: words that make a colour a shade ("light blue"): kept with it as one term
_SHADES = ("light", "dark", "pale", "bright", "deep", "navy", "royal", "sky", "hot", "neon")
_TERM = rf"(?:(?:{'|'.join(_SHADES)})\s+)?[a-z][a-z0-9'-]*"
#: what joins several terms of one phrase ("not black or white", "except red, blue")
_JOIN = r"\s*(?:,|\bor\b|\bnor\b)\s*"
_EXCLUSION = re.compile(
    rf"(?:(?<=\s)|^)(?:{_NOT}\s+{_FILLER}|(?:non)?-(?=[a-z]))({_TERM}(?:{_JOIN}{_TERM})*)",
    re.IGNORECASE,
)
_LIST = re.compile(_JOIN, re.IGNORECASE)
#: a negation at the end of the text, its term not typed yet ("jacket not", "bag other" of "other than")
_UNFINISHED = re.compile(rf"\s*\b(?:{_NOT}|other)\s*-?$", re.IGNORECASE)


@dataclass(frozen=True)
class ExclusionIntent:
    """The text without its exclusion phrases, and the terms to leave out as typed ("black", "hood")."""

    text: str
    terms: tuple[str, ...]
    #: each term's phrase as typed ("without a hood"), in the order of ``terms``
    phrases: tuple[str, ...]

    def colours(self, term: str) -> list[str]:
        """The colours a term names ("light blue" -> ["blue"]; [] for "hood")."""
        named = words(term)
        return colours_in_text(term) if named and all(colours_in_text(w) or w in _SHADES for w in named) else []

    def text_without(self, term: str) -> str:
        """The words as typed with one term's exclusion taken out (what showing those products again
        searches): "jacket not black or white" without "black" -> "jacket not white"."""
        kept = [phrase for phrase, other in zip(self.phrases, self.terms) if other != term]
        return " ".join([self.text, *kept]).strip()


def parse_exclusions(text: str) -> ExclusionIntent | None:
    """The exclusion phrases in ``text`` ("jacket not black" -> ``ExclusionIntent("jacket", ("black",),
    ("not black",))``; "hoodie without a hood or zip" -> "hood" and "zip"); None when it has none. A term
    is one word, or a colour with its shade ("not light blue"): in "no hood jacket" only "hood" is left
    out and "jacket" is searched. "non" leaves out a colour only: "non-black" is a colour left out,
    "non-slip" and "non iron" are what a product is."""
    terms: list[str] = []
    phrases: list[str] = []
    rest: list[str] = []
    kept_from = 0
    for match in _EXCLUSION.finditer(text):
        prefix = " ".join(text[match.start() : match.start(1)].split()).lower()
        found = [" ".join(term.lower().split()) for term in _LIST.split(match.group(1))]
        if _is_non(prefix) and not all(term and colours_in_text(term) for term in found):
            continue
        if found[0] in _DEGREE:  # "not too short", "not very warm": how much, nothing to leave out
            continue
        rest.append(text[kept_from : match.start()])
        kept_from = match.end()
        for term in found:
            if term and term not in terms:
                terms.append(term)
                phrases.append(f"{prefix}{term}" if prefix.endswith("-") else f"{prefix} {term}")
    if not terms:
        return None
    rest.append(text[kept_from:])
    return ExclusionIntent(" ".join(" ".join(rest).split()), tuple(terms), tuple(phrases))


#: words after "not" that say how much of the next word, not what to leave out ("not too short")
_DEGREE = frozenset({"too", "very", "so", "that", "overly", "really", "quite", "as"})


def _is_non(prefix: str) -> bool:
    """Whether an exclusion's phrase is "non" ("non black", "non-black"), which leaves out colours only."""
    return prefix.startswith("non") and prefix.split()[-1].rstrip("-") == "non"


def without_unfinished_exclusion(text: str) -> str:
    """``text`` without a negation still being typed at its end ("jacket not" -> "jacket"), what
    autocomplete matches while the shopper types what to leave out."""
    return _UNFINISHED.sub("", text)


def without_flag(text: str, flag: str) -> str:
    """The words without those of a flag they name, and an "on" before it ("hoodies on sale" ->
    "hoodies"; ``qualities.flags_named``)."""
    pattern = r"\b(?:on\s+)?" + r"\W+".join(re.escape(word) for word in flag.split()) + r"\b"
    return " ".join(re.sub(pattern, " ", text, flags=re.IGNORECASE).split())


#: what joins kinds of product asked for together ("hoodies and jackets", "shorts or leggings", "tees, tanks")
_KINDS_JOIN = re.compile(r"\s*(?:,|&|\+|\band\b|\bor\b|\bplus\b)\s*", re.IGNORECASE)
#: the most kinds one query is searched as
MAX_KINDS = 4


def joins_several(text: str | None) -> bool:
    """Whether the words join two or more parts the way :func:`kind_parts` reads ("hodies and jackets")."""
    return len([part for part in _KINDS_JOIN.split(text or "") if part.strip()]) >= 2


def kind_parts(text: str | None, kinds: Collection[str]) -> list[str] | None:
    """The words as one search per kind of product when they join several ("hoodies and jackets" ->
    ["hoodies", "jackets"]), else None: one kind, more than :data:`MAX_KINDS`, or a part that names no
    kind of ``kinds`` (the stems of the catalogue's: ``Departments.kinds``), so "black and white tee",
    "red or blue jacket" and "rock and roll tee" are one search. A gender the words name is every
    part's ("men's shorts or leggings" -> ["men's shorts", "men's leggings"])."""
    parts = [part.strip() for part in _KINDS_JOIN.split(text or "") if part.strip()]
    known = set(kinds)
    if not 2 <= len(parts) <= MAX_KINDS or not all({stem(word) for word in words(part)} & known for part in parts):
        return None
    genders = [word for part in parts for word in part.split() if normal_gender(word)]
    return [part if any(normal_gender(word) for word in part.split()) else " ".join([*genders, part]) for part in parts]


#: what a product code looks like: one run of letters, digits and . _ / - with a letter and a digit
#: ("MH07", "24-MB01", "mj12-xs-black")
_CODE = re.compile(r"(?=[^ ]*[a-z])(?=[^ ]*\d)[a-z0-9][a-z0-9._/-]{1,63}", re.IGNORECASE)


def product_code(text: str | None) -> str | None:
    """The words when they are one product code ("MH07", "24-MB01"), lower case, else None: "hoodie"
    has no digit, "mh07 gray" two words. Whether a product has it is the store's to say."""
    typed = (text or "").strip()
    return typed.lower() if _CODE.fullmatch(typed) else None


#: words a query of facets alone may hold beside them ("women's red": "s"; "red for men"; "on sale"), and
#: the words that point at a query photo ("like this photo, but in red", "same one for women", "show me this in blue")
_FACET_FILLER = frozenset(
    {"s", "for", "in", "on", "and", "the", "a", "all", "colour", "color", "coloured", "colored"}
    | {"like", "this", "that", "these", "those", "it", "one", "ones", "same", "similar", "to", "but", "just"}
    | {"with", "of", "kind", "style"}
    | {"photo", "picture", "pic", "image", "something", "thing", "show", "me", "do", "you", "have", "please"}
    # a shopper's question around them ("what should i wear for yoga", "i need something for hiking")
    | {"what", "which", "is", "should", "can", "could", "would", "i", "im", "my", "want", "need", "looking"}
    | {"find", "get", "any", "some", "anything", "stuff", "things", "good"}
)


def only_filler(text: str | None) -> bool:
    """Whether the words are all filler of a facet or of a pointer at the query photo ("like this photo",
    "same one please"): with a photo they ask for nothing it does not show."""
    found = words(text or "")
    return bool(found) and all(word in _FACET_FILLER for word in found)


def facets_only(text: str | None, departments: Iterable[str] = (), qualities: Iterable[str] = ()) -> bool:
    """Whether the words name a colour, a gender, one of ``departments`` and/or of ``qualities`` (the
    catalogue's the query names: department names, ``ranking.departments``; quality stems,
    ``ranking.qualities``) and nothing else ("red", "womens black", "red for men", "tops for men",
    "wool", "women's striped"); False for no words, or any other word ("red hoodie", "xyzzy")."""
    named = [word for word in words(text or "") if word not in _FACET_FILLER]
    known = names_stems(departments) | set(qualities)
    return bool(named) and all(colours_in_text(word) or normal_gender(word) or stem(word) in known for word in named)
