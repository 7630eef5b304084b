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
is regenerated (:func:`identity_tf.datasets.cache.build_state`).

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

import dataclasses
import functools
import gzip
import hashlib
import json
import os
import pathlib
import re
import zipfile

import numpy as np

from identity_tf.datasets import cache
from identity_tf.datasets.cache import DataError

WHEEL_NAME = "vaderSentiment"
WHEEL_VERSION = "3.3.2"
WHEEL_SHA256 = "3bf1d243b98b1afad575b9f22bc2cb1e212b94ff89ca74f8a23a588d024ea311"
LEXICON_MEMBER = "vaderSentiment/vader_lexicon.txt"

ASPECTS = ("appearance", "aroma", "palate", "taste", "overall")
MAX_LEN = 350
EMBED_DIM = 200
PAD, UNK = 0, 1
EMBEDDINGS_FILE = "review+wiki.filtered.200.txt"
ANNOTATIONS_FILE = "annotations.json"
FOLDER = "beer_generated"
_RECORD = "build.json"
#: Version of the review generator, recorded in ``build.json``; bump it whenever the generated data changes so that
#: cached builds are regenerated. 1: the original generator; 2: offensive lexicon words excluded.
GENERATOR_VERSION = 2
#: SHA-256 digests of the excluded lexicon words (module docstring).
EXCLUDED_WORDS_PATH = pathlib.Path(__file__).resolve().parent / "assets" / "excluded_words.sha256"

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


def train_file(aspect: int, split: str) -> str:
    return f"reviews.aspect{aspect}.{split}.txt"


def _find(folder: pathlib.Path, name: str) -> pathlib.Path:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise DataError(f"BeerAdvocate file {name!r} (or {name}.gz) not found in {str(folder)!r}.")


def _read_lines(path: pathlib.Path) -> list[str]:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rt", encoding="utf-8") as f:
                return f.read().splitlines()
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError, EOFError) as error:
        raise DataError(f"Cannot read {str(path)!r} (corrupt?): {error}") from error


def front_pad(sequences, max_len: int = MAX_LEN) -> np.ndarray:
    """Pads with 0 / truncates **at the front** to ``max_len`` (Keras ``pad_sequences`` defaults) -> int32."""
    out = np.zeros([len(sequences), max_len], np.int32)
    for i, seq in enumerate(sequences):
        seq = list(seq)[-max_len:]
        if seq:
            out[i, max_len - len(seq) :] = seq
    return out


# ------------------------------------------------------------------------------------------------ reading
def read_reviews(path: pathlib.Path) -> tuple[np.ndarray, list[list[str]]]:
    """``"s0 .. s4\\t<text>"`` lines -> scores float32 [N, 5] and token lists."""
    scores, texts = [], []
    for number, line in enumerate(_read_lines(path), 1):
        if not line.strip():
            continue
        head, sep, text = line.partition("\t")
        try:
            values = [float(v) for v in head.split()]
        except ValueError:
            values = []
        if not sep or len(values) != 5 or not all(0.0 <= v <= 1.0 for v in values):
            raise DataError(
                f"{path.name}, line {number}: expected 5 scores in [0, 1], a tab, then the text. Received: {line[:80]!r}"
            )
        scores.append(values)
        texts.append(text.split())
    if not texts:
        raise DataError(f"{path.name} holds no reviews.")
    return np.asarray(scores, np.float32), texts


def read_embeddings(path: pathlib.Path, dim: int = EMBED_DIM) -> tuple[list[str], np.ndarray]:
    """word2vec text format -> (words, float32 [len(words), dim])."""
    words, rows = [], []
    for number, line in enumerate(_read_lines(path), 1):
        parts = line.rstrip().split(" ")
        if number == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
            continue  # "<count> <dim>" header
        if not line.strip():
            continue
        if len(parts) != dim + 1:
            raise DataError(
                f"{path.name}, line {number}: expected a word and {dim} numbers. Received {len(parts) - 1} numbers."
            )
        try:
            rows.append(np.asarray(parts[1:], np.float32))
        except ValueError as error:
            raise DataError(f"{path.name}, line {number}: {error}") from error
        words.append(parts[0])
    if not words:
        raise DataError(f"{path.name} holds no word vectors.")
    return words, np.stack(rows)


