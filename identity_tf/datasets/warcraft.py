"""Warcraft shortest path (Vlastelica et al., 2020): the loader of the published format and an offline build.

**Format** (the Blackbox-Backprop dataset, read as is when a user places it under the data directory)::

    <data_dir>/warcraft/<k>x<k>/{train,val,test}_maps.npy            (N, 8k, 8k, 3) uint8 RGB terrain images
    <data_dir>/warcraft/<k>x<k>/{train,val,test}_shortest_paths.npy  (N, k, k) 0/1 path indicators
    <data_dir>/warcraft/<k>x<k>/{train,val,test}_vertex_weights.npy  (N, k, k) float terrain costs

Each of the ``k x k`` vertices is an 8x8 pixel tile of the map. The path runs from the top-left to the
bottom-right vertex over 8-neighbours; its cost is the sum of the vertex weights it visits, both ends included.
The published sizes are k = 12, 18, 24, 30 with 10000 / 1000 / 1000 maps; the paper's "32x32" maps are the
30x30 ones.

**Offline build** (:func:`build`): the original maps are crops of Warcraft II screenshots, which no registry
ships. This module generates maps of the same format instead:

* the terrain layout is synthetic: smooth random fields (two octaves of bilinearly upsampled Gaussian noise)
  thresholded into elevation bands (water < grass/dirt/forest < stone < snow), a moisture field choosing forest,
  grass or dirt, a heat field adding lava patches to half of the maps, and 0-3 roads (cheap terrain, crossing
  anything, bridges over water) drawn through a random waypoint between two random border cells;
* every vertex is drawn as one of 16 variants of its terrain's 8x8 tile from a committed atlas
  (``assets/warcraft_tiles.npz``) made of real textures: Kenney's CC0 platformer and top-down tank tiles from the
  PyPI wheel ``arcade==3.3.3`` (see ``assets/CREDITS.md`` and :func:`write_tile_atlas`);
* the vertex weights are fixed per terrain (:data:`TERRAIN_COSTS`, in the range of the original 0.8 ... 9.2), so
  that, as in the original, a map determines its costs but many paths tie;
* the labels are :class:`identity_tf.solvers.ShortestPath` (8-neighbourhood) of the weights, stored as uint8.

Differences from the original: synthetic terrain layout and eight terrain types rather than Warcraft II
screenshots; textures are real (CC0) but simpler; costs are exactly piecewise constant per terrain.
Every build writes ``provenance.json`` (sources, sha256s, licence, seed, sizes, costs, and the size and sha256 of
every file, checked by :func:`load` and :func:`build`: a corrupted build is reported by ``load`` and rebuilt by
``build``) and is reproducible from its seed. Licence of the generated data: the textures are CC0 1.0 (Kenney), the layout is generated here.

Example:
>>> import tempfile
>>> root = build(size=12, data_dir=tempfile.mkdtemp(), num_train=4, num_val=2, num_test=2,
...              progress=False)  # doctest: +SKIP
>>> splits = load(12, data_dir=root.parents[1])  # doctest: +SKIP
>>> ds = make_dataset(splits, "train", batch_size=2)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import zipfile

import numpy as np

from identity_tf.datasets.cache import (
    DataError,
    atomic_dir,
    build_state,
    data_dir,
    fetch_wheel,
    load_npy,
    report,
    sha256_file,
    verify_record,
    write_record,
)

#: Terrain types, cheapest first; the index is the terrain id.
TERRAIN_NAMES = ("road", "grass", "dirt", "stone", "snow", "forest", "water", "lava")
#: Vertex weight of each terrain type (same order as :data:`TERRAIN_NAMES`).
TERRAIN_COSTS = (0.8, 1.2, 1.5, 2.0, 3.0, 5.0, 7.7, 9.2)
SPLITS = ("train", "val", "test")
FIELDS = ("maps", "shortest_paths", "vertex_weights")
TILE = 8
#: Variants per terrain in the atlas.
TILE_VARIANTS = 16

ARCADE_WHEEL = ("arcade", "3.3.3", "25f4e0e5b8bcbe7a7d087c0a23b19e9f423b0c70ec00945c8712c9a3e541ebd2")
_IMAGES = "arcade/resources/assets/images/"
ATLAS_PATH = pathlib.Path(__file__).resolve().parent / "assets" / "warcraft_tiles.npz"
#: Texture sources per terrain: (file under ``arcade/resources/assets/images/``, (y0, y1, x0, x1) region,
#: smallest and largest crop side in pixels); ``forest`` composes the tree sprites over ``tileGrass1.png``.
TILE_SOURCES = {
    "road": [
        ("topdown_tanks/tileSand1.png", (0, 64, 0, 64), 16, 48),
        ("topdown_tanks/tileSand2.png", (0, 64, 0, 64), 16, 48),
    ],
    "grass": [
        ("topdown_tanks/tileGrass1.png", (0, 64, 0, 64), 16, 48),
        ("topdown_tanks/tileGrass2.png", (0, 64, 0, 64), 16, 48),
    ],
    "dirt": [("tiles/grassCenter.png", (0, 128, 0, 128), 32, 96), ("tiles/sandCenter.png", (0, 128, 0, 128), 32, 96)],
    "stone": [("tiles/stoneCenter.png", (0, 128, 0, 128), 32, 96), ("tiles/brickGrey.png", (8, 120, 8, 120), 32, 96)],
    "snow": [("tiles/snow.png", (0, 48, 8, 120), 16, 48)],
    "forest": [
        ("topdown_tanks/treeGreen_large.png", (0, 64, 0, 64), 48, 64),
        ("topdown_tanks/treeGreen_small.png", (0, 64, 0, 64), 40, 64),
    ],
    "water": [("tiles/water.png", (0, 128, 0, 128), 24, 96)],
    "lava": [("tiles/lava.png", (0, 128, 0, 128), 24, 96)],
}
_FOREST_GROUND = "topdown_tanks/tileGrass1.png"

_GENERATOR_VERSION = 1
_RECORD = "provenance.json"
_CHUNK = 500  # maps generated (and solved) at a time; part of the seeding scheme, so fixed


# ------------------------------------------------------------------------------------------------ the tile atlas
def _decode_png(data: bytes) -> np.ndarray:
    import tensorflow as tf

    return tf.io.decode_png(data, channels=4).numpy()  # [H, W, 4] uint8


def build_tile_atlas(wheel_path: str | os.PathLike, variants: int = TILE_VARIANTS, seed: int = 0) -> dict:
    """Builds the 8x8 tile atlas from Kenney's CC0 textures inside the ``arcade`` wheel.

    Each variant is a random square crop of a source texture (side a multiple of 8 between the source's limits),
    randomly flipped / rotated, reduced to 8x8 by block averaging. Tree sprites are composed over grass first.

    Args:
        wheel_path: The ``arcade-3.3.3`` wheel (read as a zip, never installed).
        variants: Variants per terrain.
        seed: Seed of the crops.

    Returns:
        ``{"tiles": uint8 [T, variants, 8, 8, 3], "names": str [T], "sources": str [S]}``.
    """
    rng = np.random.default_rng(seed)
    with zipfile.ZipFile(wheel_path) as wheel:

        def read(name):
            try:
                return _decode_png(wheel.read(_IMAGES + name)).astype(np.float64)
            except KeyError as error:
                raise DataError(f"{wheel_path} has no {_IMAGES + name}; is it arcade==3.3.3?") from error

        ground = read(_FOREST_GROUND)[..., :3]
        tiles = np.zeros([len(TERRAIN_NAMES), variants, TILE, TILE, 3], np.uint8)
        sources = []
        for t, name in enumerate(TERRAIN_NAMES):
            images = []
            for file, (y0, y1, x0, x1), lo, hi in TILE_SOURCES[name]:
                sources.append(_IMAGES + file)
                image = read(file)
                back = 255.0
                if name == "forest":  # centre the sprite on a grass canvas of the ground's size
                    back = ground
                    pad_y, pad_x = ground.shape[0] - image.shape[0], ground.shape[1] - image.shape[1]
                    image = np.pad(image, [(pad_y // 2, pad_y - pad_y // 2), (pad_x // 2, pad_x - pad_x // 2), (0, 0)])
                alpha = image[..., 3:] / 255.0
                images.append(((image[..., :3] * alpha + back * (1 - alpha))[y0:y1, x0:x1], lo, hi))
            for v in range(variants):
                image, lo, hi = images[v % len(images)]
                side = int(rng.choice(np.arange(lo, min(hi, *image.shape[:2]) + 1, TILE)))
                y = int(rng.integers(image.shape[0] - side + 1))
                x = int(rng.integers(image.shape[1] - side + 1))
                crop = image[y : y + side, x : x + side]
                crop = np.rot90(crop, int(rng.integers(4)))
                if rng.integers(2):
                    crop = crop[:, ::-1]
                b = side // TILE
                small = crop.reshape(TILE, b, TILE, b, 3).mean(axis=(1, 3))
                tiles[t, v] = np.clip(np.round(small), 0, 255).astype(np.uint8)
    return {"tiles": tiles, "names": np.array(TERRAIN_NAMES), "sources": np.array(sorted(set(sources)))}


def write_tile_atlas(wheel_path: str | os.PathLike | None = None, out: str | os.PathLike = ATLAS_PATH) -> pathlib.Path:
    """Writes the committed atlas ``assets/warcraft_tiles.npz`` (run once by the maintainers).

    Args:
        wheel_path: The ``arcade==3.3.3`` wheel; default: fetched with ``pip download`` into the data directory.
        out: Output file.
    """
    name, version, sha256 = ARCADE_WHEEL
    if wheel_path is None:
        wheel_path = fetch_wheel(name, version, sha256, data_dir())
    elif sha256_file(wheel_path) != sha256:
        raise DataError(f"{wheel_path} is not the pinned {name}=={version} wheel (sha256 {sha256}).")
    atlas = build_tile_atlas(wheel_path)
    out = pathlib.Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".tmp-{os.getpid()}-{out.name}")
    with open(tmp, "wb") as file:
        np.savez_compressed(file, **atlas)
    os.replace(tmp, out)
    return out


def load_tile_atlas(path: str | os.PathLike = ATLAS_PATH) -> np.ndarray:
    """The committed tile atlas: uint8 ``[len(TERRAIN_NAMES), TILE_VARIANTS, 8, 8, 3]``.

    Example:
    >>> load_tile_atlas().shape
    (8, 16, 8, 8, 3)
    """
    try:
        with np.load(path, allow_pickle=False) as atlas:
            tiles, names = atlas["tiles"], tuple(str(n) for n in atlas["names"])
    except (OSError, KeyError, ValueError) as error:
        raise DataError(f"Cannot read the Warcraft tile atlas {str(path)!r}: {error}") from error
    if (
        names != TERRAIN_NAMES
        or tiles.dtype != np.uint8
        or tiles.shape[0] != len(names)
        or tiles.shape[2:] != (8, 8, 3)
    ):
        raise DataError(f"The Warcraft tile atlas {str(path)!r} is malformed: {tiles.dtype} {tiles.shape}, {names}.")
    return tiles


# ---------------------------------------------------------------------------------------------- map generation
def _upsample_matrix(k: int, g: int) -> np.ndarray:
    """``[k, g]`` linear interpolation from ``g`` grid points to ``k`` cells."""
    x = np.linspace(0.0, g - 1.0, k)
    lo = np.minimum(np.floor(x).astype(int), g - 2)
    frac = x - lo
    matrix = np.zeros([k, g])
    matrix[np.arange(k), lo] = 1 - frac
    matrix[np.arange(k), lo + 1] = frac
    return matrix


def _smooth_field(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """``[n, k, k]`` smooth random field, standardised per map."""
    field = np.zeros([n, k, k])
    g = max(2, round(k / 6)) + 1
    for octave, amplitude in ((g, 1.0), (2 * g, 0.4)):
        up = _upsample_matrix(k, octave)
        field += amplitude * np.einsum("ia,nab,jb->nij", up, rng.normal(size=(n, octave, octave)), up)
    field += 0.1 * rng.normal(size=(n, k, k))
    field -= field.mean(axis=(1, 2), keepdims=True)
    return field / field.std(axis=(1, 2), keepdims=True)


def _draw_roads(rng: np.random.Generator, types: np.ndarray) -> None:
    """Draws 0-3 roads per map in place: polylines between two border cells through a random waypoint."""
    n, k, _ = types.shape
    road = TERRAIN_NAMES.index("road")

    def border_cell():
        side, pos = int(rng.integers(4)), int(rng.integers(k))
        return [(0, pos), (k - 1, pos), (pos, 0), (pos, k - 1)][side]

    for m in range(n):
        for _ in range(int(rng.choice(4, p=[0.15, 0.4, 0.3, 0.15]))):
            points = [border_cell(), tuple(int(v) for v in rng.integers(k, size=2)), border_cell()]
            for (r0, c0), (r1, c1) in zip(points[:-1], points[1:]):
                steps = max(abs(r1 - r0), abs(c1 - c0)) + 1
                rows = np.rint(np.linspace(r0, r1, steps)).astype(int)
                cols = np.rint(np.linspace(c0, c1, steps)).astype(int)
                types[m, rows, cols] = road


def generate_terrain(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """``[n, size, size]`` int terrain ids (indices into :data:`TERRAIN_NAMES`)."""
    ids = {name: i for i, name in enumerate(TERRAIN_NAMES)}
    elevation = _smooth_field(rng, n, size)
    moisture = _smooth_field(rng, n, size)
    heat = _smooth_field(rng, n, size)

    def threshold(centre, spread):
        return (centre + spread * rng.uniform(-1, 1, size=(n, 1, 1))).astype(np.float64)

    water, stone, snow = threshold(-0.9, 0.4), threshold(0.9, 0.3), threshold(1.6, 0.3)
    forest, dirt = threshold(0.5, 0.4), threshold(-0.6, 0.3)
    lava = np.where(rng.uniform(size=(n, 1, 1)) < 0.5, threshold(1.5, 0.3), np.inf)
    types = np.full([n, size, size], ids["grass"])
    types = np.where(moisture > forest, ids["forest"], np.where(moisture < dirt, ids["dirt"], types))
    types = np.where(elevation > stone, ids["stone"], types)
    types = np.where(elevation > snow, ids["snow"], types)
    types = np.where((heat > lava) & (elevation >= water), ids["lava"], types)
    types = np.where(elevation < water, ids["water"], types)
    _draw_roads(rng, types)
    return types


def render_maps(rng: np.random.Generator, types: np.ndarray, atlas: np.ndarray) -> np.ndarray:
    """``[n, 8k, 8k, 3]`` uint8 maps: each vertex drawn as a random variant of its terrain's tile."""
    n, k, _ = types.shape
    variants = rng.integers(atlas.shape[1], size=types.shape)
    tiles = atlas[types, variants]  # [n, k, k, 8, 8, 3]
    return tiles.transpose(0, 1, 3, 2, 4, 5).reshape(n, k * TILE, k * TILE, 3)


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


# ------------------------------------------------------------------------------------------------------ build
def _size(size) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 2:
        raise ValueError(f"Argument `size` must be an integer >= 2. Received: size={size!r}")
    return int(size)


def _split_dir(size: int, root) -> pathlib.Path:
    return data_dir(root) / "warcraft" / f"{size}x{size}"


def _spec(size, counts, seed) -> dict:
    name, version, sha256 = ARCADE_WHEEL
    return {
        "dataset": "warcraft_shortest_path (synthetic layout, CC0 textures)",
        "generator_version": _GENERATOR_VERSION,
        "size": size,
        "seed": seed,
        "num_maps": counts,
        "terrain_costs": dict(zip(TERRAIN_NAMES, TERRAIN_COSTS)),
        "labels": "identity_tf.solvers.ShortestPath(neighbourhood=8) of vertex_weights, top-left to bottom-right",
        "atlas": {"file": "identity_tf/datasets/assets/warcraft_tiles.npz", "sha256": sha256_file(ATLAS_PATH)},
        "texture_source": {
            "wheel": f"{name}=={version}",
            "wheel_sha256": sha256,
            "files": {t: [_IMAGES + f for f, *_ in TILE_SOURCES[t]] for t in TERRAIN_NAMES},
            "author": "Kenney (www.kenney.nl)",
            "licence": "CC0 1.0 Universal",
        },
    }


def _complete(folder: pathlib.Path, counts: dict, size: int) -> bool:
    try:
        for split in SPLITS:
            shapes = {f: np.load(folder / f"{split}_{f}.npy", mmap_mode="r").shape for f in FIELDS}
            n = counts[split]
            if shapes != {"maps": (n, TILE * size, TILE * size, 3), "shortest_paths": (n, size, size),
                          "vertex_weights": (n, size, size)}:  # fmt: skip
                return False
    except (OSError, ValueError):
        return False
    return True


def _use_foreign(size: int, folder: pathlib.Path, progress: bool) -> pathlib.Path:
    """Checks a dataset that `build` did not write (no provenance.json) and returns its folder; never modifies it."""
    names = [f"{split}_{field}.npy" for split in SPLITS for field in FIELDS]
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise DataError(
            f"{str(folder)!r} holds files that `build` did not write (no provenance.json) but lacks {missing}. "
            "Complete it with the published files, or move it away to build the offline dataset there; it is "
            "never overwritten."
        )
    splits = load(size, data_dir=folder.parents[1], mmap=True)
    counts = {split: len(splits[split]) for split in SPLITS}
    report(
        f"Warcraft {size}x{size}: using the dataset found in {str(folder)!r} as it is ({counts} maps; no "
        "provenance.json, so it was not built here and the requested sizes and seed do not apply).",
        progress,
    )
    return folder


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
    atlas = load_tile_atlas()
    folder = _split_dir(size, data_dir)
    spec = _spec(size, counts, seed)
    wanted = json.loads(json.dumps(spec))
    state = build_state(
        folder, _RECORD, lambda record: record.get("spec") == wanted, f"Warcraft {size}x{size}", progress
    )
    if state == "foreign":  # e.g. the published dataset: used as it is, never replaced
        return _use_foreign(size, folder, progress)
    if state == "current" and _complete(folder, counts, size):
        return folder

    report(
        f"Warcraft {size}x{size}: generating {counts} maps into {str(folder)!r} (textures: the committed CC0 atlas; "
        "labels: ShortestPath of the vertex weights).",
        progress,
    )
    bar = None
    if progress:
        import keras

        bar = keras.utils.Progbar(sum(counts.values()), unit_name="map")
    solver = _PathSolver(min(_CHUNK, max(counts.values())))
    done = 0
    with atomic_dir(folder) as tmp:
        for split_index, split in enumerate(SPLITS):
            n = counts[split]
            arrays = {
                "maps": np.lib.format.open_memmap(tmp / f"{split}_maps.npy", "w+", np.uint8, (n, 8 * size, 8 * size, 3)),
                "shortest_paths": np.lib.format.open_memmap(tmp / f"{split}_shortest_paths.npy", "w+", np.uint8, (n, size, size)),
                "vertex_weights": np.lib.format.open_memmap(tmp / f"{split}_vertex_weights.npy", "w+", np.float32, (n, size, size)),
            }  # fmt: skip
            for chunk, start in enumerate(range(0, n, _CHUNK)):
                m = min(_CHUNK, n - start)
                rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(size, split_index, chunk)))
                types = generate_terrain(rng, m, size)
                weights = np.asarray(TERRAIN_COSTS, np.float32)[types]
                arrays["maps"][start : start + m] = render_maps(rng, types, atlas)
                arrays["vertex_weights"][start : start + m] = weights
                arrays["shortest_paths"][start : start + m] = solver(weights)
                done += m
                if bar is not None:
                    bar.update(done)
            for array in arrays.values():
                array.flush()
            del arrays
        record = {
            "spec": spec,
            "format": {
                "maps": "uint8 (N, 8k, 8k, 3) RGB",
                "shortest_paths": "uint8 (N, k, k) 0/1",
                "vertex_weights": "float32 (N, k, k)",
            },
        }
        write_record(tmp, _RECORD, record)  # with the files' sizes and sha256 digests, checked by `load`
    return folder


