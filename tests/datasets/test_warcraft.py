"""Warcraft shortest path: the committed atlas, the offline build, the loader's checks and the tf.data pipeline."""

import json
import os
import shutil

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import scipy.ndimage  # noqa: E402
import scipy.sparse  # noqa: E402
import scipy.sparse.csgraph  # noqa: E402
import tensorflow as tf  # noqa: E402

from identity_tf.datasets import warcraft  # noqa: E402
from identity_tf.datasets.cache import CorruptDataError, DataError, sha256_file  # noqa: E402

K = 12
COUNTS = {"train": 20, "val": 5, "test": 5}


def _build(root, seed=0, **overrides):
    counts = {f"num_{s}": n for s, n in COUNTS.items()}
    counts.update(overrides)
    return warcraft.build(size=K, data_dir=root, seed=seed, progress=False, **counts)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("warcraft")
    return root, _build(root)


def _optimal_cost(weights):
    """Cheapest top-left -> bottom-right 8-neighbour path cost, both ends counted, by scipy's Dijkstra."""
    k = weights.shape[0]
    heads, tails = [], []
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            if di == dj == 0:
                continue
            for i in range(k):
                for j in range(k):
                    if 0 <= i + di < k and 0 <= j + dj < k:
                        tails.append(i * k + j)
                        heads.append((i + di) * k + j + dj)
    heads = np.array(heads)
    graph = scipy.sparse.csr_matrix((weights.ravel()[heads].astype(np.float64), (tails, heads)), shape=(k * k, k * k))
    dist = scipy.sparse.csgraph.dijkstra(graph, indices=0)
    return dist[-1] + weights[0, 0]


def test_atlas_shapes_and_dtype():
    atlas = warcraft.load_tile_atlas()
    assert atlas.shape == (len(warcraft.TERRAIN_NAMES), warcraft.TILE_VARIANTS, 8, 8, 3)
    assert atlas.dtype == np.uint8
    assert len(warcraft.TERRAIN_COSTS) == len(warcraft.TERRAIN_NAMES)
    assert warcraft.ATLAS_PATH.stat().st_size < 100_000
    # textured: variants differ and tiles are not flat; terrains differ in mean colour
    assert all(len({v.tobytes() for v in atlas[t]}) > 1 for t in range(len(atlas)))
    means = atlas.reshape(len(atlas), -1, 3).mean(axis=1)
    assert np.min(np.abs(means[:, None] - means[None]).sum(-1) + np.eye(len(atlas)) * 1e9) > 5
    with np.load(warcraft.ATLAS_PATH) as npz:
        assert tuple(npz["names"]) == warcraft.TERRAIN_NAMES
    assert (warcraft.ATLAS_PATH.parent / "CREDITS.md").read_text().count("CC0") >= 1


def test_build_writes_the_published_format(built):
    root, folder = built
    assert folder == root.resolve() / "warcraft" / f"{K}x{K}"
    for split, n in COUNTS.items():
        maps = np.load(folder / f"{split}_maps.npy")
        paths = np.load(folder / f"{split}_shortest_paths.npy")
        weights = np.load(folder / f"{split}_vertex_weights.npy")
        assert maps.shape == (n, 8 * K, 8 * K, 3) and maps.dtype == np.uint8
        assert paths.shape == (n, K, K) and paths.dtype == np.uint8
        assert weights.shape == (n, K, K) and weights.dtype == np.float32
        assert set(np.unique(paths)) <= {0, 1}
        assert set(np.unique(weights)) <= set(np.float32(warcraft.TERRAIN_COSTS))
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temporary directory left


def test_labels_are_optimal_connected_paths(built):
    splits = warcraft.load(K, data_dir=built[0])
    for split in splits.values():
        for path, weights in zip(split.shortest_paths, split.vertex_weights):
            assert path[0, 0] == 1 and path[-1, -1] == 1
            _, components = scipy.ndimage.label(path, structure=np.ones([3, 3]))
            assert components == 1
            np.testing.assert_allclose(np.sum(path * weights), _optimal_cost(weights), rtol=1e-5)


