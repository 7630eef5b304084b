"""BeerAdvocate loader and offline generator: format round trip, front padding/truncation, the 50/50 split,
rationale masks, DataError cases, the offensive-word filter of the generator and the rebuild of stale caches."""

import hashlib
import json
import os
import pathlib

import numpy as np
import pytest

from identity_tf.datasets import beer, cache
from identity_tf.datasets.cache import DataError


def write_folder(folder, reviews, heldout, annotations, words, aspects=(0, 1), dim=200):
    """A tiny folder in the published format."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in (("train", reviews), ("heldout", heldout)):
        lines = [" ".join(f"{s:.1f}" for s in scores) + "\t" + text for scores, text in rows]
        for aspect in aspects:
            (folder / beer.train_file(aspect, split)).write_text("\n".join(lines) + "\n")
    vectors = np.arange(len(words) * dim, dtype=np.float32).reshape(len(words), dim) / 1000
    (folder / beer.EMBEDDINGS_FILE).write_text(
        "\n".join(w + " " + " ".join(f"{v:.3f}" for v in row) for w, row in zip(words, vectors)) + "\n"
    )
    (folder / beer.ANNOTATIONS_FILE).write_text("\n".join(json.dumps(a) for a in annotations) + "\n")
    return folder, vectors


def spans(**by_aspect):
    return {str(a): by_aspect.get(f"a{a}", []) for a in range(5)}


@pytest.fixture
def folder(tmp_path):
    words = ["good", "bad", "aroma", "the", "."]
    reviews = [((0.1, 0.9, 0.5, 0.5, 0.5), "the aroma good ."), ((0.2, 0.3, 0.5, 0.5, 0.5), "bad unknownword")]
    heldout = [((0.0, i / 10, 0, 0, 0), "good " * (i + 1)) for i in range(7)]
    long = ["good"] * 360 + ["aroma", "bad"]
    annotations = [
        {"x": ["the", "aroma", "good", "."], "y": [0.1, 0.9, 0.5, 0.5, 0.5], **spans(a1=[[1, 3]], a0=[[0, 1]])},
        {"x": long, "y": [0.1, 0.2, 0.5, 0.5, 0.5], **spans(a1=[[0, 2], [360, 362]])},
    ]
    return write_folder(tmp_path / "beer", reviews, heldout, annotations, words)


def test_read_folder_ids_padding_split_and_rationale(folder):
    path, vectors = folder
    data = beer.read_folder(path, aspect=1, seed=3)
    assert data.vocabulary[:2] == ["<pad>", "<unk>"] and data.vocabulary[2:] == ["good", "bad", "aroma", "the", "."]
    assert data.embeddings.shape == (7, 200) and not data.embeddings[:2].any()
    np.testing.assert_allclose(data.embeddings[2:], vectors, atol=1e-6)
    assert data.x_train.shape == (2, 350) and data.x_train.dtype == np.int32
    assert data.x_train[0, -4:].tolist() == [5, 4, 2, 6] and not data.x_train[0, :-4].any()  # front padding
    assert data.x_train[1, -2:].tolist() == [3, beer.UNK]
    np.testing.assert_allclose(data.y_train, [0.9, 0.3])
    assert len(data.x_val) == 3 and len(data.x_test) == 4  # 7 held-out reviews, 50/50 (val = n // 2)
    lengths = sorted((x > 0).sum() for x in np.concatenate([data.x_val, data.x_test]))
    assert lengths == list(range(1, 8))  # a partition of the held-out set
    again = beer.read_folder(path, aspect=1, seed=3)
    np.testing.assert_array_equal(again.x_val, data.x_val)  # deterministic by seed
    # rationale: review 0 aroma span [1, 3) -> positions 347, 348 after front padding
    assert np.flatnonzero(data.rationale[0]).tolist() == [347, 348]
    # review 1: 362 tokens truncated at the front to the last 350; span [0, 2) falls off, [360, 362) -> 348, 349
    assert data.x_annotations[1, -2:].tolist() == [4, 3] and np.flatnonzero(data.rationale[1]).tolist() == [348, 349]
    assert beer.read_folder(path, aspect=0).rationale[0].nonzero()[0].tolist() == [346]


def test_front_pad_exact():
    out = beer.front_pad([list(range(1, 401)), [7], []])
    assert out.shape == (3, 350)
    assert out[0].tolist() == list(range(51, 401))  # truncation keeps the last 350
    assert out[1, -1] == 7 and not out[1, :-1].any() and not out[2].any()


def test_data_errors(folder, tmp_path):
    path, _ = folder
    with pytest.raises(DataError, match="not found"):
        beer.read_folder(tmp_path / "missing")
    with pytest.raises(DataError, match="size mismatch"):
        beer.read_folder(path, vocab_size=99)
    with pytest.raises(DataError, match="reviews.aspect2.train.txt"):
        beer.read_folder(path, aspect=2)
    with pytest.raises(ValueError, match="aspect"):
        beer.read_folder(path, aspect=5)
    (path / beer.train_file(1, "train")).write_text("0.1 0.2 0.3\tonly three scores\n")
    with pytest.raises(DataError, match="5 scores"):
        beer.read_folder(path)
    (path / beer.train_file(1, "train")).write_text("0.1 0.2 0.3 0.4 0.5\tfine\n")
    (path / beer.ANNOTATIONS_FILE).write_text('{"x": ["a"], "y": [0, 0, 0, 0, 0]}\n')
    with pytest.raises(DataError, match="annotations.json"):
        beer.read_folder(path)
    (path / beer.EMBEDDINGS_FILE).write_text("good 0.1 0.2\n")
    with pytest.raises(DataError, match="200 numbers"):
        beer.read_folder(path)


def data_dir_with_downloads(data_dir):
    downloads = pathlib.Path(cache.data_dir()) / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    os.symlink(downloads, data_dir / "downloads")  # reuse the verified wheel
    return data_dir


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    data_dir = data_dir_with_downloads(tmp_path_factory.mktemp("beer-data"))
    return data_dir, beer.build(data_dir, num_train=300, num_heldout=41, num_annotations=20, seed=1)


def test_build_round_trip(built):
    data_dir, path = built
    names = sorted(p.name for p in path.iterdir())
    for aspect in range(5):
        assert beer.train_file(aspect, "train") in names and beer.train_file(aspect, "heldout") in names
    lines = (path / beer.train_file(1, "train")).read_text().splitlines()
    assert len(lines) == 300
    head, text = lines[0].split("\t")
    assert len(head.split()) == 5 and len(text.split()) > 10
    data = beer.load(1, data_dir=data_dir, num_train=300, num_heldout=41, num_annotations=20, build_seed=1)
    assert data.x_train.shape == (300, 350) and (len(data.x_val), len(data.x_test)) == (20, 21)
    assert data.embeddings.shape == (len(data.vocabulary), 200)
    assert (data.x_train == beer.UNK).sum() == 0  # every generated word has a vector
    assert np.all((0 <= data.y_train) & (data.y_train <= 1))
    # the rationale is the aroma sentence: it holds exactly one aroma noun and no other aspect noun
    for ids, mask in zip(data.x_annotations, data.rationale):
        inside = {data.vocabulary[t] for t, m in zip(ids, mask) if m}
        assert len(inside & set(beer.ASPECT_NOUNS[1])) == 1
        assert not inside & {n for a in (0, 2, 3, 4) for n in beer.ASPECT_NOUNS[a]}
        assert mask.sum() >= 4 and mask[-1] in (0, 1)
    # the aroma score is a function of the aroma sentence's valence words (up to rounding noise)
    lexicon = beer.read_lexicon(data_dir)
    for ids, mask, score in zip(data.x_annotations, data.rationale, data.y_annotations):
        values = [lexicon[data.vocabulary[t]] for t, m in zip(ids, mask) if m and data.vocabulary[t] in lexicon]
        assert abs(np.clip(0.5 + np.mean(values) / 7, 0, 1) - score) <= 0.05 + 0.08
    # a second build with the same arguments is a no-op; different arguments rebuild
    stamp = (path / "build.json").stat().st_mtime_ns
    beer.build(data_dir, num_train=300, num_heldout=41, num_annotations=20, seed=1)
    assert (path / "build.json").stat().st_mtime_ns == stamp


def test_excluded_words_asset():
    digests = beer.excluded_digests()
    lines = [line for line in beer.EXCLUDED_WORDS_PATH.read_text().splitlines() if line and not line.startswith("#")]
    assert len(lines) == len(digests) > 100  # one well-formed, unique digest per line
    assert beer.word_digest("Bad") == beer.word_digest("bad") == hashlib.sha256(b"bad").hexdigest()
    ordinary = ("bad", "awful", "boring", "weak", "disappointing", "horrible", "terrible", "good", "great", "stout")
    assert not any(beer.is_excluded(w) for w in ordinary)


def test_read_lexicon_drops_exactly_the_excluded_words(built):
    data_dir, _ = built
    raw = beer.read_lexicon(data_dir, exclude=False)
    kept = beer.read_lexicon(data_dir)
    present = {w for w in raw if beer.word_digest(w) in beer.excluded_digests()}
    assert present and set(kept) == set(raw) - present and len(raw) - len(kept) == len(present)
    assert all(kept[w] == raw[w] for w in kept)
    # every committed digest is a word of the lexicon (no stale entries), and the docstring's counts are current
    assert len(present) == len(beer.excluded_digests())
    assert f"{len(present)} of the {len(raw)} candidate words are excluded; {len(kept)} remain" in beer.__doc__
    # the generator still has words for every target valence: >= 50 within 0.6, and both extremes are covered
    valence = np.array(sorted(kept.values()))
    for target in np.linspace(-3.5, 3.5, 71):
        assert np.sum(np.abs(valence - target) <= 0.6 + 1e-9) >= 50, target
    assert valence[0] <= -3.0 and valence[-1] >= 3.0


def test_build_uses_no_excluded_word(built):
    _, path = built
    excluded = beer.excluded_digests()
    tokens = set()
    for split in ("train", "heldout"):
        for line in (path / beer.train_file(1, split)).read_text().splitlines():
            tokens.update(line.split("\t")[1].split())
    for line in (path / beer.ANNOTATIONS_FILE).read_text().splitlines():
        tokens.update(json.loads(line)["x"])
    vocabulary = {line.split(" ", 1)[0] for line in (path / beer.EMBEDDINGS_FILE).read_text().splitlines()}
    assert len(tokens) > 100 and tokens <= vocabulary
    assert not {beer.word_digest(t) for t in vocabulary} & excluded


def test_build_regenerates_stale_cache(tmp_path, monkeypatch):
    data_dir = data_dir_with_downloads(tmp_path)
    kwargs = dict(num_train=3, num_heldout=2, num_annotations=1, seed=0)
    path = beer.build(data_dir, **kwargs)
    manifest = json.loads((path / "build.json").read_text())
    assert manifest["generator"] == beer.GENERATOR_VERSION
    assert manifest["excluded_words"] == beer.excluded_fingerprint()

    def stale(params):  # a folder written by another generator, marked by an extra file
        (path / "build.json").write_text(json.dumps(params))
        (path / "stale.txt").write_text("old")

    # the manifest of the first generator (before the word filter): no "generator" / "excluded_words" entries
    stale({k: v for k, v in manifest.items() if k not in ("generator", "excluded_words")})
    assert beer.build(data_dir, **kwargs) == path
    assert not (path / "stale.txt").exists() and json.loads((path / "build.json").read_text()) == manifest
    # another exclusion list
    stale({**manifest, "excluded_words": "0" * 16})
    beer.build(data_dir, **kwargs)
    assert not (path / "stale.txt").exists()
    # a current manifest is reused
    (path / "stale.txt").write_text("current")
    beer.build(data_dir, **kwargs)
    assert (path / "stale.txt").exists()
    # a newer generator version rebuilds
    monkeypatch.setattr(beer, "GENERATOR_VERSION", beer.GENERATOR_VERSION + 1)
    beer.build(data_dir, **kwargs)
    assert not (path / "stale.txt").exists()
    assert json.loads((path / "build.json").read_text())["generator"] == beer.GENERATOR_VERSION


def test_make_dataset():
    x = np.zeros([5, 350], np.int32)
    batch = next(iter(beer.make_dataset(x, np.arange(5) / 10, batch_size=4)))
    assert batch[0].shape == (4, 350) and batch[0].dtype.name == "int32"
    assert batch[1].shape == (4, 1) and batch[1].dtype.name == "float32"
    with pytest.raises(ValueError):
        beer.make_dataset(x, np.zeros(3), batch_size=2)


def test_corrupted_build_is_regenerated(tmp_path):
    data_dir = data_dir_with_downloads(tmp_path)
    kwargs = dict(num_train=5, num_heldout=2, num_annotations=1, seed=0)
    path = beer.build(data_dir, **kwargs)
    name = beer.train_file(1, "train")
    good = (path / name).read_bytes()
    lines = good.decode().splitlines()
    scores, text = lines[0].split("\t")
    lines[0] = scores.replace(scores[:3], "0.0" if scores[:3] != "0.0" else "1.0", 1) + "\t" + text  # a wrong score
    (path / name).write_text("\n".join(lines) + "\n")
    seed = kwargs.pop("seed")
    data = beer.load(aspect=1, data_dir=data_dir, build_seed=seed, **kwargs)
    assert (path / name).read_bytes() == good  # the damaged file was noticed and the folder regenerated
    assert data.y_train[0] == pytest.approx(float(good.decode().split()[1]))


@pytest.mark.parametrize("name", ["num_train", "num_heldout", "num_annotations"])
@pytest.mark.parametrize("value", [0, -1, 2.5, "10", None])
def test_build_rejects_bad_sizes(tmp_path, name, value):
    with pytest.raises(ValueError, match=f"`{name}` must be an integer >= [12]. Received: {name}={value!r}"):
        beer.build(tmp_path, **{name: value})
    assert not (tmp_path / beer.FOLDER).exists()
