"""The offline BeerAdvocate default: generated reviews in the published format, built once with ``build.json``.

The generator (seeded numpy; see the package docstring for the rules) writes the files of :mod:`.format` under
``<data_dir>/beer_generated/``; :func:`build` writes them once, atomically, with the manifest ``build.json``
(:func:`identity_tf.datasets.protocol.ensure_built`).

Example:
>>> lexicon = {"good": 1.9, "great": 3.1, "fine": 0.8, "bad": -2.5, "awful": -2.0, "weak": -1.0}
>>> scores, texts, spans = _generate(lexicon, 2, np.random.default_rng(0))
>>> scores.shape, [sorted(s) for s in spans] == [[0, 1, 2, 3, 4]] * 2, texts[0][spans[0][1][0][1] - 1]
((2, 5), True, '.')
"""

from __future__ import annotations

import json
import os
import pathlib

import numpy as np

from identity_tf.datasets import cache, protocol
from identity_tf.datasets.beer.format import ANNOTATIONS_FILE, EMBED_DIM, EMBEDDINGS_FILE, train_file
from identity_tf.datasets.beer.lexicon import (
    ASPECT_NOUNS,
    OPENERS,
    VERBS,
    WHEEL_NAME,
    WHEEL_VERSION,
    excluded_fingerprint,
    read_lexicon,
)

FOLDER = "beer_generated"
RECORD = "build.json"
#: Version of the review generator, recorded in ``build.json``; bump it whenever the generated data changes so that
#: cached builds are regenerated. 1: the original generator; 2: offensive lexicon words excluded.
GENERATOR_VERSION = 2


def _generator_version() -> int:
    """:data:`GENERATOR_VERSION` as ``identity_tf.datasets.beer`` exposes it, read when a build starts (so that
    setting it on the package, as on the single module it was, takes effect)."""
    from identity_tf.datasets import beer

    return beer.GENERATOR_VERSION


def _generate(lexicon: dict[str, float], n: int, rng: np.random.Generator):
    """``n`` reviews -> (scores [n, 5], token lists, spans: per review a dict aspect -> [(start, end)])."""
    words = np.array(sorted(lexicon))
    valence = np.array([lexicon[w] for w in words])
    order = np.argsort(valence, kind="stable")
    words, valence = words[order], valence[order]
    all_scores, texts, all_spans = [], [], []
    for _ in range(n):
        q = rng.uniform(-3.0, 3.0)
        sentences, scores = {}, np.zeros(5)
        for a in range(5):
            target = float(np.clip(q + rng.normal(0.0, 1.2), -3.5, 3.5))
            lo, hi = np.searchsorted(valence, [target - 0.6, target + 0.6])
            if hi - lo < 3:  # nearest words
                centre = int(np.clip(np.searchsorted(valence, target), 2, len(valence) - 3))
                lo, hi = centre - 2, centre + 3
            picks = rng.choice(np.arange(lo, hi), size=int(rng.integers(1, 4)), replace=False)
            score = 0.5 + valence[picks].mean() / 7.0 + rng.normal(0.0, 0.02)
            scores[a] = np.round(np.clip(score, 0.0, 1.0), 1)
            opener = OPENERS[rng.integers(len(OPENERS))].split()
            noun = ASPECT_NOUNS[a][rng.integers(len(ASPECT_NOUNS[a]))]
            verb = VERBS[rng.integers(len(VERBS))].split()
            adjectives = []
            for j, p in enumerate(picks):
                if j:
                    adjectives.append("and" if j == len(picks) - 1 else ",")
                adjectives.append(str(words[p]))
            sentences[a] = [*opener, noun, *verb, *adjectives, "."]
        tokens, spans = [], {}
        for a in rng.permutation(5):
            spans[int(a)] = [(len(tokens), len(tokens) + len(sentences[a]))]
            tokens.extend(sentences[a])
        all_scores.append(scores)
        texts.append(tokens)
        all_spans.append(spans)
    return np.asarray(all_scores), texts, all_spans


