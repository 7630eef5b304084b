"""The words of the generated reviews: the VADER lexicon (pinned wheel) minus the excluded offensive words.

The exclusion list ``assets/excluded_words.sha256`` holds SHA-256 digests, never the words (see the package
docstring); :func:`read_lexicon` drops every listed word. Auditing or regenerating the list is maintainer work:
:mod:`identity_tf.datasets.beer._maintainer`.

Example:
>>> word_digest("Stout") == word_digest("stout"), is_excluded("stout"), is_excluded("bad")
(True, False, False)
"""

from __future__ import annotations

import functools
import hashlib
import os
import pathlib
import re
import zipfile

from identity_tf.datasets import cache
from identity_tf.datasets.cache import DataError

WHEEL_NAME = "vaderSentiment"
WHEEL_VERSION = "3.3.2"
WHEEL_SHA256 = "3bf1d243b98b1afad575b9f22bc2cb1e212b94ff89ca74f8a23a588d024ea311"
LEXICON_MEMBER = "vaderSentiment/vader_lexicon.txt"
#: SHA-256 digests of the excluded lexicon words (module docstring).
EXCLUDED_WORDS_PATH = pathlib.Path(__file__).resolve().parents[1] / "assets" / "excluded_words.sha256"

ASPECT_NOUNS = {
    0: ("appearance", "look", "head", "color", "colour", "lacing", "foam", "clarity", "pour"),
    1: ("aroma", "smell", "nose", "scent", "bouquet", "odor"),
    2: ("palate", "mouthfeel", "body", "carbonation", "texture"),
    3: ("taste", "flavor", "flavour", "finish", "aftertaste"),
    4: ("overall", "drinkability", "verdict", "impression"),
}
OPENERS = ("the", "its", "this", "my", "")
VERBS = ("is", "was", "seems", "feels", "comes across as", "is quite", "is rather", "was a bit")
FILLERS = {w for phrase in OPENERS + VERBS for w in phrase.split()} | {"and", ",", "."}


def word_digest(word: str) -> str:
    """SHA-256 hex digest of the lower-cased word encoded as UTF-8 (the key of the exclusion list)."""
    return hashlib.sha256(word.lower().encode("utf-8")).hexdigest()


@functools.cache
def excluded_digests() -> frozenset[str]:
    """The digests of ``assets/excluded_words.sha256`` (``#`` comment lines and blank lines skipped).

    Raises:
        DataError: the file is missing or holds a line that is not a 64-digit lower-case hex digest.
    """
    try:
        lines = EXCLUDED_WORDS_PATH.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise DataError(f"Cannot read the word exclusion list {str(EXCLUDED_WORDS_PATH)!r}: {error}") from error
    digests = set()
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not re.fullmatch(r"[0-9a-f]{64}", line):
            raise DataError(
                f"{EXCLUDED_WORDS_PATH.name}, line {number}: expected a sha256 hex digest. Received: {line!r}"
            )
        digests.add(line)
    return frozenset(digests)


def excluded_fingerprint() -> str:
    """A short SHA-256 of the exclusion list (sorted digests), recorded in ``build.json``."""
    return hashlib.sha256("\n".join(sorted(excluded_digests())).encode("ascii")).hexdigest()[:16]


def is_excluded(word: str) -> bool:
    """Whether ``word`` is on the exclusion list (never used to generate reviews)."""
    return word_digest(word) in excluded_digests()


def read_lexicon(data_dir: str | os.PathLike | None = None, exclude: bool = True) -> dict[str, float]:
    """Alphabetic words of the VADER lexicon -> mean valence in [-4, 4] (from the pinned wheel, read as a zip).

    Args:
        data_dir: Data directory holding ``downloads/`` (see :func:`identity_tf.datasets.cache.data_dir`).
        exclude: Drop the words of the exclusion list (:func:`is_excluded`); ``False`` only to audit the list.
    """
    wheel = cache.fetch_wheel(WHEEL_NAME, WHEEL_VERSION, WHEEL_SHA256, cache.data_dir(data_dir))
    try:
        with zipfile.ZipFile(wheel) as archive:
            raw = archive.read(LEXICON_MEMBER).decode("utf-8")
    except (zipfile.BadZipFile, KeyError) as error:
        raise DataError(f"{wheel.name}: cannot read {LEXICON_MEMBER}: {error!r}") from error
    lexicon = {}
    nouns = {n for group in ASPECT_NOUNS.values() for n in group}
    for line in raw.splitlines():
        parts = line.split("\t")
        if len(parts) >= 2 and re.fullmatch(r"[a-z]+", parts[0]) and parts[0] not in nouns | FILLERS:
            lexicon[parts[0]] = float(parts[1])
    if exclude:
        digests = excluded_digests()
        lexicon = {w: v for w, v in lexicon.items() if word_digest(w) not in digests}
    if len(lexicon) < 1000:
        raise DataError(f"{wheel.name}: {LEXICON_MEMBER} gave only {len(lexicon)} words; expected thousands.")
    return lexicon


__all__ = [
    "ASPECT_NOUNS",
    "EXCLUDED_WORDS_PATH",
    "FILLERS",
    "LEXICON_MEMBER",
    "OPENERS",
    "VERBS",
    "WHEEL_NAME",
    "WHEEL_SHA256",
    "WHEEL_VERSION",
    "excluded_digests",
    "excluded_fingerprint",
    "is_excluded",
    "read_lexicon",
    "word_digest",
]
