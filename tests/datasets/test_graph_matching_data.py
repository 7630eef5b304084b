"""Graph-matching data: warps, Delaunay graphs, pair assembly and labels, the offline build, stereo, VOC/SPair."""

import json
import os
import pathlib

import numpy as np
import pytest
import scipy.spatial

from identity_tf.datasets import cache
from identity_tf.datasets.graph_matching import building, real
from identity_tf.datasets.graph_matching import format as fmt
from identity_tf.datasets.graph_matching.geometry import Warp, delaunay_edges
from identity_tf.datasets.graph_matching.pipeline import MEAN, STD, make_dataset

NAN = np.nan


# ------------------------------------------------------------------------------------------------ geometry
def test_warp_moves_keypoints_to_where_the_image_shows_them():
    """The inverse map is explicit; forward() must invert it, and the warped image of a linear ramp
    f(x, y) = 2x + 3y (reproduced exactly by bilinear sampling) must show f(G(o)) at every output pixel o."""
    size = 48
    warp = Warp.random(np.random.default_rng(3), size)
    source = np.random.default_rng(4).uniform(5, 40, size=(20, 2))
    moved = warp.forward(source)
    np.testing.assert_allclose(warp.inverse(moved), source, atol=1e-9)
    rows, cols = np.mgrid[0:size, 0:size]
    ramp = (2.0 * cols + 3.0 * rows)[..., None]
    warped = warp.apply(ramp, size)[..., 0]
    g = warp.inverse(np.stack([cols, rows], -1).astype(float))
    inside = (g[..., 0] >= 0) & (g[..., 0] <= size - 1) & (g[..., 1] >= 0) & (g[..., 1] <= size - 1)
    assert inside.mean() > 0.5
    np.testing.assert_allclose(warped[inside], (2 * g[..., 0] + 3 * g[..., 1])[inside], atol=1e-9)


def test_delaunay_edges_are_scipys_neighbours_in_both_directions():
    points = np.random.default_rng(0).random((15, 2))
    indptr, indices = scipy.spatial.Delaunay(points).vertex_neighbor_vertices
    expected = sorted((i, int(j)) for i in range(15) for j in indices[indptr[i] : indptr[i + 1]])
    edges = delaunay_edges(points)
    assert edges.dtype == np.int32 and [tuple(e) for e in edges.tolist()] == expected
    assert {(b, a) for a, b in expected} == set(expected)  # both orientations


def test_delaunay_edges_of_collinear_points_and_bad_input():
    edges = delaunay_edges(np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [3.0, 0.0]]))
    assert len(edges) and not np.any(edges[:, 0] == edges[:, 1])
    with pytest.raises(ValueError, match=r"`points` must have shape \[n, 2\]. Received: points.shape=\(3, 3\)"):
        delaunay_edges(np.zeros((3, 3)))


# ------------------------------------------------------------------------------------------------ assembly
def _split(points1, points2, outliers2=None, image_size=10):
    points = np.stack([points1, points2]).astype(np.float32)
    outliers = np.full((2, 0 if outliers2 is None else len(outliers2), 2), NAN, np.float32)
    if outliers2 is not None:
        outliers[1] = outliers2
    return fmt.KeypointImages(
        images=np.zeros((2, image_size, image_size, 3), np.uint8),
        points=points,
        outliers=outliers,
        classes=np.array([0, 0], np.int32),
        pairs=np.array([[0, 1]], np.int32),
        class_names=["c"],
    )