# ------------------------------------------------------------------------------------------------------- load
@dataclasses.dataclass
class WarcraftSplit:
    """One split: ``maps`` uint8 ``[N, 8k, 8k, 3]``, ``shortest_paths`` ``[N, k, k]`` 0/1, ``vertex_weights``
    ``[N, k, k]``."""

    maps: np.ndarray
    shortest_paths: np.ndarray
    vertex_weights: np.ndarray

    def __len__(self) -> int:
        return len(self.maps)


def load(size: int, data_dir: str | os.PathLike | None = None, mmap: bool = False) -> dict[str, WarcraftSplit]:
    """Loads and checks ``<data_dir>/warcraft/<k>x<k>`` (the published format or the offline build).

    Args:
        size: Grid side ``k``.
        data_dir: Data directory (default: ``IDENTITY_TF_DATA_DIR`` or ``~/.cache/identity_tf``).
        mmap: Memory-map the maps instead of reading them (large sizes).

    Returns:
        ``{"train" | "val" | "test": WarcraftSplit}``.

    Raises:
        DataError: Missing directory or files, or inconsistent contents.
    """
    size = _size(size)
    folder = _split_dir(size, data_dir)
    if not folder.is_dir():
        hint = " (the paper's 32x32 maps are the 30x30 ones: use size=30)" if size == 32 else ""
        raise DataError(
            f"No Warcraft data for size {size} at {str(folder)!r}{hint}. Place the published "
            f"{size}x{size} folder there, or build the offline version with "
            f"`identity_tf.datasets.warcraft.build({size})` or `identity-tf data warcraft --size {size}`."
        )
    rebuild = f"`identity_tf.datasets.warcraft.build({size}, ...)` with the same sizes and seed rebuilds it."
    for split in SPLITS:
        for field in FIELDS:
            path = folder / f"{split}_{field}.npy"
            if not path.is_file():
                raise DataError(
                    f"Missing file {str(path)!r}; rebuild with `identity_tf.datasets.warcraft.build({size})`."
                )
    verify_record(folder, _RECORD, f"Warcraft {size}x{size}", hint=f"It was built here: {rebuild}")
    splits = {}
    for split in SPLITS:
        arrays = {}
        for field in FIELDS:
            path = folder / f"{split}_{field}.npy"
            arrays[field] = load_npy(path, mmap_mode="r" if mmap and field == "maps" else None)
        _check_split(split, size, folder, **arrays)
        splits[split] = WarcraftSplit(**arrays)
    return splits