def test_maps_are_rendered_from_the_atlas(built):
    atlas = warcraft.load_tile_atlas()
    splits = warcraft.load(K, data_dir=built[0])
    costs = np.float32(warcraft.TERRAIN_COSTS)
    for split in splits.values():
        blocks = split.maps.reshape(-1, K, 8, K, 8, 3).transpose(0, 1, 3, 2, 4, 5)  # [N, K, K, 8, 8, 3]
        terrain = np.argmax(split.vertex_weights[..., None] == costs, axis=-1)  # [N, K, K]
        candidates = atlas[terrain]  # [N, K, K, V, 8, 8, 3]
        matches = np.all(candidates == blocks[:, :, :, None], axis=(-3, -2, -1)).any(axis=-1)
        assert matches.all()  # every 8x8 block is a tile of the vertex's own terrain


def test_build_is_reproducible_and_seeded(tmp_path, built):
    again = _build(tmp_path / "a")
    other = _build(tmp_path / "b", seed=1)
    for split in COUNTS:
        for field in warcraft.FIELDS:
            name = f"{split}_{field}.npy"
            np.testing.assert_array_equal(np.load(again / name), np.load(built[1] / name))
        assert not np.array_equal(np.load(other / f"{split}_maps.npy"), np.load(again / f"{split}_maps.npy"))
        assert not np.array_equal(
            np.load(other / f"{split}_vertex_weights.npy"), np.load(again / f"{split}_vertex_weights.npy")
        )


def test_provenance_and_rebuild_skips(built):
    root, folder = built
    record = json.loads((folder / "provenance.json").read_text())
    spec = record["spec"]
    assert spec["seed"] == 0 and spec["size"] == K and spec["num_maps"] == COUNTS
    assert spec["texture_source"]["wheel"] == "arcade==3.3.3"
    assert spec["texture_source"]["wheel_sha256"] == warcraft.ARCADE_WHEEL[2]
    assert "CC0" in spec["texture_source"]["licence"]
    assert spec["terrain_costs"] == dict(zip(warcraft.TERRAIN_NAMES, warcraft.TERRAIN_COSTS))
    assert set(record["files"]) == {f"{s}_{f}.npy" for s in COUNTS for f in warcraft.FIELDS}
    for name, entry in record["files"].items():
        assert entry == {"size": (folder / name).stat().st_size, "sha256": sha256_file(folder / name)}
    stamps = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert _build(root) == folder
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == stamps


def test_rebuild_with_other_arguments_replaces(tmp_path):
    folder = _build(tmp_path, num_train=4)
    assert np.load(folder / "train_maps.npy").shape[0] == 4
    _build(tmp_path, num_train=6)
    assert np.load(folder / "train_maps.npy").shape[0] == 6
    assert json.loads((folder / "provenance.json").read_text())["spec"]["num_maps"]["train"] == 6


def test_load_errors(tmp_path, built):
    with pytest.raises(DataError, match=r"warcraft\.build\(12\)"):
        warcraft.load(K, data_dir=tmp_path / "empty")
    with pytest.raises(DataError, match="30x30"):
        warcraft.load(32, data_dir=tmp_path / "empty")

    def copy():
        root = tmp_path / f"copy{len(list(tmp_path.iterdir()))}"
        folder = root / "warcraft" / f"{K}x{K}"
        folder.mkdir(parents=True)
        for path in built[1].glob("*.npy"):
            (folder / path.name).write_bytes(path.read_bytes())
        return root, folder

    root, folder = copy()
    (folder / "val_shortest_paths.npy").unlink()
    with pytest.raises(DataError, match="Missing file"):
        warcraft.load(K, data_dir=root)

    root, folder = copy()
    np.save(folder / "test_maps.npy", np.load(folder / "test_maps.npy")[:, :-8])
    with pytest.raises(DataError, match="maps must be uint8 of shape"):
        warcraft.load(K, data_dir=root)

    root, folder = copy()
    np.save(folder / "train_vertex_weights.npy", np.load(folder / "train_vertex_weights.npy")[:-1])
    with pytest.raises(DataError, match="vertex_weights must have shape"):
        warcraft.load(K, data_dir=root)

    root, folder = copy()
    weights = np.load(folder / "train_vertex_weights.npy")
    weights[3, 2, 2] = -1.0
    np.save(folder / "train_vertex_weights.npy", weights)
    with pytest.raises(DataError, match="negative"):
        warcraft.load(K, data_dir=root)

    root, folder = copy()
    paths = np.load(folder / "val_shortest_paths.npy")
    paths[0, 0, 0] = 0
    np.save(folder / "val_shortest_paths.npy", paths)
    with pytest.raises(DataError, match="top-left"):
        warcraft.load(K, data_dir=root)

    root, folder = copy()
    np.save(folder / "val_shortest_paths.npy", 2 * np.load(folder / "val_shortest_paths.npy"))
    with pytest.raises(DataError, match="0/1"):
        warcraft.load(K, data_dir=root)


