"""The offline build of the icon retrieval set: icon themes -> one folder of arrays, built once and checked.

:func:`build` reads the nine theme packages (:data:`identity_tf.datasets.retrieval.sources.THEMES`), draws every
icon name each theme has at ``image_size x image_size`` (PNG decoded with Pillow, SVG rasterised with ``resvg-py``;
alpha composited over white, padded to a square, antialiased resize), keeps each drawing of a theme under one name (a theme's
aliases draw several names with one file: :func:`unique_drawings`), keeps the names that at least
``min_instances`` themes draw, and splits those classes half/half (seeded) into training and test classes, as CUB's
retrieval split does. The folder is written atomically with its manifest (:func:`identity_tf.datasets.protocol.ensure_built`).

Example:
>>> transparent = np.zeros((2, 4, 4), np.uint8)  # [H, W, RGBA], fully transparent
>>> square_rgb(transparent, 2).tolist()  # over white, padded to 4 x 4, resized to 2 x 2
[[[255, 255, 255], [255, 255, 255]], [[255, 255, 255], [255, 255, 255]]]
"""

from __future__ import annotations

import hashlib
import io
import json
import pathlib
import re

import numpy as np

from identity_tf.datasets import cache, protocol
from identity_tf.datasets.cache import DataError
from identity_tf.datasets.retrieval import sources

NAME = "retrieval"
RECORD = "provenance.json"
FORMAT_VERSION = 2  # 2: a drawing under one name per theme
FILES = ("images.npy", "labels.npy", "themes.npy", "classes.json")


def dataset_dir(image_size: int, data_dir=None) -> pathlib.Path:
    """``<data_dir>/retrieval/icons_<image_size>/``."""
    return pathlib.Path(cache.data_dir(data_dir)) / NAME / f"icons_{image_size}"


def square_rgb(rgba: np.ndarray, size: int) -> np.ndarray:
    """``[H, W, 4]`` (or ``[H, W, 3]``) uint8 -> ``[size, size, 3]`` uint8: over white, padded square, resized."""
    from PIL import Image

    rgba = np.asarray(rgba, np.float32)
    if rgba.shape[-1] == 4:
        alpha = rgba[..., 3:] / 255.0
        rgb = rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)
    else:
        rgb = rgba[..., :3]
    height, width = rgb.shape[:2]
    side = max(height, width)
    canvas = np.full((side, side, 3), 255.0, np.float32)
    top, left = (side - height) // 2, (side - width) // 2
    canvas[top : top + height, left : left + width] = rgb
    image = Image.fromarray(np.clip(np.rint(canvas), 0, 255).astype(np.uint8))
    if side != size:
        image = image.resize((size, size), Image.Resampling.LANCZOS if side > size else Image.Resampling.BICUBIC)
    return np.asarray(image, np.uint8)


_PT_SIZE = re.compile(r'(\s(?:width|height)=")([0-9.]+)pt"')


def _render_svg(text: str, size: int) -> bytes:
    """PNG bytes of an SVG at ``size x size`` (resvg). Sodipodi-era files (Gartoon) give their size in ``pt`` at
    90 dpi, which resvg refuses ("invalid size"): they are read as ``1 pt = 1.25 px``, as Sodipodi drew them."""
    import resvg_py

    try:
        return bytes(resvg_py.svg_to_bytes(svg_string=text, width=size, height=size))
    except ValueError:
        fixed = _PT_SIZE.sub(lambda m: f'{m.group(1)}{float(m.group(2)) * 1.25:g}"', text, count=2)
        return bytes(resvg_py.svg_to_bytes(svg_string=fixed, width=size, height=size))


def draw(extension: str, data: bytes, size: int) -> np.ndarray | None:
    """One icon file -> ``[size, size, 3]`` uint8 (None if it cannot be decoded)."""
    from PIL import Image

    try:
        if extension == ".svg":
            image = Image.open(io.BytesIO(_render_svg(data.decode("utf-8"), size)))
        else:
            image = Image.open(io.BytesIO(data))
        return square_rgb(np.asarray(image.convert("RGBA")), size)
    except Exception:  # a broken or unsupported drawing: that instance is left out
        return None


def unique_drawings(icons: list[dict]) -> list[dict]:
    """Keeps each drawing of a theme under one icon name only.

    Themes draw some names with the very same file (a symbolic-link alias such as ``gtk-copy`` -> ``edit-copy``, or a
    byte-identical copy); as instances of two classes, one drawing would be its own "wrong" neighbour. It stays with
    the name that the most themes draw (ties: the first name), the theme's other names of it lose that instance.
    (Merging aliases into one class instead chains through generic drawings into classes of 100+ names.)

    Example:
    >>> themes = [{"a": (".png", b"1"), "b": (".png", b"1")}, {"b": (".png", b"2")}]
    >>> [sorted(found) for found in unique_drawings(themes)]
    [['b'], ['b']]
    """
    counts: dict[str, int] = {}
    for found in icons:
        for name in found:
            counts[name] = counts.get(name, 0) + 1
    unique = []
    for found in icons:
        owner: dict[bytes, str] = {}
        for name in sorted(found, key=lambda name: (-counts[name], name)):
            extension, data = found[name]
            owner.setdefault(hashlib.sha256(extension.encode() + data).digest(), name)
        kept = set(owner.values())
        unique.append({name: value for name, value in found.items() if name in kept})
    return unique


