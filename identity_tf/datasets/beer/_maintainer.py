"""Maintainers only: audits and rewrites the word exclusion list ``assets/excluded_words.sha256``.

Never imported at run time (builds only read the list, :mod:`identity_tf.datasets.beer.lexicon`). Run
``python tools/beer_excluded_words.py audit`` to see how the list splits the VADER lexicon (the counts quoted in the
package docstring), and :func:`write_exclusion_list` after a new review of the lexicon; then bump
:data:`~identity_tf.datasets.beer.GENERATOR_VERSION` only if the generator itself changed (the manifest records a
fingerprint of the list, so cached builds are regenerated anyway).

Example:
>>> categories = parse_categories(["# a (1): first", "0" * 64, "# b (0): second"])
>>> [(name, description, len(digests)) for name, (description, digests) in categories.items()]
[('a', 'first', 1), ('b', 'second', 0)]
"""

from __future__ import annotations

import os
import pathlib
import re

from identity_tf.datasets.beer.lexicon import EXCLUDED_WORDS_PATH, excluded_digests, read_lexicon, word_digest
from identity_tf.datasets.cache import DataError

_CATEGORY = re.compile(r"# (\w+) \((\d+)\): (.*)")


def parse_categories(lines) -> dict[str, tuple[str, list[str]]]:
    """``{category: (description, digests)}`` from the lines of an exclusion list (``# name (count): text`` headers)."""
    categories: dict[str, tuple[str, list[str]]] = {}
    current = None
    for line in lines:
        line = line.strip()
        header = _CATEGORY.fullmatch(line)
        if header:
            current = header.group(1)
            categories[current] = (header.group(3), [])
        elif line and not line.startswith("#"):
            if current is None:
                raise DataError(f"Digest {line[:16]}... comes before any '# <category> (<count>): ...' header.")
            categories[current][1].append(line)
    return categories


def audit(data_dir: str | os.PathLike | None = None, path: str | os.PathLike = EXCLUDED_WORDS_PATH) -> dict:
    """How the exclusion list splits the lexicon's candidate words (counts only; no word is printed).

    Returns:
        ``{"candidates", "excluded", "remaining", "negative", "positive", "valence_range", "per_category",
        "unused_digests"}``: ``per_category`` counts the listed words found in the lexicon, ``unused_digests`` the
        listed digests that match no candidate word (0 for a list made for this lexicon).
    """
    raw = read_lexicon(data_dir, exclude=False)
    digests = excluded_digests()
    remaining = {w: v for w, v in raw.items() if word_digest(w) not in digests}
    found = {word_digest(w) for w in raw} & digests
    categories = parse_categories(pathlib.Path(path).read_text(encoding="utf-8").splitlines())
    return {
        "candidates": len(raw),
        "excluded": len(raw) - len(remaining),
        "remaining": len(remaining),
        "negative": sum(v < 0 for v in remaining.values()),
        "positive": sum(v > 0 for v in remaining.values()),
        "valence_range": (min(remaining.values()), max(remaining.values())),
        "per_category": {name: len(set(d) & found) for name, (_, d) in categories.items()},
        "unused_digests": len(digests - found),
    }


def write_exclusion_list(
    words: dict[str, tuple[str, list[str]]], out: str | os.PathLike = EXCLUDED_WORDS_PATH
) -> pathlib.Path:
    """Rewrites the list from ``{category: (description, words)}``: the current header comment is kept, then per
    category a ``# name (count): description`` line and the sorted digests of its words (never the words)."""
    out = pathlib.Path(out)
    old = out.read_text(encoding="utf-8").splitlines() if out.exists() else []
    header = []
    for line in old:
        if _CATEGORY.fullmatch(line.strip()) or (line.strip() and not line.startswith("#")):
            break
        header.append(line)
    body = []
    for name, (description, members) in words.items():
        digests = sorted({word_digest(w) for w in members})
        body += [f"# {name} ({len(digests)}): {description}", *digests]
    tmp = out.with_name(f".tmp-{os.getpid()}-{out.name}")
    tmp.write_text("\n".join(header + body) + "\n", encoding="utf-8")
    os.replace(tmp, out)
    excluded_digests.cache_clear()
    return out


__all__ = ["audit", "parse_categories", "write_exclusion_list"]