def test_the_label_permutation_recovers_the_true_correspondence():
    rng = np.random.default_rng(1)
    source = rng.uniform(0, 9, size=(7, 2))
    target = source + [0.5, -0.25]
    target[2] = NAN  # keypoint 2 not visible in the target: not matched
    outliers = np.array([[1.0, 1.0], [8.0, 2.0]])
    split = _split(source, target, outliers)
    pairs = fmt.assemble(split, seed=5, max_nodes1=8, max_nodes2=9)
    common = [0, 1, 3, 4, 5, 6]
    n, m = int(pairs.num_nodes1[0]), int(pairs.num_nodes2[0])
    assert (n, m) == (6, 8)
    np.testing.assert_allclose(pairs.points1[0, :n], source[common] / 10, rtol=1e-6)
    np.testing.assert_allclose(pairs.points2[0, pairs.perm[0, :n]], (source[common] + [0.5, -0.25]) / 10, rtol=1e-6)
    unmatched = sorted(set(range(m)) - set(pairs.perm[0, :n].tolist()))
    np.testing.assert_allclose(np.sort(pairs.points2[0, unmatched], axis=0), np.sort(outliers / 10, axis=0))
    assert pairs.perm[0, n:].tolist() == [-1] * (8 - n) and not pairs.points2[0, m:].any()
    assert pairs.perm[0, :n].tolist() != list(range(n))  # shuffled
    x = pairs.matrices()[0]
    assert x.shape == (8, 9) and x.sum() == n and np.all(x[np.arange(n), pairs.perm[0, :n]] == 1)
    np.testing.assert_array_equal(pairs.edges1[0][pairs.edges1[0, :, 0] >= 0], delaunay_edges(source[common]))
    assert fmt.pair_sizes(split) == (6, 8)


def test_assemble_refuses_too_small_padding_and_lonely_keypoints():
    split = _split(np.random.default_rng(0).uniform(0, 9, (5, 2)), np.random.default_rng(1).uniform(0, 9, (5, 2)))
    with pytest.raises(cache.DataError, match=r"`max_nodes1` must be >= 5 .* Received: max_nodes1=4"):
        fmt.assemble(split, 0, max_nodes1=4)
    lonely = _split(np.array([[1.0, 1], [2, 2], [NAN, NAN]]), np.array([[1.0, 1], [NAN, NAN], [3, 3]]))
    with pytest.raises(cache.DataError, match="has 1 common keypoints"):
        fmt.assemble(lonely, 0)


def test_make_dataset_normalises_images_and_batches_the_pairs():
    split = _split(np.random.default_rng(0).uniform(0, 9, (5, 2)), np.random.default_rng(1).uniform(0, 9, (5, 2)))
    split.images[1] = 255
    pairs = fmt.assemble(split, 0)
    inputs, target = next(iter(make_dataset(split, pairs, batch_size=2)))
    np.testing.assert_allclose(inputs["images1"].numpy()[0, 0, 0], (0 - MEAN) / STD, rtol=1e-6)
    np.testing.assert_allclose(inputs["images2"].numpy()[0, 0, 0], (1 - MEAN) / STD, rtol=1e-6)
    np.testing.assert_array_equal(target.numpy(), pairs.matrices())
    np.testing.assert_array_equal(inputs["perm"].numpy(), pairs.matrices())
    with pytest.raises(ValueError, match="`batch_size` must be a positive integer. Received: batch_size=0"):
        make_dataset(split, pairs, batch_size=0)


# ---------------------------------------------------------------------------------------------- offline
@pytest.fixture(scope="module")
def tiny_build(tmp_path_factory):
    root = tmp_path_factory.mktemp("gm")
    downloads = pathlib.Path(cache.data_dir()) / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    os.symlink(downloads, root / "downloads")
    counts = {"instances": {"train": 3, "val": 2, "test": 2}, "pairs": {"train": 2, "val": 1, "test": 2}}
    folder = building.build(root, image_size=32, num_stereo=3, progress=False, **counts)
    return root, folder, building.load(root, 32)


def test_offline_build_holds_valid_pairs_of_each_class(tiny_build):
    _, folder, splits = tiny_build
    assert sorted(splits) == ["stereo", "test", "train", "val"]
    record = json.loads((folder / "build.json").read_text())
    assert record["sources"]["files"] == building.SOURCES and set(record["files"]) >= {"train_images.npy"}
    for name in ("train", "val", "test"):
        split = splits[name]
        assert split.class_names == [f.split(".")[0] for f in building.CLASS_IMAGES]
        assert len(split.pairs) == {"train": 2, "val": 1, "test": 2}[name] * 8
        s, t = split.pairs.T
        assert np.all(split.classes[s] == split.classes[t]) and np.all(s != t)
        visible = np.isfinite(split.points[..., 0])
        assert np.all((visible[s] & visible[t]).sum(axis=1) >= 3)
        p = split.points[visible]
        assert p.min() >= 1.0 and p.max() <= 30.0
        assert split.outliers.shape[1] == 2
    # held-out warps: no test image equals a training image
    train, test = splits["train"].images.reshape(len(splits["train"].images), -1), splits["test"].images
    assert not any((train == image.reshape(1, -1)).all(axis=1).any() for image in test)