def _check_split(split, size, folder, maps, shortest_paths, vertex_weights) -> None:
    where = f"{folder}/{split}_*.npy"
    if maps.ndim != 4 or maps.shape[1:] != (TILE * size, TILE * size, 3) or maps.dtype != np.uint8:
        raise DataError(
            f"{where}: maps must be uint8 of shape (N, {TILE * size}, {TILE * size}, 3). "
            f"Received: {maps.dtype} {maps.shape}"
        )
    n = len(maps)
    for name, array in (("shortest_paths", shortest_paths), ("vertex_weights", vertex_weights)):
        if array.shape != (n, size, size):
            raise DataError(f"{where}: {name} must have shape ({n}, {size}, {size}). Received: {array.shape}")
    if not (np.issubdtype(vertex_weights.dtype, np.number) and np.all(np.isfinite(vertex_weights))):
        raise DataError(f"{where}: vertex_weights must be finite numbers.")
    if np.any(vertex_weights < 0):
        raise DataError(f"{where}: vertex_weights must be >= 0; found {int(np.sum(vertex_weights < 0))} negative.")
    if not np.all((shortest_paths == 0) | (shortest_paths == 1)):
        raise DataError(f"{where}: shortest_paths must be 0/1 indicators.")
    if n and not (np.all(shortest_paths[:, 0, 0] == 1) and np.all(shortest_paths[:, -1, -1] == 1)):
        raise DataError(f"{where}: every shortest path must contain the top-left and bottom-right vertices.")


