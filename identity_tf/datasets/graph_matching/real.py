"""Loaders of the published keypoint-matching data sets, read as they are when a user places them.

**Pascal VOC with the Berkeley keypoints** (Bourdev & Malik 2009; the BB-GM / PCA-GM setup), in
``<data_dir>/graph_matching/PascalVOC/``::

    annotations/<class>/<image>_<object>.xml   one Berkeley annotation per object: <image>, <visible_bounds
                                               xmin ymin width height>, <keypoints><keypoint name x y/>...
    VOC2011/JPEGImages/<image>.jpg             the VOC 2011 images
    voc2011_pairs.npz                          optional split file (PCA-GM's): "train" and "test", one list of
                                               annotation files (``<class>/<file>.xml``) per class

Each object is cropped to its visible bounds and resized to ``image_size`` (bicubic, as PCA-GM), its keypoints
scaled with it; a class's keypoint ids are its sorted keypoint names. Without the split file, every 5th object
of a class (sorted by file name) is a test object. Validation objects are every 10th training object. Pairs are
drawn within each class with a seeded generator (``pairs`` per class per split), keeping the pairs with at least
3 keypoints visible in both objects: BB-GM's intersection filtering (only keypoints visible in both images are
matched). BB-GM's additional filter of truncated / occluded / difficult objects (from ``VOC2011/Annotations``)
is not applied.

**SPair-71k** (Min et al. 2019), in ``<data_dir>/graph_matching/SPair-71k/``::

    PairAnnotation/{trn,val,test}/*.json       one pair each: src_imname, trg_imname, category, src_bndbox,
                                               trg_bndbox, kps_ids, src_kps, trg_kps
    JPEGImages/<category>/<imname>             the images

Each image is cropped to the pair's bounding box and resized; the keypoint ids are SPair's per-category ids, so
a pair's common keypoints are its annotated ones. The published splits are used (trn -> train).

Example:
>>> sorted(VOC_REQUIRED), sorted(SPAIR_REQUIRED)
([['VOC2011', 'JPEGImages'], ['annotations']], [['JPEGImages'], ['PairAnnotation']])
"""

from __future__ import annotations

import json
import pathlib
import xml.etree.ElementTree as ET

import numpy as np

from identity_tf.datasets.cache import DataError
from identity_tf.datasets.graph_matching.format import KeypointImages

VOC_FOLDER, SPAIR_FOLDER = "PascalVOC", "SPair-71k"
VOC_REQUIRED = (["annotations"], ["VOC2011", "JPEGImages"])
SPAIR_REQUIRED = (["PairAnnotation"], ["JPEGImages"])
SPAIR_SPLITS = {"train": "trn", "val": "val", "test": "test"}


def _crop(path: pathlib.Path, box, size: int) -> np.ndarray:
    """The ``box = (xmin, ymin, xmax, ymax)`` of an image file, resized to ``size x size`` (bicubic), uint8 RGB."""
    from PIL import Image

    if not path.is_file():
        raise DataError(f"Missing image {str(path)!r}.")
    with Image.open(path) as image:
        crop = image.convert("RGB").resize((size, size), resample=Image.BICUBIC, box=tuple(float(v) for v in box))
        return np.asarray(crop, np.uint8)


def _scale(points, box, size: int) -> np.ndarray:
    """Pixel coordinates ``[n, 2]`` in the resized crop of ``box``."""
    points = np.asarray(points, np.float64).reshape(-1, 2)
    x0, y0, x1, y1 = (float(v) for v in box)
    return (points - [x0, y0]) * [size / max(x1 - x0, 1e-9), size / max(y1 - y0, 1e-9)]


def _inside(points, size: int) -> np.ndarray:
    return np.all((points >= 0) & (points <= size - 1), axis=1)


