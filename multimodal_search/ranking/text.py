"""Text normalisation shared by every part that reads words: one tokenizer, one stemmer, one gender vocabulary.

* :func:`words` splits lower-cased text into runs of letters and digits ("Women's 1/4-zip" ->
  women, s, 1, 4, zip). Colour words, facet names, pseudo-queries and gender words all use it.
* :func:`stem` drops a plural "s" ("tees" -> "tee", "dress" stays, short words stay).
* :func:`phrase_key` is the form phrases are compared in for synonym expansion: like
  :func:`words` but keeping "/" and "-", so "1/4 zip" and "quarter-zip" stay phrases of their own.
* ``GENDER_WORDS`` names the words for each gender, for stated values ("Women's") and queries
  ("mens running shorts") alike.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"[a-z0-9]+")
_SPACE = re.compile(r"\s+")
_NOT_PHRASE = re.compile(r"[^a-z0-9/\- ]+")

#: canonical gender -> the words that name it
GENDER_WORDS: dict[str, tuple[str, ...]] = {
    "men": ("men", "mens", "man", "male", "guys", "boys"),
    "women": ("women", "womens", "woman", "female", "ladies", "lady", "girls"),
    "unisex": ("unisex",),
}
_GENDER_OF = {word: gender for gender, names in GENDER_WORDS.items() for word in names}
#: genders a shopper's query can ask for
QUERY_GENDERS = ("men", "women")
#: who a product is for, read as the gender a query names ("hoodie for her", "a gift for my dad")
RECIPIENTS = {
    **dict.fromkeys(
        ("him", "he", "men", "man", "guy", "guys", "dad", "father", "husband", "boyfriend", "brother"), "men"
    ),
    **dict.fromkeys(("her", "she", "women", "woman", "mom", "mum", "mother", "wife", "girlfriend", "sister"), "women"),
}
#: words for whom a product is made that no gender word says ("kids hoodie", "baby blanket"); "boys" and
#: "girls" are read as genders (``GENDER_WORDS``)
AUDIENCE_WORDS = frozenset(
    {"kid", "kids", "child", "children", "childrens", "toddler", "toddlers", "baby", "babies", "infant", "infants"}
    | {"youth", "junior", "juniors", "teen", "teens", "teenager", "teenagers"}
)
_FOR = re.compile(r"\bfor\b")


def words(text: str) -> list[str]:
    """Lower-cased runs of letters and digits, in order."""
    return _WORD.findall((text or "").lower())


def stem(word: str) -> str:
    """A plural "s" dropped from words longer than three letters ("bras" -> "bra"; "dress", "abs" stay)."""
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


#: words of a product title that never say what it is ("Sprite Yoga Strap 6 foot": a strap)
HEAD_STOP = frozenset({"and", "with", "the", "for", "from", "set", "pack", "kit", "size", "cm", "foot", "oz"})


def head_noun(title: str) -> str | None:
    """The last content word of a product title ("Chaz Kangeroo Hoodie" -> "hoodie")."""
    content = [word for word in words(title) if len(word) > 2 and word not in HEAD_STOP]
    return content[-1] if content else None


def stems(text: str) -> list[str]:
    """:func:`stem` of every word of ``text``."""
    return [stem(word) for word in words(text)]


def phrase_key(text: str) -> str:
    """Lower-cased text with single spaces, keeping "/" and "-", padded with a space on each side."""
    return " " + _SPACE.sub(" ", _NOT_PHRASE.sub(" ", (text or "").lower())).strip() + " "


def normal_gender(value: str) -> str | None:
    """A stated gender ("Men", "women's", "Unisex") as "men" / "women" / "unisex"; anything else -> None."""
    return _GENDER_OF.get("".join(ch for ch in (value or "").lower() if ch.isalpha()))


def gender_in_text(text: str) -> str | None:
    """The gender a query asks for ("womens yoga pants" -> "women", "hoodie for her" -> "women", "a jacket
    for my dad" -> "men"); None when none or both are named."""
    lowered = (text or "").lower()
    named = {_GENDER_OF.get(word) for word in words(lowered)}
    recipient = _FOR.search(lowered)  # whom it is for: the words after "for" ("for her and him": both)
    named |= {RECIPIENTS.get(word) for word in words(lowered[recipient.end() :])} if recipient else set()
    found = [gender for gender in QUERY_GENDERS if gender in named]
    return found[0] if len(found) == 1 else None
