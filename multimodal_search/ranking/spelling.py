"""Spelling: a typed word that no product uses, read as the catalogue's nearest word ("hoddie" -> "hoodie").

A misspelt word matches no keyword, and the text encoder splits it into pieces that mean little:
on Luma "hoddie" and "mens jaket" showed "No results". The catalogue's own words are the dictionary:
the words its products state (title, colour, gender, material, attribute values) and its category
names, each with the number of products that use it, and the words the search reads whatever the
products state (colour names, gender words, the synonym groups': :func:`understood_words`).
``mmsearch_train`` collects them beside the re-ranker (:data:`ARTEFACT`).

A typed word is corrected only when all of these hold, so a word the shop uses, a number, a short word
or a name it does not sell is searched as typed:

- it has :data:`MIN_LENGTH` letters or more, or :data:`SHORTEST` when the correction only adds a
  letter ("blak" -> "black"), and no digit;
- it is not a dictionary word (nor one with a plural "s" added or dropped), a colour, a gender, a
  word of the language (a whole word of the text model's vocabulary, ``BaseEncoder.known_words``:
  "while" is not read as "white", nor "skirt" as "shirt") or a word of the admin's synonym rules (so a
  merchandiser stops a wrong reading with a rule);
- the catalogue's full text, descriptions included, does not use it (the caller checks: the
  dictionary can be older than the products);
- a dictionary word is within one edit of it (two from :data:`LONG` letters on; an edit is an insert,
  a delete, a substitution or two neighbours swapped). The nearest wins, then the most used (with its
  plural or singular), then the one as long as the typed word, then the shorter. When none is that
  near, a double letter typed once costs no edit: "legins" is read as "leggins", one edit from
  "leggings" (the commonest misspelling a single edit misses).

A word the catalogue writes with a hyphen is also found typed as one word: "crossfit" is read as
"cross-fit", "tshirts" as "t-shirts", "vneck" as "v-neck" (:attr:`Speller.joined`). That comes before
the nearest word, which for "tshirt" would be "shirt". So does a word that is two dictionary words run
together ("tanktop" -> "tank top", "rainjacket" -> "rain jacket"; each part :data:`MIN_PART` letters or
more). Two typed words that the dictionary has as one ("back pack", "sweat shirt", "crew neck") are not
corrected, both being words the shop uses, but :meth:`Speller.compounds` names the one word so that the
search reads it beside them: "back pack" found a shoulder pack first and one backpack, "sweat shirt"
tees.

Lookups use deletes only (symmetric delete, as SymSpell): each dictionary word is kept under itself
and every string one delete makes, and a typed word's candidates are the words kept under one of its
own deletes (up to its edits). Deleting only one letter of the dictionary's words keeps the index
small (about 9 keys a word: 20,000 words in 1.5 s and 28 MB, against 5 s and 135 MB with two);
what it misses are two-edit typos that need two of the word's letters deleted, such as two letters
left out ("watrprof").
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations, pairwise
from typing import Any

from multimodal_search import artefacts
from multimodal_search.ranking.colour import PALETTE, colours_in_text
from multimodal_search.ranking.colour import SYNONYMS as COLOUR_SYNONYMS
from multimodal_search.ranking.synonyms import configured_groups
from multimodal_search.ranking.text import GENDER_WORDS, normal_gender, stem, words

#: the artefact name (``artefacts``) of the catalogue's dictionary
ARTEFACT = "spelling"
#: typed words shorter than this get one edit only when it adds a letter (:data:`SHORTEST`)
MIN_LENGTH = 5
#: typed words this short are corrected only to a word they are one letter short of ("blak" -> "black"):
#: another letter in their place reads too many names as other names ("puma" would be "luma")
SHORTEST = 4
#: typed words this long or longer may be two edits from the dictionary word
LONG = 8
#: the dictionary keeps at most this many words, the most used (each takes about 9 delete keys)
MAX_WORDS = 20_000
#: a hyphenated word of the catalogue ("cross-fit"), lower case, letters only
_HYPHENATED = re.compile(r"(?<![a-z0-9-])[a-z]+(?:-[a-z]+)+(?![a-z0-9-])")
#: shortest hyphenated word, its hyphens taken out, that is read typed as one word ("v-neck": 5)
MIN_JOINED = 4
#: the shortest part of a typed word read as two dictionary words run together ("tanktop": "tank" "top")
MIN_PART = 3


def max_edits(word: str) -> int:
    """How many edits a typed word may be from its correction: 0 when it is too short to correct."""
    if len(word) < MIN_LENGTH:
        return 0
    return 2 if len(word) >= LONG else 1


def edit_distance(a: str, b: str, limit: int) -> int:
    """Edits from ``a`` to ``b`` (inserts, deletes, substitutions, neighbours swapped: optimal string
    alignment), or ``limit + 1`` as soon as it is known to exceed ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], previous2[j - 2] + 1)
        if min(current) > limit:
            return limit + 1
        previous2, previous = previous, current
    return previous[-1] if previous[-1] <= limit else limit + 1