def test_real_layout_without_provenance_is_loaded_and_kept(tmp_path, built):
    folder = tmp_path / "warcraft" / f"{K}x{K}"
    folder.mkdir(parents=True)
    for path in built[1].glob("*.npy"):  # float paths as in some copies of the original
        array = np.load(path)
        np.save(folder / path.name, array.astype(np.float64) if "shortest" in path.name else array)
    splits = warcraft.load(K, data_dir=tmp_path, mmap=True)
    assert isinstance(splits["train"].maps, np.memmap)
    stamps = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert _build(tmp_path) == folder.resolve()
    assert _build(tmp_path, num_train=7, seed=3) == folder.resolve()  # other sizes: still used as it is
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == stamps


def test_incomplete_or_malformed_foreign_data_is_reported_and_kept(tmp_path, built):
    folder = tmp_path / "warcraft" / f"{K}x{K}"
    folder.mkdir(parents=True)
    for path in built[1].glob("*.npy"):
        if path.name != "test_maps.npy":
            (folder / path.name).write_bytes(path.read_bytes())
    stamps = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    with pytest.raises(DataError, match=r"did not write \(no provenance.json\) but lacks \['test_maps.npy'\]"):
        _build(tmp_path)
    np.save(folder / "test_maps.npy", np.load(built[1] / "test_maps.npy")[:, :-8])
    stamps["test_maps.npy"] = (folder / "test_maps.npy").stat().st_mtime_ns
    with pytest.raises(DataError, match="maps must be uint8 of shape"):
        _build(tmp_path)
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == stamps


def test_corrupted_build_is_reported_by_load_and_rebuilt_by_build(tmp_path, built):
    folder = tmp_path / "warcraft" / f"{K}x{K}"
    shutil.copytree(built[1], folder)
    original = warcraft.load(K, data_dir=tmp_path)
    weights = np.load(folder / "val_vertex_weights.npy")
    weights[0] = weights[0][::-1]  # valid-looking costs (same terrains), wrong for the map and its label
    np.save(folder / "val_vertex_weights.npy", weights)
    with pytest.raises(CorruptDataError, match=r"(?s)val_vertex_weights\.npy \(sha256 .*rebuilds it"):
        warcraft.load(K, data_dir=tmp_path)
    assert _build(tmp_path) == folder.resolve()
    again = warcraft.load(K, data_dir=tmp_path)
    for split in COUNTS:
        for field in warcraft.FIELDS:
            np.testing.assert_array_equal(getattr(again[split], field), getattr(original[split], field))


def test_records_of_earlier_builds_are_checked_too(tmp_path, built):
    folder = tmp_path / "warcraft" / f"{K}x{K}"
    shutil.copytree(built[1], folder)
    record = json.loads((folder / "provenance.json").read_text())
    legacy = {key: value for key, value in record.items() if key != "files"}
    legacy["files_sha256"] = {
        name: entry["sha256"] for name, entry in record["files"].items()
    }  # as builds before the shared record wrote it
    (folder / "provenance.json").write_text(json.dumps(legacy))
    warcraft.load(K, data_dir=tmp_path)
    paths = np.load(folder / "test_shortest_paths.npy")
    np.save(folder / "test_shortest_paths.npy", paths[::-1])
    with pytest.raises(CorruptDataError, match=r"test_shortest_paths\.npy \(sha256"):
        warcraft.load(K, data_dir=tmp_path)