def _sample_pairs(visible: np.ndarray, classes: np.ndarray, count: int, rng) -> np.ndarray:
    """``count`` pairs per class of distinct images with >= 3 common visible keypoints (fewer if not found)."""
    pairs = []
    for c in np.unique(classes):
        members = np.flatnonzero(classes == c)
        if len(members) < 2:
            continue
        found = 0
        for _ in range(50 * count):
            s, t = rng.choice(members, size=2, replace=False)
            if (visible[s] & visible[t]).sum() >= 3:
                pairs.append((s, t))
                found += 1
                if found == count:
                    break
    return np.array(pairs, np.int32).reshape(-1, 2)


# ---------------------------------------------------------------------------------------------------- VOC
def parse_berkeley(path: pathlib.Path) -> dict:
    """One Berkeley annotation: ``{"image", "bounds": (xmin, ymin, xmax, ymax), "keypoints": {name: (x, y)}}``."""
    try:
        root = ET.parse(path).getroot()
        bounds = root.find("./visible_bounds").attrib
        xmin, ymin = float(bounds["xmin"]), float(bounds["ymin"])
        box = (xmin, ymin, xmin + float(bounds["width"]), ymin + float(bounds["height"]))
        keypoints = {
            k.attrib["name"]: (float(k.attrib["x"]), float(k.attrib["y"])) for k in root.findall("./keypoints/keypoint")
        }
        return {"image": root.find("./image").text.strip(), "bounds": box, "keypoints": keypoints}
    except (ET.ParseError, AttributeError, KeyError, ValueError) as error:
        raise DataError(f"{str(path)!r} is not a Berkeley keypoint annotation: {error!r}") from None


def _voc_split_lists(root: pathlib.Path, classes: list[str]) -> dict[str, list[str]]:
    """``{"train", "val", "test"}`` -> annotation files ``<class>/<file>.xml`` (see the module)."""
    split_file = root / "voc2011_pairs.npz"
    if split_file.is_file():
        saved = np.load(split_file, allow_pickle=True)
        lists = {}
        for split in ("train", "test"):
            lists[split] = []
            for c, names in zip(classes, saved[split]):
                lists[split] += [n if "/" in str(n) else f"{c}/{n}" for n in map(str, names)]
    else:
        lists = {"train": [], "test": []}
        for c in classes:
            files = sorted(p.name for p in (root / "annotations" / c).glob("*.xml"))
            lists["test"] += [f"{c}/{f}" for i, f in enumerate(files) if i % 5 == 4]
            lists["train"] += [f"{c}/{f}" for i, f in enumerate(files) if i % 5 != 4]
    train = lists["train"]
    lists["val"] = train[9::10]
    lists["train"] = [f for i, f in enumerate(train) if i % 10 != 9]
    return lists


def load_voc(root, image_size: int, pairs: dict[str, int], seed: int) -> dict[str, KeypointImages]:
    """The train / val / test splits of Pascal VOC + Berkeley keypoints under ``root`` (see the module)."""
    root = pathlib.Path(root)
    check_layout(root, VOC_REQUIRED, "Pascal VOC (Berkeley keypoints)")
    classes = sorted(p.name for p in (root / "annotations").iterdir() if p.is_dir())
    if not classes:
        raise DataError(f"{str(root / 'annotations')!r} has no class folders.")
    names = {}
    for c in classes:
        found = set()
        for path in sorted((root / "annotations" / c).glob("*.xml")):
            found |= set(parse_berkeley(path)["keypoints"])
        names[c] = sorted(found)
    width = max(len(v) for v in names.values())
    out = {}
    for index, (split, files) in enumerate(_voc_split_lists(root, classes).items()):
        images, points, labels = [], [], []
        for file in files:
            c = file.split("/")[0]
            record = parse_berkeley(root / "annotations" / file)
            images.append(
                _crop(root / "VOC2011" / "JPEGImages" / f"{record['image']}.jpg", record["bounds"], image_size)
            )
            p = np.full((width, 2), np.nan)
            for name, xy in record["keypoints"].items():
                scaled = _scale(xy, record["bounds"], image_size)
                if _inside(scaled, image_size)[0]:
                    p[names[c].index(name)] = scaled[0]
            points.append(p)
            labels.append(classes.index(c))
        points = np.array(points, np.float32).reshape(-1, width, 2)
        labels = np.array(labels, np.int32)
        rng = np.random.default_rng([seed, index])
        chosen = _sample_pairs(np.isfinite(points[..., 0]), labels, pairs[split], rng)
        out[split] = KeypointImages(
            images=np.array(images, np.uint8).reshape(-1, image_size, image_size, 3),
            points=points,
            outliers=np.zeros((len(points), 0, 2), np.float32),
            classes=labels,
            pairs=chosen,
            class_names=classes,
        )
    return out


