"""Image retrieval data (paper section 4.3, B.3): an offline icon set built from Debian icon themes, and CUB-200-2011.

**Offline default** (DESIGN.md section 7): nine icon themes of Debian 12 (Adwaita, Breeze, elementary-xfce, GNOME,
Gartoon, LXDE's nuoveXT2, MATE, Oxygen, Tango), fetched with ``apt-get download`` (never installed) and read as
archives. Class = freedesktop icon name (``edit-copy``, ``folder``, ...), instance = the same icon drawn by another
theme. A theme's aliases (one file under several names) count for one name only, so that no drawing is an instance
of two classes; with at least 5 themes per name: **300 classes, 1 987 images** (64 x 64 RGB, over white), split
half/half into 150 training and 150 test classes (seeded), as CUB's retrieval split is. (Counting every alias as
its own instance gives the 586 classes / 3 541 images of DESIGN.md, but then identical drawings sit in different
classes.) Built once into
``<data_dir>/retrieval/icons_<size>/`` (``images.npy``, ``labels.npy``, ``themes.npy``, ``classes.json``, the
themes' Debian copyright files under ``copyright/``, ``provenance.json`` with sources, licences and checksums).
Modules: :mod:`.sources` (pins, ``.deb`` reading, choice of drawing), :mod:`.building` (:func:`build`),
:mod:`.format` (:class:`RetrievalSet`, :func:`load_icons`, :func:`load_cub`), :mod:`.pipeline` (episodes).

**CUB-200-2011**: point the data directory at the official ``CUB_200_2011/`` folder (or its parent) and
:func:`load` reads it (:func:`load_cub`: classes 1-100 train, 101-200 test).

Example:
>>> from identity_tf.datasets import retrieval
>>> [theme.folder for theme in retrieval.THEMES][:3]
['Adwaita', 'breeze', 'elementary-xfce']
"""

from __future__ import annotations

from identity_tf.datasets.retrieval.building import FILES, RECORD, build, dataset_dir, split_classes
from identity_tf.datasets.retrieval.format import RetrievalSet, find_cub, load_cub, load_icons
from identity_tf.datasets.retrieval.pipeline import ClassTable, check_episode, make_dataset
from identity_tf.datasets.retrieval.sources import THEMES, Theme

SOURCES = ("auto", "icons", "cub")


def load(source: str = "auto", image_size: int = 64, data_dir=None, progress: bool = True) -> RetrievalSet:
    """The retrieval data of ``source``: ``"cub"`` (the CUB folder at ``data_dir``), ``"icons"`` (built on first
    use) or ``"auto"`` (CUB when ``data_dir`` holds it, else the icons)."""
    if source not in SOURCES:
        raise ValueError(f"`data.source` must be one of {SOURCES}. Received: source={source!r}")
    if source == "cub" or (source == "auto" and find_cub(data_dir) is not None):
        return load_cub(data_dir, image_size=image_size)
    build(data_dir, image_size=image_size, progress=progress)
    return load_icons(image_size, data_dir)


__all__ = [
    "FILES",
    "RECORD",
    "SOURCES",
    "THEMES",
    "ClassTable",
    "RetrievalSet",
    "Theme",
    "build",
    "check_episode",
    "dataset_dir",
    "find_cub",
    "load",
    "load_cub",
    "load_icons",
    "make_dataset",
    "split_classes",
]
