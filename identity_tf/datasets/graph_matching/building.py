"""The offline graph-matching data: keypoint pairs from scikit-image's sample photos, built once with a manifest.

Sources: the sample images inside the PyPI wheel ``scikit-image==0.26.0`` (``skimage/data/``), fetched with
``pip download --no-deps --only-binary=:all:`` into ``<data_dir>/downloads/`` and read as a zip, never installed.
The wheel is platform-specific, so each image *file* is pinned by its sha256 (:data:`SOURCES`), not the wheel.

**Classes** (:data:`CLASS_IMAGES`): one per source photo. The photo is centre-cropped to a square and resized
to ``image_size``; its keypoints are its strongest Harris corners (found at 256 px, at least 1/12 of the side
apart, away from the border; between ``min_keypoints`` and ``max_keypoints`` per class, drawn per class), the
"semantic" keypoints every instance of the class shares. **Instances**: random warps of the photo
(:class:`~identity_tf.datasets.graph_matching.geometry.Warp`: rotation up to 20 degrees, per-axis scale
0.85-1.15, shear 0.1, shift 6 %, a smooth sinusoidal displacement up to 2 % of the side), a random gain and
bias of the intensities; the keypoints move with the warp and get Gaussian jitter (``jitter`` x side); those that
leave the image are not visible; every instance has ``num_outliers`` outlier points at random positions.
Train, val and test instances are different warps (held-out warps for testing); the pairs of a split are drawn
within each class among its instances, with at least 3 keypoints visible in both images. At assembly
(:func:`~identity_tf.datasets.graph_matching.format.assemble`) the target keypoints (the common ones plus the
target's outliers) are shuffled; the permutation is the label.

**Stereo** (split ``stereo``, class ``stereo_motorcycle``): scikit-image's real stereo pair (Middlebury 2014
"Motorcycle", reduced) with its ground-truth disparity. Keypoints are Harris corners of the left view with a
finite disparity; their true match in the right view is ``(x - d(x, y), y)``. Each pair is a square window of
the left view and the same rows of the right view (shifted by the median disparity), both resized to
``image_size``, with up to ``stereo_keypoints`` keypoints whose match lies in the right window. A real
correspondence evaluation set: never trained on.

Example:
>>> manifest = _manifest(64, {"train": 2, "val": 1, "test": 1}, {"train": 3, "val": 1, "test": 1}, 2, 0.005, 2, 0)
>>> manifest.name, manifest.params["image_size"], sorted(manifest.params["sources"]["files"])[:2]
('build.json', 64, ['astronaut.png', 'camera.png'])
"""

from __future__ import annotations

import io
import json
import os
import pathlib
import sys
import zipfile

import numpy as np

from identity_tf.datasets import cache, protocol
from identity_tf.datasets.cache import DataError
from identity_tf.datasets.graph_matching import format as fmt
from identity_tf.datasets.graph_matching.geometry import Warp, harris_corners, resize

#: Version of the generator, recorded in the manifest; bump it whenever generated files change.
GENERATOR_VERSION = 1
RECORD = "build.json"
WHEEL = ("scikit-image", "0.26.0")
#: sha256 of each file read from the wheel's ``skimage/data/``.
SOURCES = {
    "astronaut.png": "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
    "camera.png": "b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a",
    "chelsea.png": "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb",
    "coffee.png": "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7",
    "coins.png": "f8d773fc9cfa6f4d8e5942dc34d0a0788fcaed2a4fefbbed0aef5398d7ef4cba",
    "hubble_deep_field.jpg": "3a19c5dd8a927a9334bb1229a6d63711b1c0c767fb27e2286e7c84a3e2c2f5f4",
    "ihc.png": "f8dd1aa387ddd1f49d8ad13b50921b237df8e9b262606d258770687b0ef93cef",
    "rocket.jpg": "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c",
    "motorcycle_left.png": "db18e9c4157617403c3537a6ba355dfeafe9a7eabb6b9b94cb33f6525dd49179",
    "motorcycle_right.png": "5fc913ae870e42a4b662314bc904d1786bcad8e2f0b9b67dba5a229406357797",
    "motorcycle_disp.npz": "2e49c8cebff3fa20359a0cc6880c82e1c03bbb106da81a177218281bc2f113d7",
}
CLASS_IMAGES = (
    "astronaut.png",
    "camera.png",
    "chelsea.png",
    "coffee.png",
    "coins.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "rocket.jpg",
)
SPLITS = ("train", "val", "test")
STEREO = "stereo"
_DETECT_SIZE = 256  # keypoints are found at this size, then scaled: the same keypoints at every image_size
_STEREO_WINDOW = 320  # side of a stereo window in the 500 x 741 views


