"""The published BeerAdvocate format (Lei et al. 2016) and its reader :func:`read_folder`.

One folder: ``reviews.aspect{A}.{train,heldout}.txt`` (``"s0 .. s4\\t<text>"`` lines), the 200-d word vectors
``review+wiki.filtered.200.txt`` (word2vec text format) and ``annotations.json`` (token lists, scores and the
rationale spans per aspect); ``.gz`` copies are read too. Every reader's error names the file and the line, what
was expected and what was received.

Example:
>>> front_pad([[5, 6, 7]], 5).tolist()
[[0, 0, 5, 6, 7]]
>>> train_file(1, "heldout")
'reviews.aspect1.heldout.txt'
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import pathlib

import numpy as np

from identity_tf.datasets.cache import DataError

ASPECTS = ("appearance", "aroma", "palate", "taste", "overall")
MAX_LEN = 350
EMBED_DIM = 200
PAD, UNK = 0, 1
EMBEDDINGS_FILE = "review+wiki.filtered.200.txt"
ANNOTATIONS_FILE = "annotations.json"


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


__all__ = [
    "ANNOTATIONS_FILE",
    "ASPECTS",
    "BeerData",
    "EMBEDDINGS_FILE",
    "EMBED_DIM",
    "MAX_LEN",
    "PAD",
    "UNK",
    "front_pad",
    "read_annotations",
    "read_embeddings",
    "read_folder",
    "read_reviews",
    "train_file",
]
