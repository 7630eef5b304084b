"""Tests of the one dataset protocol (identity_tf.datasets.protocol): build once with a manifest, rebuild when it
differs or a file is corrupt, leave nothing behind when a build is interrupted, and the checks of a load."""

import hashlib
import json
import pathlib

import numpy as np
import pytest
import tensorflow as tf

from identity_tf.datasets import beer, globe_tsp, mnist, protocol, warcraft
from identity_tf.datasets.cache import CorruptDataError, DataError

MANIFEST = protocol.Manifest("build.json", params={"seed": 0, "sizes": (2, 3)}, info={"licence": "CC0"})
FILES = ("a.txt", "b.txt")


class Builder:
    """Writes FILES (contents depend on the seed); counts its calls; can fail after writing the first file."""

    def __init__(self, seed=0, fail=False):
        self.seed, self.fail, self.calls = seed, fail, 0

    def __call__(self, tmp: pathlib.Path) -> None:
        self.calls += 1
        (tmp / "a.txt").write_text(f"a{self.seed}")
        if self.fail:
            raise RuntimeError("interrupted")
        (tmp / "b.txt").write_text(f"b{self.seed}")


def build(folder, builder, manifest=MANIFEST, **kwargs):
    return protocol.ensure_built(folder, manifest, builder, what="Demo", progress=False, **kwargs)


def entries(parent: pathlib.Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir())


def test_first_build_writes_files_and_manifest(tmp_path):
    builder = Builder()
    assert build(tmp_path / "demo", builder) == tmp_path / "demo"
    assert builder.calls == 1
    assert entries(tmp_path) == ["demo"]  # no temporary folder left
    assert entries(tmp_path / "demo") == [".verified.json", "a.txt", "b.txt", "build.json"]
    record = json.loads((tmp_path / "demo" / "build.json").read_text())
    assert record == {
        "seed": 0,
        "sizes": [2, 3],
        "licence": "CC0",
        "files": {
            "a.txt": {"size": 2, "sha256": hashlib.sha256(b"a0").hexdigest()},
            "b.txt": {"size": 2, "sha256": hashlib.sha256(b"b0").hexdigest()},
        },
    }


def test_matching_manifest_means_no_rebuild(tmp_path):
    builder = Builder()
    build(tmp_path / "demo", builder)
    stamp = (tmp_path / "demo" / "a.txt").stat().st_mtime_ns
    for _ in range(3):
        build(tmp_path / "demo", builder)
    assert builder.calls == 1
    assert (tmp_path / "demo" / "a.txt").stat().st_mtime_ns == stamp
    # the description is not compared: another licence text is still the same build
    build(tmp_path / "demo", builder, protocol.Manifest("build.json", MANIFEST.params, {"licence": "MIT"}))
    assert builder.calls == 1


def test_manifest_with_other_parameters_triggers_a_rebuild(tmp_path):
    builder = Builder()
    build(tmp_path / "demo", builder)
    other = protocol.Manifest("build.json", params={"seed": 1, "sizes": (2, 3)})
    rebuilder = Builder(seed=1)
    build(tmp_path / "demo", rebuilder, other)
    assert (builder.calls, rebuilder.calls) == (1, 1)
    assert (tmp_path / "demo" / "a.txt").read_text() == "a1"
    assert json.loads((tmp_path / "demo" / "build.json").read_text())["seed"] == 1
    # a manifest that lacks a parameter (an older release's) differs too
    path = tmp_path / "demo" / "build.json"
    record = json.loads(path.read_text())
    path.write_text(json.dumps({k: v for k, v in record.items() if k != "sizes"}))
    build(tmp_path / "demo", rebuilder, other)
    assert rebuilder.calls == 2


def test_interrupted_build_leaves_no_partial_folder_and_the_next_call_rebuilds(tmp_path):
    failing = Builder(fail=True)
    with pytest.raises(RuntimeError, match="interrupted"):
        build(tmp_path / "demo", failing)
    assert failing.calls == 1
    assert entries(tmp_path) == []  # neither the folder nor a temporary one
    builder = Builder()
    build(tmp_path / "demo", builder)
    assert builder.calls == 1
    assert (tmp_path / "demo" / "b.txt").read_text() == "b0"