def test_offline_build_is_reused_and_a_changed_file_is_named(tiny_build):
    root, folder, _ = tiny_build
    counts = {"instances": {"train": 3, "val": 2, "test": 2}, "pairs": {"train": 2, "val": 1, "test": 2}}
    stamp = (folder / "train_images.npy").stat().st_mtime_ns
    assert building.build(root, image_size=32, num_stereo=3, progress=False, **counts) == folder
    assert (folder / "train_images.npy").stat().st_mtime_ns == stamp
    path = folder / "val_pairs.npy"
    original = path.read_bytes()
    try:
        np.save(path, np.zeros((1, 2), np.int32))
        with pytest.raises(cache.CorruptDataError, match="val_pairs.npy"):
            building.load(root, 32)
    finally:
        path.write_bytes(original)


def test_build_refuses_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="`image_size` must be an integer >= 16. Received: image_size=8"):
        building.build(tmp_path, image_size=8)
    with pytest.raises(ValueError, match=r"`instances` must map .* Received: instances="):
        building.build(tmp_path, instances={"train": 0})


def test_stereo_matches_lie_on_the_same_rows_and_follow_the_disparity(tiny_build):
    """Rectified stereo: a true match is on the same image row; and the disparity's sign convention (right
    x = left x - d) is the one whose patches agree (checked on the full-resolution views)."""
    root, _, splits = tiny_build
    stereo = splits["stereo"]
    pairs = fmt.assemble(stereo, seed=0)
    for i in range(len(pairs)):
        n = int(pairs.num_nodes1[i])
        np.testing.assert_allclose(pairs.points2[i, pairs.perm[i, :n], 1], pairs.points1[i, :n, 1], atol=1e-5)
    sources = building.read_sources(building.fetch_wheel(root, verbose=False))
    left, right, disparity = building.stereo_views(sources)
    rng = np.random.default_rng(0)
    ys, xs = np.nonzero(np.isfinite(disparity))
    wins = valid = 0
    for k in rng.choice(len(ys), 200, replace=False):
        y, x = ys[k], xs[k]
        d = int(round(disparity[y, x]))
        if not (8 <= y < 492 and d + 8 <= x < 733 - d):
            continue
        patch = left[y - 4 : y + 5, x - 4 : x + 5]
        minus = np.abs(patch - right[y - 4 : y + 5, x - d - 4 : x - d + 5]).mean()
        plus = np.abs(patch - right[y - 4 : y + 5, x + d - 4 : x + d + 5]).mean()
        wins += minus < plus
        valid += 1
    assert valid > 50 and wins > 0.8 * valid, (wins, valid)


# ------------------------------------------------------------------------------------------------- real
def _jpeg(path, width, height, value):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((height, width, 3), value, np.uint8)).save(path)


def _berkeley(path, image, bounds, keypoints):
    path.parent.mkdir(parents=True, exist_ok=True)
    kps = "".join(f'<keypoint name="{n}" visible="1" x="{x}" y="{y}" z="0"/>' for n, (x, y) in keypoints.items())
    xmin, ymin, w, h = bounds
    path.write_text(
        f'<annotation><image>{image}</image><category>c</category><visible_bounds height="{h}" width="{w}" '
        f'xmin="{xmin}" ymin="{ymin}"/><keypoints>{kps}</keypoints></annotation>'
    )


