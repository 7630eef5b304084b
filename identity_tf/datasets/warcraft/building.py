"""The offline Warcraft build: generated maps in the published format, written once with a manifest.

:func:`build` generates ``num_train`` / ``num_val`` / ``num_test`` maps (:mod:`.terrain`, seeded per chunk of
:data:`_CHUNK` maps, so a seed and the sizes give identical files), labels them with
``ShortestPath(neighbourhood=8)`` of the vertex weights, and writes ``<data_dir>/warcraft/<k>x<k>`` once,
atomically, with ``provenance.json`` (:func:`identity_tf.datasets.protocol.ensure_built`): the same parameters
(``spec``) and intact files return at once, others rebuild. A folder the user placed (the published data set,
no manifest) is checked and used as it is, never overwritten.

Example:
>>> manifest = _manifest(12, {"train": 4, "val": 2, "test": 2}, 0)
>>> manifest.name, manifest.params["spec"]["num_maps"], manifest.params["spec"]["generator_version"]
('provenance.json', {'train': 4, 'val': 2, 'test': 2}, 1)
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from identity_tf.datasets import protocol
from identity_tf.datasets.cache import report, sha256_file
from identity_tf.datasets.warcraft.format import FIELDS, FILES, RECORD, SPLITS, _size, _split_dir, load
from identity_tf.datasets.warcraft.terrain import generate_terrain, render_maps
from identity_tf.datasets.warcraft import tiles

#: Version of the map generator, recorded in the manifest; bump it whenever generated files change.
_GENERATOR_VERSION = 1
_CHUNK = 500  # maps generated (and solved) at a time; part of the seeding scheme, so fixed


class _PathSolver:
    """Batched, XLA-compiled ``ShortestPath(neighbourhood=8)`` at a fixed batch size (the last batch is padded)."""

    def __init__(self, batch: int):
        import tensorflow as tf

        from identity_tf.solvers.shortest_path import ShortestPath

        self.batch = batch
        self.fn = tf.function(ShortestPath(neighbourhood=8, validate_args=False).__call__, jit_compile=True)

    def __call__(self, weights: np.ndarray) -> np.ndarray:
        n = len(weights)
        padded = (
            np.concatenate([weights, np.repeat(weights[:1], self.batch - n, axis=0)]) if n < self.batch else weights
        )
        return self.fn(padded.astype(np.float32)).numpy()[:n].astype(np.uint8)


def _spec(size, counts, seed) -> dict:
    name, version, sha256 = tiles.ARCADE_WHEEL
    return {
        "dataset": "warcraft_shortest_path (synthetic layout, CC0 textures)",
        "generator_version": _GENERATOR_VERSION,
        "size": size,
        "seed": seed,
        "num_maps": counts,
        "terrain_costs": dict(zip(tiles.TERRAIN_NAMES, tiles.TERRAIN_COSTS)),
        "labels": "identity_tf.solvers.ShortestPath(neighbourhood=8) of vertex_weights, top-left to bottom-right",
        "atlas": {"file": "identity_tf/datasets/assets/warcraft_tiles.npz", "sha256": sha256_file(tiles.ATLAS_PATH)},
        "texture_source": {
            "wheel": f"{name}=={version}",
            "wheel_sha256": sha256,
            "files": {t: [tiles._IMAGES + f for f, *_ in tiles.TILE_SOURCES[t]] for t in tiles.TERRAIN_NAMES},
            "author": "Kenney (www.kenney.nl)",
            "licence": "CC0 1.0 Universal",
        },
    }


def _manifest(size, counts, seed) -> protocol.Manifest:
    """``provenance.json``: ``spec`` (compared, as in every release so far) and the file ``format`` (recorded)."""
    formats = {
        "maps": "uint8 (N, 8k, 8k, 3) RGB",
        "shortest_paths": "uint8 (N, k, k) 0/1",
        "vertex_weights": "float32 (N, k, k)",
    }
    return protocol.Manifest(RECORD, params={"spec": _spec(size, counts, seed)}, info={"format": formats})


def _complete(folder: pathlib.Path, counts: dict, size: int) -> bool:
    try:
        for split in SPLITS:
            shapes = {f: np.load(folder / f"{split}_{f}.npy", mmap_mode="r").shape for f in FIELDS}
            n = counts[split]
            if shapes != {"maps": (n, tiles.TILE * size, tiles.TILE * size, 3), "shortest_paths": (n, size, size),
                          "vertex_weights": (n, size, size)}:  # fmt: skip
                return False
    except (OSError, ValueError):
        return False
    return True


def _use_foreign(size: int, folder: pathlib.Path, progress: bool) -> pathlib.Path:
    """Checks a dataset that `build` did not write (no provenance.json) and returns its folder; never modifies it."""
    protocol.require_foreign_files(
        folder,
        FILES,
        RECORD,
        "Complete it with the published files, or move it away to build the offline dataset there.",
    )
    splits = load(size, data_dir=folder.parents[1], mmap=True)
    counts = {split: len(splits[split]) for split in SPLITS}
    report(
        f"Warcraft {size}x{size}: using the dataset found in {str(folder)!r} as it is ({counts} maps; no "
        "provenance.json, so it was not built here and the requested sizes and seed do not apply).",
        progress,
    )
    return folder


def _write(tmp: pathlib.Path, size: int, counts: dict, seed: int, atlas: np.ndarray, progress: bool) -> None:
    """Generates, labels and writes the nine files into ``tmp``, chunk by chunk (memory-mapped)."""
    bar = None
    if progress:
        import keras

        bar = keras.utils.Progbar(sum(counts.values()), unit_name="map")
    solver = _PathSolver(min(_CHUNK, max(counts.values())))
    done = 0
    for split_index, split in enumerate(SPLITS):
        n = counts[split]
        arrays = {
            "maps": np.lib.format.open_memmap(tmp / f"{split}_maps.npy", "w+", np.uint8, (n, tiles.TILE * size, tiles.TILE * size, 3)),
            "shortest_paths": np.lib.format.open_memmap(tmp / f"{split}_shortest_paths.npy", "w+", np.uint8, (n, size, size)),
            "vertex_weights": np.lib.format.open_memmap(tmp / f"{split}_vertex_weights.npy", "w+", np.float32, (n, size, size)),
        }  # fmt: skip
        for chunk, start in enumerate(range(0, n, _CHUNK)):
            m = min(_CHUNK, n - start)
            rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(size, split_index, chunk)))
            types = generate_terrain(rng, m, size)
            weights = np.asarray(tiles.TERRAIN_COSTS, np.float32)[types]
            arrays["maps"][start : start + m] = render_maps(rng, types, atlas)
            arrays["vertex_weights"][start : start + m] = weights
            arrays["shortest_paths"][start : start + m] = solver(weights)
            done += m
            if bar is not None:
                bar.update(done)
        for array in arrays.values():
            array.flush()
        del arrays


def build(
    size: int = 12,
    data_dir: str | os.PathLike | None = None,
    num_train: int = 10000,
    num_val: int = 1000,
    num_test: int = 1000,
    seed: int = 0,
    progress: bool = True,
) -> pathlib.Path:
    """Generates the offline Warcraft dataset of ``size x size`` maps in the published format.

    Skips when ``<data_dir>/warcraft/<k>x<k>`` is complete with a matching ``provenance.json``. A directory
    without ``provenance.json`` holds files this function did not write (e.g. the published dataset): it is
    checked with :func:`load` and used as it is (the sizes and the seed do not apply to it), and never
    overwritten; an incomplete one is an error. Otherwise the directory is written to a temporary directory and
    renamed into place.

    Args:
        size: Grid side ``k`` (the published sizes are 12, 18, 24, 30).
        data_dir: Data directory (default: ``IDENTITY_TF_DATA_DIR`` or ``~/.cache/identity_tf``).
        num_train, num_val, num_test: Maps per split.
        seed: Seed; the same seed and sizes give identical files.
        progress: Show a progress bar.

    Returns:
        The directory ``<data_dir>/warcraft/<k>x<k>``.
    """
    size = _size(size)
    counts = {"train": num_train, "val": num_val, "test": num_test}
    for split, n in counts.items():
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"Argument `num_{split}` must be a positive integer. Received: num_{split}={n!r}")
    counts = {s: int(n) for s, n in counts.items()}
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"Argument `seed` must be a non-negative integer. Received: seed={seed!r}")
    seed = int(seed)
    atlas = tiles.load_tile_atlas()
    folder = _split_dir(size, data_dir)

    def write(tmp):
        report(
            f"Warcraft {size}x{size}: generating {counts} maps into {str(folder)!r} (textures: the committed CC0 "
            "atlas; labels: ShortestPath of the vertex weights).",
            progress,
        )
        _write(tmp, size, counts, seed, atlas, progress)

    return protocol.ensure_built(
        folder,
        _manifest(size, counts, seed),
        write,
        what=f"Warcraft {size}x{size}",
        progress=progress,
        use_foreign=lambda found: _use_foreign(size, found, progress),
        accept=lambda found: _complete(found, counts, size),
    )


__all__ = ["build"]