def test_interrupted_rebuild_keeps_the_previous_folder(tmp_path):
    build(tmp_path / "demo", Builder())
    failing = Builder(seed=1, fail=True)
    with pytest.raises(RuntimeError, match="interrupted"):
        build(tmp_path / "demo", failing, protocol.Manifest("build.json", {"seed": 1}))
    assert entries(tmp_path) == ["demo"]
    assert (tmp_path / "demo" / "a.txt").read_text() == "a0"  # the old build, untouched and still current
    builder = Builder()
    build(tmp_path / "demo", builder)
    assert builder.calls == 0


def test_corrupted_file_is_a_data_error_naming_it_and_is_rebuilt(tmp_path):
    folder = build(tmp_path / "demo", Builder())
    (folder / "b.txt").write_text("bX")  # same size, other bytes
    with pytest.raises(CorruptDataError) as error:
        protocol.check_folder(folder, FILES, "build.json", "Demo", corrupt_hint="Rebuild it.")
    assert error.value.files == ("b.txt",)
    expected, received = hashlib.sha256(b"b0").hexdigest(), hashlib.sha256(b"bX").hexdigest()
    assert str(error.value) == (
        f"Demo in {str(folder)!r} differs from its build record: b.txt (sha256 {received}, recorded {expected}). "
        "Rebuild it."
    )
    builder = Builder()
    build(folder, builder)
    assert builder.calls == 1
    assert (folder / "b.txt").read_text() == "b0"
    protocol.check_folder(folder, FILES, "build.json", "Demo")  # intact again


def test_truncated_and_missing_files_are_named(tmp_path):
    folder = build(tmp_path / "demo", Builder())
    (folder / "a.txt").write_text("a")
    with pytest.raises(CorruptDataError, match=r"differs from its build record: a\.txt \(size 1 bytes, recorded 2\)"):
        protocol.check_folder(folder, FILES, "build.json", "Demo")
    (folder / "b.txt").unlink()
    with pytest.raises(DataError) as error:
        protocol.check_folder(folder, FILES, "build.json", "Demo", missing_hint="Build it.")
    assert str(error.value) == (
        f"Demo: missing file {str(folder / 'b.txt')!r}. Missing files: ['b.txt']; expected ['a.txt', 'b.txt'] in "
        f"{str(folder)!r}. Build it."
    )


def test_foreign_folder_is_used_as_it_is(tmp_path):
    folder = tmp_path / "demo"
    folder.mkdir()
    (folder / "a.txt").write_text("published")
    builder, used = Builder(), []
    assert build(folder, builder, use_foreign=lambda found: used.append(found) or found) == folder
    assert (builder.calls, used) == (0, [folder])
    assert entries(folder) == ["a.txt"]  # never written to
    with pytest.raises(
        DataError, match=r"holds files that `build` did not write \(no build.json\) but lacks \['b.txt'\]"
    ):
        protocol.require_foreign_files(folder, FILES, "build.json", "Complete it.")


@pytest.mark.parametrize("right", [True, False])
def test_unrecorded_folder_is_adopted_or_rebuilt(tmp_path, right):
    folder = tmp_path / "demo"
    folder.mkdir()
    (folder / "a.txt").write_text("a0")
    (folder / "build.json").write_text(json.dumps({"seed": 0, "sizes": [2, 3], "method": "old"}))  # no digests
    builder, checked = Builder(), []
    build(folder, builder, adopt=lambda found: checked.append(found) or right)
    assert checked == [folder]
    record = json.loads((folder / "build.json").read_text())
    if right:  # kept; the digests are recorded and the old description is kept
        assert builder.calls == 0 and entries(folder) == [".verified.json", "a.txt", "build.json"]
        assert record["method"] == "old" and record["files"] == {
            "a.txt": {"size": 2, "sha256": hashlib.sha256(b"a0").hexdigest()}
        }
    else:
        assert builder.calls == 1 and (folder / "b.txt").read_text() == "b0" and "method" not in record


