"""BeerAdvocate reviews (the L2X experiment, paper section 4.1 / B.1): a loader of the published files and an
offline generated default in the same format.

Published format (McAuley et al. 2012, as distributed by Lei et al. 2016 for rationale extraction), one folder:

* ``reviews.aspect{A}.train.txt`` and ``reviews.aspect{A}.heldout.txt`` (``.gz`` accepted too): one review per
  line, ``"s0 s1 s2 s3 s4\\t<text>"``: the five aspect scores in [0, 1] (appearance 0, aroma 1, palate 2, taste 3,
  overall 4), a tab, then the lower-cased, space-tokenised text;
* the 200-d word vectors ``review+wiki.filtered.200.txt`` (``.gz`` accepted; word2vec text format, one
  ``word v1 ... v200`` per line; an optional ``"<count> <dim>"`` header line is skipped);
* ``annotations.json``: one JSON object per line with ``"x"`` (the token list), ``"y"`` (the five scores) and, per
  aspect index ``"0"`` .. ``"4"``, a list of ``[start, end)`` token spans of the human-annotated rationale.

:func:`load` maps tokens to ids (0 = padding, 1 = unknown word, 2.. = the words of the embeddings file in file
order; the padding and unknown rows of the embedding matrix are zero), pads/truncates every review **at the front**
to 350 tokens (as the reference code, i.e. Keras ``pad_sequences`` defaults: long reviews keep their last 350
tokens), and splits the held-out file 50/50 into validation and test sets by a seeded permutation (val = the first
``n // 2`` of the permutation). The rationale masks of the annotation set are aligned with the padded ids.

Offline default (:func:`build`; no registry ships BeerAdvocate): generated reviews written in exactly that format
under ``<data_dir>/beer_generated/``. Word polarities come from the VADER lexicon (Hutto & Gilbert 2014), a
human-rated valence lexicon (each word's mean valence in [-4, 4] over 10 raters) shipped in the PyPI wheel
``vaderSentiment==3.3.2`` (MIT licence) as ``vaderSentiment/vader_lexicon.txt``; the wheel is fetched with
``pip download --no-deps`` (:func:`identity_tf.datasets.cache.fetch_wheel`), checked against a pinned sha256 and read
as a zip archive, never installed. Only purely alphabetic lexicon entries are used, minus the aspect nouns and
filler words below and minus the offensive words (next paragraph). Everything else is generated (seeded numpy), so
the generated text is ours, not BeerAdvocate's.

Word filter: the VADER lexicon rates profanity, slurs and words about sex, violence, crime, abuse, death, disease and
drugs, so the most negative reviews would be made of them. Those words were excluded by a manual review of the
lexicon (word families in five categories: profanity; slurs and insults; sexual terms; violence, crime and abuse;
death, disease and drugs); ordinary negative words ("bad", "awful", "boring", "weak", "disappointing", ...) are
kept. The excluded words are not written in the repository: the asset ``assets/excluded_words.sha256`` holds the
SHA-256 hex digest of each (lower-case, UTF-8), grouped by category, and :func:`read_lexicon` drops every word whose
digest is listed (:func:`is_excluded`). 630 of the 7206 candidate words are excluded; 6576 remain (3430 negative,
3146 positive, valences -3.6 .. 3.4), so every target valence in [-3.5, 3.5] still has dozens to thousands of words
within 0.6.

How a review is generated: a review quality ``q ~ U(-3, 3)``; per aspect a target valence ``t_a = clip(q + N(0,
1.2), -3.5, 3.5)`` (so aspects are correlated, as in real reviews); 1-3 lexicon words with valence within 0.6 of
``t_a`` (nearest words if none); the aspect's score is ``clip(0.5 + mean_valence / 7 + N(0, 0.02), 0, 1)`` rounded
to 0.1 (the published scores are multiples of 0.1). Each review has five sentences, one per aspect, in random order;
a sentence is an optional opener, an aspect noun (e.g. "aroma", "smell", "nose" for aroma; "head", "color",
"lacing" for appearance), a verb, the valence words joined by "and" / "," and a final ".". The aroma score is thus a
function of the words of the aroma sentence only (up to the rounding noise), and that sentence (all its tokens,
final "." included) is the rationale span written to ``annotations.json`` for its aspect. The same review set is
written under the file names of all five aspects; the annotation set is ``num_annotations`` further reviews.

Generated embeddings (200-d, seeded): ``0.5 * N(0, I) / sqrt(200)`` per word, plus ``valence / 4`` along dimension 0
for lexicon words, plus 1.0 along dimension ``1 + a`` for the nouns of aspect ``a``, written with 5 decimals.

Caching: ``build.json`` in the folder records the arguments, :data:`GENERATOR_VERSION`, a fingerprint of the
exclusion list and the size and sha256 of every file; a folder whose record differs (e.g. one written by an older
generator, before the word filter, or before digests were recorded) or whose files no longer match their digests
is regenerated (:func:`identity_tf.datasets.protocol.ensure_built`, the protocol of every data set).

Layout of this package: :mod:`.format` (the published format and :func:`read_folder`), :mod:`.lexicon` (the VADER
words and the exclusion list), :mod:`.building` (the generator and :func:`build`), :mod:`.pipeline` (``tf.data``),
:mod:`._maintainer` (audits of the exclusion list; never imported at run time, see ``tools/beer_excluded_words.py``).

Example:
>>> import numpy as np
>>> front_pad([[5, 6, 7]], 5).tolist()
[[0, 0, 5, 6, 7]]
>>> front_pad([[1, 2, 3, 4, 5, 6]], 4).tolist()
[[3, 4, 5, 6]]
>>> word_digest("Stout") == word_digest("stout"), is_excluded("stout"), is_excluded("bad")
(True, False, False)
"""