# -------------------------------------------------------------------------------------------------- SPair
def load_spair(root, image_size: int, max_pairs: dict[str, int | None] | None = None) -> dict[str, KeypointImages]:
    """The train / val / test splits of SPair-71k under ``root`` (see the module); the first ``max_pairs[split]``
    pairs (sorted by file name) only, when given (the images of the others are not read)."""
    root = pathlib.Path(root)
    check_layout(root, SPAIR_REQUIRED, "SPair-71k")
    max_pairs = max_pairs or {}
    records = {}
    for split, folder in SPAIR_SPLITS.items():
        files = sorted((root / "PairAnnotation" / folder).glob("*.json"))[: max_pairs.get(split)]
        if not files:
            raise DataError(f"SPair-71k: no pair annotations in {str(root / 'PairAnnotation' / folder)!r}.")
        records[split] = [json.loads(f.read_text()) for f in files]
    try:
        classes = sorted({r["category"] for rs in records.values() for r in rs})
        width = 1 + max(int(i) for rs in records.values() for r in rs for i in r["kps_ids"])
    except (KeyError, ValueError, TypeError) as error:
        raise DataError(f"SPair-71k pair annotations lack a field or hold a bad id: {error!r}") from None
    out = {}
    for split, rs in records.items():
        entries: dict[tuple, int] = {}
        images, points, labels, pairs = [], [], [], []
        for r in rs:
            pair = []
            for side in ("src", "trg"):
                box = tuple(float(v) for v in r[f"{side}_bndbox"])
                key = (r[f"{side}_imname"], box)
                if key not in entries:
                    entries[key] = len(images)
                    images.append(_crop(root / "JPEGImages" / r["category"] / r[f"{side}_imname"], box, image_size))
                    points.append(np.full((width, 2), np.nan))
                    labels.append(classes.index(r["category"]))
                entry = entries[key]
                scaled = _scale(r[f"{side}_kps"], box, image_size)
                for kp_id, xy, ok in zip(r["kps_ids"], scaled, _inside(scaled, image_size)):
                    if ok:
                        points[entry][int(kp_id)] = xy
                pair.append(entry)
            pairs.append(pair)
        out[split] = KeypointImages(
            images=np.array(images, np.uint8).reshape(-1, image_size, image_size, 3),
            points=np.array(points, np.float32).reshape(-1, width, 2),
            outliers=np.zeros((len(images), 0, 2), np.float32),
            classes=np.array(labels, np.int32),
            pairs=np.array(pairs, np.int32).reshape(-1, 2),
            class_names=classes,
        )
    return out


def check_layout(root: pathlib.Path, required, what: str) -> None:
    """A DataError naming the first missing folder of ``required`` under ``root``."""
    for parts in required:
        folder = root.joinpath(*parts)
        if not folder.is_dir():
            raise DataError(f"{what}: missing folder {str(folder)!r} (see identity_tf.datasets.graph_matching.real).")


def detect(data_root: pathlib.Path) -> str | None:
    """ "voc" or "spair" when ``<data_root>/graph_matching/`` holds that data set's folder, else None."""
    base = pathlib.Path(data_root) / "graph_matching"
    if (base / VOC_FOLDER / "annotations").is_dir():
        return "voc"
    if (base / SPAIR_FOLDER / "PairAnnotation").is_dir():
        return "spair"
    return None


__all__ = ["SPAIR_FOLDER", "VOC_FOLDER", "check_layout", "detect", "load_spair", "load_voc", "parse_berkeley"]