def _embedding_lines(lexicon: dict[str, float], vocabulary: list[str], rng: np.random.Generator) -> list[str]:
    noun_aspect = {n: a for a, group in ASPECT_NOUNS.items() for n in group}
    vectors = 0.5 * rng.standard_normal([len(vocabulary), EMBED_DIM]) / np.sqrt(EMBED_DIM)
    for i, word in enumerate(vocabulary):
        if word in lexicon:
            vectors[i, 0] += lexicon[word] / 4.0
        if word in noun_aspect:
            vectors[i, 1 + noun_aspect[word]] += 1.0
    return [word + " " + " ".join(f"{v:.5f}" for v in row) for word, row in zip(vocabulary, vectors)]


def _score_line(scores, tokens) -> str:
    return " ".join(f"{s:.1f}" for s in scores) + "\t" + " ".join(tokens)


def build(
    data_dir: str | os.PathLike | None = None,
    num_train: int = 20000,
    num_heldout: int = 2000,
    num_annotations: int = 1000,
    seed: int = 0,
    force: bool = False,
) -> pathlib.Path:
    """Generates the offline BeerAdvocate-format folder ``<data_dir>/beer_generated/`` (module docstring).

    Rebuilt only when missing, when ``force``, or when its ``build.json`` records other arguments, another
    :data:`GENERATOR_VERSION` or another exclusion list (so builds of older generators are regenerated), or when a
    file no longer matches its recorded digest (:func:`identity_tf.datasets.protocol.ensure_built`).

    Returns:
        The folder (pass it as ``path`` to :func:`read_folder`).

    Raises:
        DataError: the lexicon wheel cannot be fetched or read.
    """
    for name, value in (("num_train", num_train), ("num_heldout", num_heldout), ("num_annotations", num_annotations)):
        low = 2 if name == "num_heldout" else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"`{name}` must be an integer >= {low}. Received: {name}={value!r}")
    root = cache.data_dir(data_dir)
    target = root / FOLDER
    params = {
        "num_train": num_train,
        "num_heldout": num_heldout,
        "num_annotations": num_annotations,
        "seed": seed,
        "lexicon": f"{WHEEL_NAME}=={WHEEL_VERSION}",
        "format": 1,
        "generator": _generator_version(),
        "excluded_words": excluded_fingerprint(),
    }
    return protocol.ensure_built(
        target,
        protocol.Manifest(RECORD, params),
        lambda tmp: _write(tmp, root, num_train, num_heldout, num_annotations, seed),
        what="The generated BeerAdvocate reviews",
        force=force,
    )


def _write(tmp: pathlib.Path, root: pathlib.Path, num_train: int, num_heldout: int, num_annotations: int, seed: int):
    """Generates the reviews, the annotation set and the embeddings, and writes them into ``tmp``."""
    cache.report(
        f"BeerAdvocate (generated): writing {num_train} training, {num_heldout} held-out and {num_annotations} "
        f"annotated reviews into {str(root / FOLDER)!r} (word valences from the PyPI wheel "
        f"{WHEEL_NAME}=={WHEEL_VERSION})."
    )
    lexicon = read_lexicon(root)
    rng = np.random.default_rng(seed)
    splits = {name: _generate(lexicon, n, rng) for name, n in (("train", num_train), ("heldout", num_heldout))}
    ann_scores, ann_texts, ann_spans = _generate(lexicon, num_annotations, rng)
    fillers = sorted({t for text in splits["train"][1] for t in text} - set(lexicon))
    vocabulary = sorted(lexicon) + fillers
    embedding_lines = _embedding_lines(lexicon, vocabulary, np.random.default_rng([seed, 1]))
    for split, (scores, texts, _) in splits.items():
        body = "\n".join(_score_line(s, t) for s, t in zip(scores, texts)) + "\n"
        for aspect in range(5):
            (tmp / train_file(aspect, split)).write_text(body, encoding="utf-8")
    (tmp / EMBEDDINGS_FILE).write_text("\n".join(embedding_lines) + "\n", encoding="utf-8")
    lines = []
    for scores, tokens, spans in zip(ann_scores, ann_texts, ann_spans):
        item = {"x": tokens, "y": [round(float(s), 1) for s in scores]}
        item.update({str(a): [list(span) for span in spans[a]] for a in range(5)})
        lines.append(json.dumps(item))
    (tmp / ANNOTATIONS_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")


__all__ = ["FOLDER", "GENERATOR_VERSION", "RECORD", "build"]