def test_accept_and_force_rebuild_a_current_folder(tmp_path):
    builder = Builder()
    build(tmp_path / "demo", builder)
    build(tmp_path / "demo", builder, accept=lambda folder: True)
    assert builder.calls == 1
    build(tmp_path / "demo", builder, accept=lambda folder: False)
    assert builder.calls == 2
    build(tmp_path / "demo", builder, force=True)
    assert builder.calls == 3


def test_manifest_matching_rules():
    recorded = {"seed": 0, "sizes": [2, 3], "licence": "GPL", "files": {}, "extra": 1}
    assert MANIFEST.matches(recorded)  # JSON values (a tuple reads back as a list); other keys are not compared
    assert not MANIFEST.matches({**recorded, "seed": 1})
    assert not MANIFEST.matches({"seed": 0})
    keyed = protocol.Manifest("m.json", {"counts": {1: 2}})
    assert keyed.matches({"counts": {"1": 2}}) and not keyed.matches({"counts": {1: 2}})
    assert MANIFEST.record() == {"seed": 0, "sizes": (2, 3), "licence": "CC0"}


def test_batches_shuffle_batch_transform():
    dataset = tf.data.Dataset.range(7)
    plain = [b.numpy().tolist() for b in protocol.batches(dataset, 7, 3, transform=lambda x: x + 100)]
    assert plain == [[100, 101, 102], [103, 104, 105], [106]]
    shuffled = protocol.batches(dataset, 7, 3, shuffle=True, seed=4)
    first, second = ([int(v) for b in shuffled for v in b.numpy()] for _ in range(2))
    again = [int(v) for b in protocol.batches(dataset, 7, 3, shuffle=True, seed=4) for v in b.numpy()]
    assert sorted(first) == list(range(7)) and first == again  # a permutation, the same for the same seed
    assert first != second  # reshuffled every epoch
    assert first != list(range(7))


@pytest.mark.parametrize(
    "module, manifest",
    [
        (globe_tsp, globe_tsp.building._manifest(5, 50, 10, 0, "auto")),
        (warcraft, warcraft.building._manifest(12, {"train": 4, "val": 2, "test": 2}, 0)),
        (mnist, None),
        (beer, None),
    ],
    ids=["globe_tsp", "warcraft", "mnist", "beer"],
)
def test_every_dataset_builds_through_the_protocol(module, manifest, monkeypatch, tmp_path):
    """Each dataset's `build` goes through `protocol.ensure_built` (the rebuild logic exists once)."""
    calls = []

    def fake_ensure_built(folder, manifest, builder, **kwargs):
        calls.append((pathlib.Path(folder).name, manifest.name))
        return pathlib.Path(folder)

    monkeypatch.setattr(protocol, "ensure_built", fake_ensure_built)
    if module is globe_tsp:
        module.build(5, tmp_path, num_train=50, num_test=10)
        assert manifest.params["k"] == 5 and manifest.info["method"] == "auto"
    elif module is warcraft:
        module.build(12, tmp_path, num_train=4, num_val=2, num_test=2)
        assert manifest.params["spec"]["num_maps"] == {"train": 4, "val": 2, "test": 2}
    else:
        module.build(tmp_path)
    expected = {
        globe_tsp: ("5_countries_from_100", "provenance.json"),
        warcraft: ("12x12", "provenance.json"),
        mnist: ("mnist", "build.json"),
        beer: ("beer_generated", "build.json"),
    }[module]
    assert calls == [expected]


def test_maintainer_modules_are_not_on_the_runtime_path():
    import subprocess
    import sys

    code = (
        "import sys; from identity_tf.datasets import beer, globe_tsp, mnist, warcraft; "
        "print(sorted(m for m in sys.modules if m.startswith('identity_tf.datasets') "
        "and m.endswith(('._maintainer', '.convert'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert callable(warcraft.write_tile_atlas) and callable(globe_tsp.convert_countries)  # still importable
    assert np.array_equal(warcraft.load_tile_atlas().shape, (8, 16, 8, 8, 3))