def collect(themes, data_dir=None, image_size: int = 64, min_instances: int = 2, progress: bool = True):
    """``({name: [(theme index, image)]}, {package: copyright text})`` of the names that at least ``min_instances``
    themes draw, each drawing under one name (:func:`unique_drawings`); only those are decoded."""
    icons, copyrights = [], {}
    for theme in themes:
        files, links = sources.deb_members(sources.fetch_deb(theme, data_dir, verbose=progress))
        copyrights[theme.package] = sources.copyright_text(files, theme.package)
        found = sources.theme_icons(files, links, theme.folder, image_size)
        if not found:
            raise DataError(f"{theme.package}: no icons under usr/share/icons/{theme.folder}/ (wrong theme folder?)")
        icons.append(found)
    icons = unique_drawings(icons)
    counts: dict[str, int] = {}
    for found in icons:
        for name in found:
            counts[name] = counts.get(name, 0) + 1
    by_name: dict[str, list] = {}
    for index, found in enumerate(icons):
        for name, (extension, data) in sorted(found.items()):
            if counts[name] >= min_instances:
                image = draw(extension, data, image_size)
                if image is not None:
                    by_name.setdefault(name, []).append((index, image))
    return by_name, copyrights


def split_classes(num_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Half of the classes for training, the other half for testing (seeded permutation), each sorted.

    Example:
    >>> train, test = split_classes(5, seed=0)
    >>> len(train), len(test), sorted(np.concatenate([train, test]).tolist())
    (2, 3, [0, 1, 2, 3, 4])
    """
    order = np.random.default_rng(seed).permutation(num_classes)
    return np.sort(order[: num_classes // 2]), np.sort(order[num_classes // 2 :])


def build(
    data_dir=None,
    image_size: int = 64,
    seed: int = 0,
    min_instances: int = 5,
    themes=sources.THEMES,
    force: bool = False,
    progress: bool = True,
) -> pathlib.Path:
    """Builds the icon retrieval set into :func:`dataset_dir` once (rebuilt when a parameter differs).

    Args:
        data_dir: Data directory (downloads are kept in ``<data_dir>/downloads/``).
        image_size: Side of the square images.
        seed: Seed of the half/half class split.
        min_instances: A class (icon name) needs this many themes that draw it.
        themes: The :class:`~identity_tf.datasets.retrieval.sources.Theme` packages (default: the nine pinned).
        force: Rebuild even if the folder is current.
        progress: Report downloads.

    Returns:
        The folder.
    """
    for name, value, low in (("image_size", image_size, 8), ("min_instances", min_instances, 2)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"Argument `{name}` must be an integer >= {low}. Received: {name}={value!r}")
    themes = tuple(themes)
    if len(themes) < min_instances:
        raise ValueError(
            f"`themes` must hold at least min_instances={min_instances} themes. Received: {len(themes)} themes"
        )
    folder = dataset_dir(image_size, data_dir)
    manifest = protocol.Manifest(
        RECORD,
        params={
            "format_version": FORMAT_VERSION,
            "image_size": image_size,
            "seed": seed,
            "min_instances": min_instances,
            "sources": [{"package": t.package, "version": t.version, "sha256": t.sha256} for t in themes],
        },
        info={
            "description": "class = freedesktop icon name, instance = the same icon drawn by another theme; each drawing "
            "of a theme under one name only",
            "licences": {t.package: t.licence for t in themes},
            "licence_files": "copyright/<package>.txt (the packages' Debian copyright files)",
            "rasteriser": "resvg-py (SVG), Pillow (PNG); alpha over white, padded square, Lanczos resize",
        },
    )

    def builder(tmp: pathlib.Path) -> None:
        by_name, copyrights = collect(themes, data_dir, image_size, min_instances, progress)
        names = sorted(name for name, items in by_name.items() if len(items) >= min_instances)
        if len(names) < 2:
            raise DataError(f"Only {len(names)} icon names are drawn by >= {min_instances} themes; need 2 or more.")
        images, labels, theme_ids = [], [], []
        for label, name in enumerate(names):
            for theme_index, image in by_name[name]:
                images.append(image)
                labels.append(label)
                theme_ids.append(theme_index)
        train, test = split_classes(len(names), seed)
        cache.atomic_save_npy(tmp / "images.npy", np.stack(images))
        cache.atomic_save_npy(tmp / "labels.npy", np.asarray(labels, np.int32))
        cache.atomic_save_npy(tmp / "themes.npy", np.asarray(theme_ids, np.int16))
        classes = {
            "names": names,
            "train": train.tolist(),
            "test": test.tolist(),
            "themes": [t.folder for t in themes],
        }
        (tmp / "classes.json").write_text(json.dumps(classes, indent=1))
        (tmp / "copyright").mkdir()
        for package, text in copyrights.items():
            (tmp / "copyright" / f"{package}.txt").write_text(text)

    return protocol.ensure_built(folder, manifest, builder, what="icon retrieval set", progress=progress, force=force)


__all__ = ["FILES", "FORMAT_VERSION", "NAME", "RECORD", "build", "collect", "dataset_dir", "draw", "split_classes"]