def _deletes(word: str, edits: int) -> set[str]:
    """``word`` and every string made by deleting up to ``edits`` of its letters."""
    found = {word}
    for count in range(1, min(edits, len(word) - 1) + 1):
        for kept in combinations(range(len(word)), len(word) - count):
            found.add("".join(word[i] for i in kept))
    return found


@dataclass(frozen=True)
class Correction:
    """The text as searched and each typed word with the word it was read as."""

    text: str
    fixes: tuple[tuple[str, str], ...]

    def applied_to(self, text: str) -> str:
        """Another text with the same words read the same way ("cheap backpak": "cheap backpack")."""
        return _replaced(text, self.fixes)


def _replaced(text: str, fixes: tuple[tuple[str, str], ...]) -> str:
    """``text`` with each typed word of ``fixes`` (any case, a whole word) replaced by its reading."""
    reading = dict(fixes)
    pattern = re.compile(r"(?<![A-Za-z0-9])(" + "|".join(map(re.escape, reading)) + r")(?![A-Za-z0-9])", re.I)
    return pattern.sub(lambda match: reading[match.group(1).lower()], text)


class Speller:
    """The catalogue's dictionary (word -> products that use it), its delete index, and its hyphenated
    words by their letters run together (``joined``: "crossfit" -> "cross-fit")."""

    def __init__(self, counts: Mapping[str, int], joined: Mapping[str, str] | None = None):
        kept = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:MAX_WORDS]
        self.counts: dict[str, int] = dict(kept)
        self.joined: dict[str, str] = {
            word: written for word, written in sorted((joined or {}).items())[:MAX_WORDS] if not self.knows(word)
        }
        self._index: dict[str, list[str]] = {}
        for word in self.counts:
            for key in _deletes(word, 1):
                self._index.setdefault(key, []).append(word)

    @classmethod
    def from_texts(cls, texts: Iterable[str], understood: Iterable[str] = ()) -> Speller:
        """The dictionary of one text per product (each word counted once per product), and the words
        the search reads whatever the products state (:func:`understood_words`), counted once at least."""
        counts: Counter[str] = Counter()
        written: Counter[str] = Counter()
        for text in texts:
            counts.update({word for word in words(text) if word.isalpha() and len(word) > 1})
            written.update(set(_HYPHENATED.findall((text or "").lower())))
        for word in understood:
            counts[word] = max(counts[word], 1)
        joined: dict[str, str] = {}
        for form, _ in sorted(written.items(), key=lambda item: (-item[1], item[0])):  # the commonest writing
            run = form.replace("-", "")
            if len(run) >= MIN_JOINED:
                joined.setdefault(run, form)
        return cls(counts, joined)

    def __len__(self) -> int:
        return len(self.counts)

    def knows(self, word: str) -> bool:
        """Whether the dictionary has the word, or it with a plural "s" dropped or added."""
        return word in self.counts or stem(word) in self.counts or word + "s" in self.counts

    def suggest(self, word: str) -> str | None:
        """The dictionary word a typed word that it lacks is read as (None: none near enough): the
        catalogue's hyphenated word it runs together ("crossfit": "cross-fit", "tshirts": "t-shirts"),
        else the nearest."""
        edits = max_edits(word)
        if len(word) < SHORTEST or self.knows(word) or not word.isalpha():
            return None
        if word in self.joined:
            return self.joined[word]
        if stem(word) in self.joined:  # "tshirts", the catalogue's "t-shirt"
            return self.joined[stem(word)] + word[len(stem(word)) :]
        if word + "s" in self.joined and self.joined[word + "s"].endswith("s"):  # "tshirt", its "t-shirts"
            return self.joined[word + "s"][:-1]
        # two words run together, unless one word is a single edit away ("sweattshirt" is "sweatshirt"
        # with a letter doubled, not "sweat tshirt")
        split = self._split(word)
        if split is not None and self._nearest(word, self._candidates(word, 1), 1) is None:
            return split
        if not edits:  # a word of SHORTEST letters: the words it is one letter short of
            candidates = {found for found in self._index.get(word, ()) if len(found) == len(word) + 1}
            return self._nearest(word, candidates, 1)
        found = self._nearest(word, self._candidates(word, edits), edits)
        if found is None:  # a double letter typed once, and one more typo: "legins" is "leggins" from "leggings"
            doubled = {word[: i + 1] + word[i:] for i in range(1, len(word)) if word[i] != word[i - 1]}
            found = min(
                (
                    near
                    for form in sorted(doubled)
                    if (near := self._nearest(form, self._candidates(form, edits), edits))
                ),
                key=lambda near: (edit_distance(word, near, edits + 1), -self._uses(near), near),
                default=None,
            )
        return found

    def _split(self, word: str) -> str | None:
        """Two dictionary words the typed word runs together ("tanktop": "tank top"), each of ``MIN_PART``
        letters or more, the first as the dictionary has it (the second may be its plural: "tanktops");
        of several ways, the one whose rarer word the most products use."""
        ways = [
            (min(self._uses(head), self._uses(tail)), f"{head} {tail}")
            for cut in range(MIN_PART, len(word) - MIN_PART + 1)
            for head, tail in [(word[:cut], word[cut:])]
            if head in self.counts and self.knows(tail)
        ]
        return max(ways)[1] if ways else None

    def compounds(self, text: str) -> list[str]:
        """The dictionary's words that two neighbouring typed words make together ("back pack":
        ["backpack"]; "sweat shirts": ["sweatshirts"]), when the typed text lacks them."""
        typed = words(text)
        found = []
        for head, tail in pairwise(typed):
            run = head + tail
            if head.isalpha() and tail.isalpha() and min(len(head), len(tail)) > 1 and self.knows(run):
                found.append(run)
        return [run for run in dict.fromkeys(found) if run not in typed]

    def joined_prefix(self, text: str) -> str | None:
        """The text with its last two words run together when a dictionary word starts so ("back pa" ->
        "backpa", of "backpack"; "sweat sh" -> "sweatsh"): for autocomplete, where the last word is still
        being typed. None: fewer than two words, a last word of one letter, a run of under
        ``MIN_JOINED`` + 1 letters, or no such word."""
        typed = words(text)
        if len(typed) < 2 or not (typed[-2].isalpha() and typed[-1].isalpha()) or len(typed[-1]) < 2:
            return None
        run = typed[-2] + typed[-1]
        if len(run) < MIN_JOINED + 1 or not any(word.startswith(run) for word in self.counts):
            return None
        return " ".join([*typed[:-2], run])

    def _candidates(self, word: str, edits: int) -> set[str]:
        return {found for key in _deletes(word, edits) for found in self._index.get(key, ())}

    def _nearest(self, word: str, candidates: set[str], edits: int) -> str | None:
        """The nearest of ``candidates`` within ``edits``; then the most used, a word and its plural counted
        together; then the one as long as what was typed ("panst": "pants", not "pant"), then the shorter."""
        scored = [
            (edit_distance(word, found, edits), -self._uses(found), abs(len(found) - len(word)), len(found), found)
            for found in candidates
        ]
        near = [item for item in scored if item[0] <= edits]
        return min(near)[-1] if near else None

    def _uses(self, word: str) -> int:
        """Products using the word or its plural / singular."""
        base = stem(word)
        return self.counts.get(base, 0) + self.counts.get(base + "s", 0)

    def correct(
        self, text: str, used: Callable[[list[str]], set[str]], known: Sequence[Collection[str]] = ()
    ) -> Correction | None:
        """The text with each word the dictionary lacks replaced by its suggestion, or None when none is.

        Args:
            text: the shopper's words.
            used: of the words given, those the catalogue's full text uses (never corrected).
            known: words never corrected either: the text model's vocabulary (words of the language),
                the admin's synonym rules' words.
        """
        asked = {
            word: found
            for word in dict.fromkeys(words(text))
            if not any(word in words_known for words_known in known)
            and not colours_in_text(word)
            and not normal_gender(word)
            for found in [self.suggest(word)]
            if found is not None
        }
        if not asked:
            return None
        in_use = used(list(asked))
        fixes = tuple((word, found) for word, found in asked.items() if word not in in_use)
        return Correction(_replaced(text, fixes), fixes) if fixes else None

    def to_json(self) -> dict[str, Any]:
        return {"counts": self.counts, "joined": self.joined}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Speller:
        counts = {str(word): int(n) for word, n in dict(data.get("counts", {})).items()}
        return cls(counts, {str(word): str(form) for word, form in dict(data.get("joined", {})).items()})


def understood_words() -> set[str]:
    """The words the search reads whatever the catalogue states: colour names and their synonyms
    (``ranking.colour``), gender words (``ranking.text``) and the configured synonym groups' words
    (``ranking.synonyms``): "trousers" is read as "pants" in a shop whose titles say "Pant"."""
    found = set(PALETTE) | set(COLOUR_SYNONYMS) | {word for names in GENDER_WORDS.values() for word in names}
    found |= {word for group in configured_groups() for phrase in group for word in words(phrase)}
    return {word for word in found if word.isalpha() and len(word) > 1}


def get_speller(model_id: str) -> Speller | None:
    """The dictionary ``mmsearch_train`` collected for this encoder version (reloaded when the file changes)."""
    return artefacts.load(ARTEFACT, model_id, Speller.from_json)


def save_speller(model_id: str, speller: Speller) -> None:
    artefacts.save(ARTEFACT, model_id, speller.to_json())