def test_channel_stats():
    maps = np.random.default_rng(0).integers(0, 256, size=(7, 16, 16, 3)).astype(np.uint8)
    mean, std = warcraft.channel_stats(maps)
    assert mean.shape == std.shape == (3,) and mean.dtype == std.dtype == np.float32
    np.testing.assert_allclose(mean, maps.reshape(-1, 3).mean(0), rtol=1e-5)
    np.testing.assert_allclose(std, maps.reshape(-1, 3).std(0), rtol=1e-5)


def test_make_dataset_uses_train_statistics(built):
    splits = warcraft.load(K, data_dir=built[0])
    mean, std = warcraft.channel_stats(splits["train"].maps)
    dataset = warcraft.make_dataset(splits, "val", batch_size=2)
    assert dataset.element_spec[0].shape.as_list() == [None, 8 * K, 8 * K, 3]
    assert dataset.element_spec[1].shape.as_list() == [None, K, K, 2]
    batches = list(dataset)
    assert [len(x) for x, _ in batches] == [2, 2, 1]  # no dropped remainder
    maps = np.concatenate([x.numpy() for x, _ in batches])
    targets = np.concatenate([y.numpy() for _, y in batches])
    assert maps.dtype == targets.dtype == np.float32
    val = splits["val"]
    np.testing.assert_allclose(maps, (val.maps.astype(np.float32) - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(targets[..., 0], val.shortest_paths)
    np.testing.assert_array_equal(targets[..., 1], val.vertex_weights)
    # the train split itself is standardised
    train = np.concatenate([x.numpy() for x, _ in warcraft.make_dataset(splits, "train", batch_size=64)])
    train = train.reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(train.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(train.std(0), 1.0, atol=1e-4)


def test_make_dataset_shuffles_whole_examples(built):
    splits = warcraft.load(K, data_dir=built[0])
    dataset = warcraft.make_dataset(splits, "train", batch_size=4, shuffle=True, seed=3)
    first = np.concatenate([y.numpy()[..., 1] for _, y in dataset])
    second = np.concatenate([y.numpy()[..., 1] for _, y in dataset])
    train = splits["train"].vertex_weights
    assert not np.array_equal(first, train) and not np.array_equal(first, second)  # reshuffled per epoch
    key = sorted(w.tobytes() for w in train)
    assert sorted(w.tobytes() for w in first) == key
    # maps and targets stay paired: the de-normalised map's tiles decode to the target's terrain
    mean, std = warcraft.channel_stats(splits["train"].maps)
    lookup = {w.tobytes(): m for w, m in zip(train, splits["train"].maps)}
    for x, y in dataset.take(2):
        for image, target in zip(x.numpy(), y.numpy()):
            original = lookup[target[..., 1].tobytes()]
            np.testing.assert_allclose(image * std + mean, original, atol=1e-3)


@pytest.mark.parametrize("name", ["num_train", "num_val", "num_test"])
@pytest.mark.parametrize("value", [0, -3, 1.5, "100", False, None])
def test_build_rejects_bad_sizes_before_doing_anything(tmp_path, name, value):
    with pytest.raises(ValueError, match=f"Argument `{name}` must be a positive integer. Received: {name}={value!r}"):
        warcraft.build(size=K, data_dir=tmp_path, progress=False, **{name: value})
    assert not (tmp_path / "warcraft").exists()


def test_argument_checks(built):
    with pytest.raises(ValueError, match="size"):
        warcraft.build(size=1, data_dir=built[0])
    with pytest.raises(ValueError, match="num_train"):
        warcraft.build(size=K, data_dir=built[0], num_train=0)
    splits = warcraft.load(K, data_dir=built[0])
    with pytest.raises(ValueError, match="split"):
        warcraft.make_dataset(splits, "dev", batch_size=2)
    assert isinstance(warcraft.make_dataset(splits, "test", batch_size=3), tf.data.Dataset)