# ----------------------------------------------------------------------------------------------- sources
def fetch_wheel(root: str | os.PathLike, verbose: bool = True) -> pathlib.Path:
    """The ``scikit-image==0.26.0`` wheel in ``<root>/downloads/`` (downloaded with pip when absent)."""
    folder = pathlib.Path(root) / "downloads"
    folder.mkdir(parents=True, exist_ok=True)
    name, version = WHEEL
    found = sorted(folder.glob(f"scikit_image-{version}-*.whl"))
    if found:
        return found[0]
    cache.report(f"Downloading {name}=={version} with `pip download --no-deps` into {str(folder)!r}.", verbose)
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--quiet", f"{name}=={version}", "-d", ".",
    ]  # fmt: skip
    with cache._scratch_dir(folder, "tmp", "pip") as tmp:
        cache._run(command, f"Python wheel {name}=={version}", cwd=tmp)
        wheels = sorted(tmp.glob("*.whl"))
        if len(wheels) != 1:
            raise DataError(f"Downloading {name}=={version}: expected one wheel. Received: {[p.name for p in wheels]}")
        os.replace(wheels[0], folder / wheels[0].name)
        return folder / wheels[0].name


def read_sources(wheel: str | os.PathLike) -> dict[str, bytes]:
    """The files of :data:`SOURCES` read from the wheel, each checked against its pinned sha256."""
    import hashlib

    out = {}
    with zipfile.ZipFile(wheel) as archive:
        for name, sha256 in SOURCES.items():
            try:
                data = archive.read(f"skimage/data/{name}")
            except KeyError:
                raise DataError(f"{str(wheel)!r} has no skimage/data/{name}.") from None
            actual = hashlib.sha256(data).hexdigest()
            if actual != sha256:
                raise DataError(f"skimage/data/{name} in {str(wheel)!r}: expected sha256 {sha256}, received {actual}.")
            out[name] = data
    return out