def read_annotations(path: pathlib.Path, aspect: int) -> tuple[list[list[str]], np.ndarray, list[list]]:
    """``annotations.json`` -> (token lists, scores float32 [N, 5], spans of ``aspect`` per review)."""
    texts, scores, spans = [], [], []
    for number, line in enumerate(_read_lines(path), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            tokens, y, span = list(item["x"]), [float(v) for v in item["y"]], item[str(aspect)]
            span = [(int(s), int(e)) for s, e in span]
        except (ValueError, KeyError, TypeError) as error:
            raise DataError(
                f"{path.name}, line {number}: expected a JSON object with 'x', 'y' (5 scores) and span lists "
                f"'0'..'4' of [start, end) pairs: {error!r}"
            ) from error
        if len(y) != 5 or any(not 0 <= s <= e <= len(tokens) for s, e in span):
            raise DataError(f"{path.name}, line {number}: 5 scores and spans within the {len(tokens)} tokens expected.")
        texts.append(tokens)
        scores.append(y)
        spans.append(span)
    if not texts:
        raise DataError(f"{path.name} holds no annotated reviews.")
    return texts, np.asarray(scores, np.float32), spans


@dataclasses.dataclass
class BeerData:
    """One aspect's data. ``x_*``: int32 token ids ``[N, 350]`` front-padded with 0; ``y_*``: float32 ``[N]``
    scores of the aspect; ``scores_*``: float32 ``[N, 5]`` all five; ``rationale``: float32 ``[M, 350]`` 1 on the
    annotated tokens of the aspect (annotation set, aligned with ``x_annotations``); ``embeddings``: float32
    ``[V, 200]`` with ``V = len(vocabulary)`` (row 0 padding, row 1 unknown: zeros)."""

    aspect: int
    vocabulary: list
    embeddings: np.ndarray
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    x_annotations: np.ndarray
    y_annotations: np.ndarray
    rationale: np.ndarray
    scores_train: np.ndarray | None = None
    scores_heldout: np.ndarray | None = None


def _check_aspect(aspect) -> int:
    if isinstance(aspect, bool) or not isinstance(aspect, int) or not 0 <= aspect <= 4:
        raise ValueError(f"`aspect` must be an integer in 0..4 ({ASPECTS}). Received: aspect={aspect!r}")
    return aspect


def read_folder(
    path: str | os.PathLike, aspect: int = 1, seed: int = 0, max_len: int = MAX_LEN, vocab_size: int | None = None
) -> BeerData:
    """Reads a folder in the published format (module docstring).

    Args:
        path: The folder.
        aspect: 0..4 (1 = aroma, the paper's).
        seed: Seed of the 50/50 validation/test split of the held-out file.
        max_len: Tokens per review after front padding/truncation.
        vocab_size: If given, the expected size of the vocabulary (words of the embeddings file + 2); a mismatch
            (e.g. a model trained on other embeddings) is a :class:`DataError`.

    Raises:
        DataError: a file is missing, malformed, or the vocabulary size does not match.
    """
    aspect = _check_aspect(aspect)
    folder = pathlib.Path(path).expanduser()
    if not folder.is_dir():
        raise DataError(f"BeerAdvocate folder not found. Received: path={str(folder)!r}")
    words, vectors = read_embeddings(_find(folder, EMBEDDINGS_FILE))
    vocabulary = ["<pad>", "<unk>", *words]
    if len(set(vocabulary)) != len(vocabulary):
        raise DataError(f"{EMBEDDINGS_FILE}: words must be unique (and not '<pad>' / '<unk>').")
    embeddings = np.concatenate([np.zeros([2, vectors.shape[1]], np.float32), vectors])
    if vocab_size is not None and vocab_size != len(vocabulary):
        raise DataError(
            f"Vocabulary/embedding size mismatch: expected {vocab_size} rows, the embeddings file gives "
            f"{len(vocabulary)} (its {len(words)} words + padding + unknown)."
        )
    index = {w: i for i, w in enumerate(vocabulary)}

    def ids(texts):
        return front_pad([[index.get(t, UNK) for t in text] for text in texts], max_len)

    s_train, t_train = read_reviews(_find(folder, train_file(aspect, "train")))
    s_held, t_held = read_reviews(_find(folder, train_file(aspect, "heldout")))
    if len(t_held) < 2:
        raise DataError(f"{train_file(aspect, 'heldout')}: at least 2 reviews are needed for the val/test split.")
    x_held = ids(t_held)
    order = np.random.default_rng(seed).permutation(len(t_held))
    val, test = order[: len(order) // 2], order[len(order) // 2 :]
    t_ann, s_ann, spans = read_annotations(_find(folder, ANNOTATIONS_FILE), aspect)
    rationale = np.zeros([len(t_ann), max_len], np.float32)
    for i, (tokens, span) in enumerate(zip(t_ann, spans)):
        offset = max_len - len(tokens)  # position of token j after front padding/truncation: j + offset
        for start, end in span:
            lo, hi = max(start + offset, 0), min(end + offset, max_len)
            if hi > lo:
                rationale[i, lo:hi] = 1.0
    return BeerData(
        aspect=aspect,
        vocabulary=vocabulary,
        embeddings=embeddings,
        x_train=ids(t_train),
        y_train=s_train[:, aspect],
        x_val=x_held[val],
        y_val=s_held[val, aspect],
        x_test=x_held[test],
        y_test=s_held[test, aspect],
        x_annotations=ids(t_ann),
        y_annotations=s_ann[:, aspect],
        rationale=rationale,
        scores_train=s_train,
        scores_heldout=s_held,
    )


# ---------------------------------------------------------------------------------------------- generation
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
    :data:`GENERATOR_VERSION` or another exclusion list (so builds of older generators are regenerated).

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
        "generator": GENERATOR_VERSION,
        "excluded_words": excluded_fingerprint(),
    }

    def matches(record):
        return {key: value for key, value in record.items() if key != "files"} == params

    if not force and cache.build_state(target, _RECORD, matches, "The generated BeerAdvocate reviews") == "current":
        return target
    cache.report(
        f"BeerAdvocate (generated): writing {num_train} training, {num_heldout} held-out and {num_annotations} "
        f"annotated reviews into {str(target)!r} (word valences from the PyPI wheel {WHEEL_NAME}=={WHEEL_VERSION})."
    )
    lexicon = read_lexicon(root)
    rng = np.random.default_rng(seed)
    splits = {name: _generate(lexicon, n, rng) for name, n in (("train", num_train), ("heldout", num_heldout))}
    ann_scores, ann_texts, ann_spans = _generate(lexicon, num_annotations, rng)
    fillers = sorted({t for text in splits["train"][1] for t in text} - set(lexicon))
    vocabulary = sorted(lexicon) + fillers
    embedding_lines = _embedding_lines(lexicon, vocabulary, np.random.default_rng([seed, 1]))
    with cache.atomic_dir(target) as tmp:
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
        cache.write_record(tmp, _RECORD, params)  # with the files' sizes and sha256 digests
    return target


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


def make_dataset(x, y, batch_size: int, shuffle: bool = False, seed: int = 0):
    """``tf.data`` of ``(token_ids int32 [350], score float32 [1])`` batches.

    Args:
        x: int token ids ``[N, L]``.
        y: scores ``[N]`` (or ``[N, 1]``).
        batch_size: Batch size (the last batch may be smaller).
        shuffle: Reshuffle every epoch (seeded).
        seed: Shuffle seed.
    """
    import tensorflow as tf

    x = np.asarray(x, np.int32)
    y = np.asarray(y, np.float32).reshape(-1, 1)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"`x` must be [N, L] ids and `y` N scores. Received: {x.shape} and {y.shape}")
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        dataset = dataset.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