# ---------------------------------------------------------------------------------------------------- tf.data
def channel_stats(train_maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation (float32 ``[3]`` each) of uint8 maps ``[N, H, W, 3]``.

    Example:
    >>> mean, std = channel_stats(np.stack([np.zeros([2, 2, 3]), np.full([2, 2, 3], 2.0)]).astype(np.uint8))
    >>> mean.tolist(), std.tolist()
    ([1.0, 1.0, 1.0], [1.0, 1.0, 1.0])
    """
    total = np.zeros(3)
    squares = np.zeros(3)
    count = 0
    for start in range(0, len(train_maps), 1000):
        chunk = np.asarray(train_maps[start : start + 1000], np.float64).reshape(-1, 3)
        total += chunk.sum(axis=0)
        squares += np.square(chunk).sum(axis=0)
        count += len(chunk)
    if count == 0:
        raise DataError("channel_stats needs at least one training map.")
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - np.square(mean), 0.0))
    return mean.astype(np.float32), np.maximum(std, 1e-6).astype(np.float32)


def make_dataset(
    splits: dict[str, WarcraftSplit],
    split: str,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    stats: tuple[np.ndarray, np.ndarray] | None = None,
):
    """A batched ``tf.data.Dataset`` of ``(maps, target)`` for the Warcraft task.

    ``maps`` are float32 ``[B, 8k, 8k, 3]`` normalised by the per-channel mean / std of the **train** maps;
    ``target`` is float32 ``[B, k, k, 2]``: channel 0 the shortest path, channel 1 the true vertex weights (for the
    cost-ratio metric). The last batch may be smaller; batches are prefetched. Maps are gathered from the (possibly
    memory-mapped) arrays batch by batch.

    Args:
        splits: The result of :func:`load`.
        split: "train", "val" or "test".
        batch_size: Maps per batch.
        shuffle: Reshuffle every epoch.
        seed: Shuffle seed.
        stats: Precomputed ``channel_stats(splits["train"].maps)`` (computed here when None).
    """
    import tensorflow as tf

    if split not in splits:
        raise ValueError(f"Argument `split` must be one of {sorted(splits)}. Received: split={split!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"Argument `batch_size` must be a positive integer. Received: batch_size={batch_size!r}")
    mean, std = stats if stats is not None else channel_stats(splits["train"].maps)
    data = splits[split]
    n, size = len(data.maps), data.vertex_weights.shape[1]
    targets = np.stack(
        [np.asarray(data.shortest_paths, np.float32), np.asarray(data.vertex_weights, np.float32)], axis=-1
    )  # [N, k, k, 2]
    maps = data.maps

    def gather(index):
        index = np.sort(index)
        return np.ascontiguousarray(maps[index]), targets[index]

    def fetch(index):
        images, target = tf.numpy_function(gather, [index], [tf.uint8, tf.float32], stateful=False)
        images = tf.ensure_shape(images, [None, TILE * size, TILE * size, 3])
        target = tf.ensure_shape(target, [None, size, size, 2])
        images = (tf.cast(images, tf.float32) - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)
        return images, target

    dataset = tf.data.Dataset.range(n)
    if shuffle:
        dataset = dataset.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(int(batch_size), drop_remainder=False)
    return dataset.map(fetch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)


if __name__ == "__main__":  # maintainers: python -m identity_tf.datasets.warcraft [arcade wheel]
    import sys

    print(write_tile_atlas(sys.argv[1] if len(sys.argv) > 1 else None))