def decode(data: bytes) -> np.ndarray:
    """An image file's bytes as float64 RGB ``[H, W, 3]`` in [0, 1]."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"), np.float64) / 255.0


def canonical(image: np.ndarray, size: int) -> np.ndarray:
    """The centre square of ``image`` resized to ``size x size``."""
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return resize(image[top : top + side, left : left + side], (size, size))


def _gray(image):
    return image @ np.array([0.299, 0.587, 0.114])


def class_keypoints(image: np.ndarray, size: int, num: int) -> np.ndarray:
    """The class's keypoints ``[<=num, 2]`` in ``size``-pixel coordinates (Harris corners found at 256 px)."""
    detect = canonical(image, _DETECT_SIZE)
    corners = harris_corners(_gray(detect), num, min_distance=_DETECT_SIZE // 12, border=_DETECT_SIZE // 10)
    return (corners + 0.5) * size / _DETECT_SIZE - 0.5


# ------------------------------------------------------------------------------------------------- build
def _manifest(image_size, instances, pairs, num_outliers, jitter, num_stereo, seed, keypoints=(10, 16), stereo_kp=14):
    params = {
        "dataset": "graph_matching_offline",
        "generator_version": GENERATOR_VERSION,
        "image_size": image_size,
        "instances_per_class": dict(instances),
        "pairs_per_class": dict(pairs),
        "num_outliers": num_outliers,
        "jitter": jitter,
        "keypoints_per_class": list(keypoints),
        "num_stereo": num_stereo,
        "stereo_keypoints": stereo_kp,
        "seed": seed,
        "sources": {"wheel": f"{WHEEL[0]}=={WHEEL[1]}", "files": dict(SOURCES)},
    }
    info = {
        "classes": [name.split(".")[0] for name in CLASS_IMAGES],
        "licence": "scikit-image sample images: see skimage/data in the wheel (public domain / CC0 / author "
        "permission, per image); Motorcycle stereo pair: Middlebury 2014 (Scharstein et al.)",
        "format": {
            "<split>_images.npy": "uint8 [N, S, S, 3]",
            "<split>_points.npy": "float32 [N, K, 2] (x, y) pixels, NaN = not visible",
            "<split>_outliers.npy": "float32 [N, O, 2] (x, y) pixels, NaN = none",
            "<split>_classes.npy": "int32 [N]",
            "<split>_pairs.npy": "int32 [P, 2] (source image, target image)",
        },
    }
    return protocol.Manifest(RECORD, params, info)


def folder_of(data_dir, image_size: int) -> pathlib.Path:
    """``<data_dir>/graph_matching/offline_<S>px``."""
    return cache.data_dir(data_dir) / "graph_matching" / f"offline_{image_size}px"


def build(
    data_dir=None,
    image_size: int = 256,
    instances: dict | None = None,
    pairs: dict | None = None,
    num_outliers: int = 2,
    jitter: float = 0.005,
    num_stereo: int = 20,
    seed: int = 0,
    progress: bool = True,
    force: bool = False,
) -> pathlib.Path:
    """Builds the offline data set once into ``<data_dir>/graph_matching/offline_<S>px`` (see the module).

    Args:
        data_dir: Data directory (None: ``$IDENTITY_TF_DATA_DIR`` or the user cache).
        image_size: Side S of the square images.
        instances: Warped instances per class per split (default ``{"train": 40, "val": 10, "test": 20}``).
        pairs: Pairs per class per split (default ``{"train": 250, "val": 25, "test": 100}``).
        num_outliers: Outlier points per image (in the target of a pair).
        jitter: Standard deviation of the keypoint jitter, in image sides.
        num_stereo: Pairs of the stereo evaluation split (0: none).
        seed: Seed of everything random.
        progress: Report the download and a rebuild.
        force: Rebuild even if the folder is current.

    Returns:
        The folder.
    """
    instances = {"train": 40, "val": 10, "test": 20, **(instances or {})}
    pairs = {"train": 250, "val": 25, "test": 100, **(pairs or {})}
    for label, counts in (("instances", instances), ("pairs", pairs)):
        if sorted(counts) != sorted(SPLITS) or any(
            isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in counts.values()
        ):
            raise ValueError(f"`{label}` must map {SPLITS} to positive integers. Received: {label}={counts}")
    if any(v < 2 for v in instances.values()):
        raise ValueError(f"`instances` needs at least 2 per split (a pair). Received: instances={instances}")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 16:
        raise ValueError(f"Argument `image_size` must be an integer >= 16. Received: image_size={image_size!r}")
    if not 0 <= jitter < 0.1:
        raise ValueError(f"Argument `jitter` must be in [0, 0.1) image sides. Received: jitter={jitter!r}")
    manifest = _manifest(image_size, instances, pairs, num_outliers, jitter, num_stereo, seed)
    folder = folder_of(data_dir, image_size)
    root = cache.data_dir(data_dir)

    def builder(tmp: pathlib.Path) -> None:
        sources = read_sources(fetch_wheel(root, verbose=progress))
        splits = generate(sources, image_size, instances, pairs, num_outliers, jitter, seed)
        if num_stereo:
            splits[STEREO] = generate_stereo(sources, image_size, num_stereo, seed)
        for name, split in splits.items():
            fmt.save_split(tmp, name, split)
        (tmp / fmt.CLASSES_FILE).write_text(json.dumps([name.split(".")[0] for name in CLASS_IMAGES]))
        (tmp / "stereo_classes.json").write_text(json.dumps(["stereo_motorcycle"]))

    return protocol.ensure_built(
        folder, manifest, builder, what="Graph matching (offline)", progress=progress, force=force
    )


def generate(sources, image_size, instances, pairs, num_outliers, jitter, seed, keypoints=(10, 16)):
    """The train / val / test :class:`KeypointImages` of the offline build (see the module)."""
    names = [name.split(".")[0] for name in CLASS_IMAGES]
    per_split = {s: {f: [] for f in ("images", "points", "outliers", "classes", "pairs")} for s in SPLITS}
    max_k = keypoints[1]
    for c, file in enumerate(CLASS_IMAGES):
        rng = np.random.default_rng([seed, c])
        photo = decode(sources[file])
        base = canonical(photo, image_size)
        kp = class_keypoints(photo, image_size, int(rng.integers(keypoints[0], keypoints[1] + 1)))
        for split in SPLITS:
            lists = per_split[split]
            first = len(lists["images"])
            for _ in range(instances[split]):
                warp = Warp.random(rng, image_size)
                gain, bias = rng.uniform(0.8, 1.2), rng.uniform(-0.1, 0.1)
                image = np.clip(gain * warp.apply(base, image_size) + bias, 0.0, 1.0)
                moved = warp.forward(kp) + rng.normal(scale=jitter * image_size, size=kp.shape)
                inside = np.all((moved >= 1.0) & (moved <= image_size - 2.0), axis=1)
                points = np.full((max_k, 2), np.nan)
                points[: len(kp)][inside] = moved[inside]
                lists["images"].append(np.round(255 * image).astype(np.uint8))
                lists["points"].append(points)
                lists["outliers"].append(rng.uniform(1.0, image_size - 2.0, size=(num_outliers, 2)))
                lists["classes"].append(c)
            visible = np.isfinite(np.stack(lists["points"][first:])[..., 0])
            chosen = 0
            for _ in range(100 * pairs[split]):
                s, t = rng.choice(instances[split], size=2, replace=False)
                if (visible[s] & visible[t]).sum() >= 3:
                    lists["pairs"].append((first + s, first + t))
                    chosen += 1
                    if chosen == pairs[split]:
                        break
            if chosen < pairs[split]:
                raise DataError(f"Class {names[c]!r}: only {chosen} pairs with 3 common keypoints in {split}.")
    return {
        split: fmt.KeypointImages(
            images=np.stack(v["images"]),
            points=np.stack(v["points"]).astype(np.float32),
            outliers=np.stack(v["outliers"]).astype(np.float32).reshape(len(v["images"]), num_outliers, 2),
            classes=np.array(v["classes"], np.int32),
            pairs=np.array(v["pairs"], np.int32).reshape(-1, 2),
            class_names=names,
        )
        for split, v in per_split.items()
    }


def stereo_views(sources):
    """``(left, right, disparity)`` of the Motorcycle pair: float RGB ``[500, 741, 3]`` twice and ``[500, 741]``
    (inf where unknown); the match of left ``(x, y)`` is right ``(x - d, y)``."""
    left, right = decode(sources["motorcycle_left.png"]), decode(sources["motorcycle_right.png"])
    disparity = np.load(io.BytesIO(sources["motorcycle_disp.npz"]))["arr_0"].astype(np.float64)
    return left, right, disparity


def generate_stereo(sources, image_size: int, num_pairs: int, seed: int, num_keypoints: int = 14):
    """The ``stereo`` :class:`KeypointImages` (see the module): images ``2i`` (left) and ``2i + 1`` (right)."""
    left, right, disparity = stereo_views(sources)
    h, w = disparity.shape
    corners = harris_corners(_gray(left), 600, min_distance=8, border=8)
    d = disparity[corners[:, 1].astype(int), corners[:, 0].astype(int)]
    corners, d = corners[np.isfinite(d)], d[np.isfinite(d)]
    rng = np.random.default_rng([seed, 1000])
    L = _STEREO_WINDOW
    scale = image_size / L
    images, points = [], []
    while len(images) < 2 * num_pairs:
        x0, y0 = int(rng.integers(0, w - L + 1)), int(rng.integers(0, h - L + 1))
        inside = (corners[:, 0] >= x0 + 2) & (corners[:, 0] <= x0 + L - 3)
        inside &= (corners[:, 1] >= y0 + 2) & (corners[:, 1] <= y0 + L - 3)
        if inside.sum() < 3:
            continue
        shift = int(np.round(np.median(d[inside])))
        xr0 = min(max(x0 - shift, 0), w - L)
        match = corners[inside] - np.stack([d[inside], np.zeros(inside.sum())], axis=1)
        ok = (match[:, 0] >= xr0 + 2) & (match[:, 0] <= xr0 + L - 3)
        if ok.sum() < 3:
            continue
        pick = rng.permutation(np.flatnonzero(ok))[:num_keypoints]
        source = corners[inside][pick]
        target = match[pick]
        for view, origin, kp in ((left, (x0, y0), source), (right, (xr0, y0), target)):
            crop = view[origin[1] : origin[1] + L, origin[0] : origin[0] + L]
            images.append(np.round(255 * np.clip(resize(crop, (image_size, image_size)), 0, 1)).astype(np.uint8))
            p = np.full((num_keypoints, 2), np.nan)
            p[: len(kp)] = (kp - np.array(origin) + 0.5) * scale - 0.5
            points.append(p)
    n = len(images)
    return fmt.KeypointImages(
        images=np.stack(images),
        points=np.stack(points).astype(np.float32),
        outliers=np.zeros((n, 0, 2), np.float32),
        classes=np.zeros(n, np.int32),
        pairs=np.arange(n, dtype=np.int32).reshape(-1, 2),
        class_names=["stereo_motorcycle"],
    )


def load(data_dir=None, image_size: int = 256) -> dict[str, fmt.KeypointImages]:
    """The splits of a built offline folder (``train``, ``val``, ``test`` and, if built, ``stereo``), checked."""
    folder = folder_of(data_dir, image_size)
    record = cache.read_record(folder, RECORD) or {}
    names = [s for s in SPLITS] + ([STEREO] if record.get("num_stereo") else [])
    files = [f for s in names for f in fmt.split_files(s)] + [fmt.CLASSES_FILE]
    protocol.check_folder(folder, files, RECORD, "Graph matching (offline)", "Run `identity-tf data graph_matching`.")
    out = {split: fmt.load_split(folder, split) for split in SPLITS}
    if STEREO in names:
        split = fmt.load_split(folder, STEREO)
        out[STEREO] = fmt.KeypointImages(
            split.images, split.points, split.outliers, split.classes, split.pairs, ["stereo_motorcycle"]
        )
    return out


__all__ = [
    "CLASS_IMAGES",
    "GENERATOR_VERSION",
    "SOURCES",
    "STEREO",
    "build",
    "canonical",
    "class_keypoints",
    "decode",
    "fetch_wheel",
    "folder_of",
    "generate",
    "generate_stereo",
    "load",
    "read_sources",
    "stereo_views",
]