from __future__ import annotations

import os

from identity_tf.datasets.beer.format import (
    ANNOTATIONS_FILE,
    ASPECTS,
    EMBED_DIM,
    EMBEDDINGS_FILE,
    MAX_LEN,
    PAD,
    UNK,
    BeerData,
    _check_aspect,
    front_pad,
    read_annotations,
    read_embeddings,
    read_folder,
    read_reviews,
    train_file,
)
from identity_tf.datasets.beer.lexicon import (
    ASPECT_NOUNS,
    EXCLUDED_WORDS_PATH,
    FILLERS,
    LEXICON_MEMBER,
    OPENERS,
    VERBS,
    WHEEL_NAME,
    WHEEL_SHA256,
    WHEEL_VERSION,
    excluded_digests,
    excluded_fingerprint,
    is_excluded,
    read_lexicon,
    word_digest,
)
from identity_tf.datasets.beer.building import FOLDER, GENERATOR_VERSION, RECORD, build
from identity_tf.datasets.beer.pipeline import make_dataset


def load(
    aspect: int = 1,
    data_dir: str | os.PathLike | None = None,
    path: str | os.PathLike | None = None,
    seed: int = 0,
    max_len: int = MAX_LEN,
    vocab_size: int | None = None,
    **build_kwargs,
) -> BeerData:
    """One aspect's data from ``path`` (a folder in the published format) or the offline build (built on first use).

    Args:
        aspect: 0..4 (1 = aroma).
        data_dir: Data directory of the offline build; None = ``$IDENTITY_TF_DATA_DIR`` or the user cache.
        path: Folder with the published files; None = the offline build.
        seed: Seed of the 50/50 val/test split of the held-out reviews.
        max_len: Tokens per review (front padding/truncation).
        vocab_size: Expected vocabulary size (see :func:`read_folder`).
        **build_kwargs: Passed to :func:`build` (num_train, num_heldout, num_annotations, seed of the generator
            as ``build_seed``).

    Raises:
        DataError: missing or corrupt files, or a vocabulary size mismatch.
    """
    _check_aspect(aspect)
    if path is None:
        if "build_seed" in build_kwargs:
            build_kwargs["seed"] = build_kwargs.pop("build_seed")
        path = build(data_dir, **build_kwargs)
    return read_folder(path, aspect=aspect, seed=seed, max_len=max_len, vocab_size=vocab_size)


__all__ = [
    "ANNOTATIONS_FILE",
    "ASPECTS",
    "ASPECT_NOUNS",
    "BeerData",
    "EMBEDDINGS_FILE",
    "EMBED_DIM",
    "EXCLUDED_WORDS_PATH",
    "FILLERS",
    "FOLDER",
    "GENERATOR_VERSION",
    "LEXICON_MEMBER",
    "MAX_LEN",
    "OPENERS",
    "PAD",
    "RECORD",
    "UNK",
    "VERBS",
    "WHEEL_NAME",
    "WHEEL_SHA256",
    "WHEEL_VERSION",
    "build",
    "excluded_digests",
    "excluded_fingerprint",
    "front_pad",
    "is_excluded",
    "load",
    "make_dataset",
    "read_annotations",
    "read_embeddings",
    "read_folder",
    "read_lexicon",
    "read_reviews",
    "train_file",
    "word_digest",
]