def test_voc_loader_crops_scales_and_names_keypoints(tmp_path):
    root = tmp_path / "PascalVOC"
    kp = {"nose": (30.0, 40.0), "L_eye": (50.0, 20.0), "R_eye": (60.0, 60.0), "tail": (500.0, 500.0)}
    for c in ("cat", "dog"):
        for i in range(5):
            _jpeg(root / "VOC2011" / "JPEGImages" / f"{c}{i}.jpg", 100, 80, 40 * i)
            _berkeley(root / "annotations" / c / f"{c}{i}_1.xml", f"{c}{i}", (10, 20, 80, 50), kp)
    splits = real.load_voc(root, image_size=16, pairs={"train": 2, "val": 1, "test": 1}, seed=0)
    assert splits["train"].class_names == ["cat", "dog"]
    # every 5th object (sorted) is a test object; every 10th training object a validation one
    assert len(splits["test"].images) == 2 and len(splits["train"].images) == 8 and len(splits["val"].images) == 0
    test = splits["test"]
    names = sorted(kp)  # ids: L_eye, R_eye, nose, tail
    for name, (x, y) in kp.items():
        expected = [(x - 10) * 16 / 80, (y - 20) * 16 / 50]
        inside = 0 <= expected[0] <= 15 and 0 <= expected[1] <= 15
        if inside:
            np.testing.assert_allclose(test.points[0, names.index(name)], expected, rtol=1e-6)
        else:
            assert np.isnan(test.points[0, names.index(name)]).all()  # outside the visible bounds
    assert test.images.shape == (2, 16, 16, 3) and int(test.images[0].mean()) == 160  # cat4: value 4 * 40
    assert all(test.classes[s] == test.classes[t] for s, t in test.pairs)
    with pytest.raises(cache.DataError, match="missing folder .*annotations"):
        real.load_voc(tmp_path / "nothing", 16, {"train": 1, "val": 1, "test": 1}, 0)


def test_spair_loader_reads_pairs_and_keypoint_ids(tmp_path):
    root = tmp_path / "SPair-71k"
    for name in ("a.jpg", "b.jpg"):
        _jpeg(root / "JPEGImages" / "cat" / name, 60, 40, 100)
    pair = {
        "src_imname": "a.jpg",
        "trg_imname": "b.jpg",
        "category": "cat",
        "src_bndbox": [0, 0, 60, 40],
        "trg_bndbox": [10, 0, 50, 40],
        "kps_ids": ["0", "3", "5"],
        "src_kps": [[6, 4], [30, 20], [54, 36]],
        "trg_kps": [[20, 10], [30, 20], [40, 30]],
    }
    for folder in ("trn", "val", "test"):
        (root / "PairAnnotation" / folder).mkdir(parents=True)
        (root / "PairAnnotation" / folder / "0001-a-b:cat.json").write_text(json.dumps(pair))
    splits = real.load_spair(root, image_size=20)
    test = splits["test"]
    assert test.pairs.tolist() == [[0, 1]] and test.points.shape == (2, 6, 2)
    np.testing.assert_allclose(test.points[0, [0, 3, 5]], np.array(pair["src_kps"]) * [20 / 60, 20 / 40])
    np.testing.assert_allclose(test.points[1, [0, 3, 5]], (np.array(pair["trg_kps"]) - [10, 0]) * [20 / 40, 20 / 40])
    assert np.isnan(test.points[0, [1, 2, 4]]).all()
    pairs = fmt.assemble(test, seed=0)
    n = int(pairs.num_nodes1[0])
    np.testing.assert_allclose(pairs.points2[0, pairs.perm[0, :n]] * 20, test.points[1, [0, 3, 5]], rtol=1e-5)


def test_auto_source_finds_a_placed_data_set(tmp_path):
    from identity_tf.datasets.graph_matching import resolve_source

    assert resolve_source("auto", tmp_path) == "offline"
    (tmp_path / "graph_matching" / "SPair-71k" / "PairAnnotation").mkdir(parents=True)
    assert resolve_source("auto", tmp_path) == "spair"
    (tmp_path / "graph_matching" / "PascalVOC" / "annotations").mkdir(parents=True)
    assert resolve_source("auto", tmp_path) == "voc"
    with pytest.raises(ValueError, match="`source` must be one of .* Received: source='coco'"):
        resolve_source("coco", tmp_path)
