"""Tests of the dataset cache helpers: data directory precedence, pinned downloads, atomic writes."""

import hashlib
import json
import os
import pathlib
import shutil
import signal
import stat
import subprocess
import sys
import time

import numpy as np
import pytest

from identity_tf.datasets import cache
from identity_tf.datasets.cache import DataError

CONTENT = b"fake tarball"
CONTENT_SHA = hashlib.sha256(CONTENT).hexdigest()
WRONG_SHA = "0" * 64


# ---------------------------------------------------------------------------------------------- helpers
def fake_executable(folder: pathlib.Path, name: str, script: str) -> pathlib.Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.fixture
def fake_npm(tmp_path, monkeypatch):
    """An `npm` on PATH whose `pack` writes CONTENT to fake-1.0.0.tgz (or fails for package 'missing')."""
    script = (
        'case "$2" in missing@*) echo "npm error code E404 Not Found: $2" >&2; exit 1;; esac\n'
        f"printf '{CONTENT.decode()}' > fake-1.0.0.tgz\n"
    )
    fake_executable(tmp_path / "bin", "npm", script)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    return tmp_path / "data"


@pytest.fixture
def fake_pip(tmp_path, monkeypatch):
    """A `python` whose `-m pip download ... -d DIR` writes CONTENT to DIR/fake_pkg-1.0-py3-none-any.whl."""
    script = (
        'while [ $# -gt 0 ]; do if [ "$1" = "-d" ]; then dir="$2"; fi; shift; done\n'
        f"printf '{CONTENT.decode()}' > \"$dir/fake_pkg-1.0-py3-none-any.whl\"\n"
    )
    python = fake_executable(tmp_path / "bin", "python", script)
    monkeypatch.setattr(cache.sys, "executable", str(python))
    return tmp_path / "data"


def leftovers(folder: pathlib.Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


# -------------------------------------------------------------------------------------------- data_dir
def test_data_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv(cache.DATA_DIR_ENV, raising=False)
    assert cache.data_dir() == (tmp_path / "home" / ".cache" / "identity_tf").resolve()

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.data_dir() == (tmp_path / "xdg" / "identity_tf").resolve()

    monkeypatch.setenv(cache.DATA_DIR_ENV, str(tmp_path / "env"))
    assert cache.data_dir() == (tmp_path / "env").resolve()

    assert cache.data_dir(tmp_path / "override") == (tmp_path / "override").resolve()
    assert cache.data_dir(str(tmp_path / "override")).is_dir()


def test_data_dir_that_cannot_be_created(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="Cannot create the data directory"):
        cache.data_dir(tmp_path / "file" / "sub")


def test_sha256_file(tmp_path):
    (tmp_path / "a").write_bytes(CONTENT)
    assert cache.sha256_file(tmp_path / "a") == CONTENT_SHA


# ------------------------------------------------------------------------------------------- fetch_npm
def test_fetch_npm_downloads_verifies_and_reuses(fake_npm, monkeypatch):
    path = cache.fetch_npm("fake", "1.0.0", CONTENT_SHA, fake_npm)
    assert path == fake_npm / "downloads" / "fake-1.0.0.tgz"
    assert path.read_bytes() == CONTENT
    assert leftovers(fake_npm / "downloads") == ["fake-1.0.0.tgz"]  # no temporary folders left
    monkeypatch.setenv("PATH", "")  # npm gone: the cached file is reused
    assert cache.fetch_npm("fake", "1.0.0", CONTENT_SHA.upper(), fake_npm) == path


def test_fetch_npm_checksum_mismatch_leaves_nothing(fake_npm):
    with pytest.raises(DataError, match=f"expected sha256 {WRONG_SHA}, received {CONTENT_SHA}"):
        cache.fetch_npm("fake", "1.0.0", WRONG_SHA, fake_npm)
    assert leftovers(fake_npm / "downloads") == []


def test_fetch_npm_replaces_a_corrupted_cached_file(fake_npm):
    (fake_npm / "downloads").mkdir(parents=True)
    (fake_npm / "downloads" / "fake-1.0.0.tgz").write_bytes(b"corrupted")
    path = cache.fetch_npm("fake", "1.0.0", CONTENT_SHA, fake_npm)
    assert path.read_bytes() == CONTENT


def test_fetch_npm_command_failure(fake_npm):
    with pytest.raises(DataError, match=r"(?s)npm package missing@1\.0\.0 failed.*E404") as info:
        cache.fetch_npm("missing", "1.0.0", CONTENT_SHA, fake_npm)
    assert "exited with status 1" in str(info.value)
    assert leftovers(fake_npm / "downloads") == []


def test_fetch_npm_without_npm(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    target = tmp_path / "data" / "downloads" / "fake-1.0.0.tgz"
    with pytest.raises(DataError, match="`npm` command \\(Node.js's package manager\\) was not found") as info:
        cache.fetch_npm("fake", "1.0.0", CONTENT_SHA, tmp_path / "data")
    message = str(info.value)
    assert "nothing is installed" in message and "apt-get install npm" in message
    assert f"place the tarball (sha256 {CONTENT_SHA}) at {str(target)!r}" in message


def test_fetch_says_what_is_downloaded_and_where(fake_npm, fake_pip, capsys):
    cache.fetch_npm("fake", "1.0.0", CONTENT_SHA, fake_npm)
    cache.fetch_wheel("fake-pkg", "1.0", CONTENT_SHA, fake_npm)
    err = capsys.readouterr().err
    downloads = str(fake_npm / "downloads")
    assert f"Downloading npm package fake@1.0.0 with `npm pack` into {downloads!r}" in err
    assert f"Downloading Python wheel fake-pkg==1.0 with `pip download --no-deps` into {downloads!r}" in err
    cache.fetch_npm("fake", "1.0.0", CONTENT_SHA, fake_npm)  # cached: nothing to say
    cache.fetch_npm("other", "1.0.0", CONTENT_SHA, fake_npm, verbose=False)
    assert capsys.readouterr().err == ""


@pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed")
def test_fetch_npm_unknown_package_from_the_registry(tmp_path):
    name = "identity-tf-no-such-package-7f3a9c"
    with pytest.raises(DataError, match=f"(?s){name}@1.0.0.*exited with status"):
        cache.fetch_npm(name, "1.0.0", WRONG_SHA, tmp_path)
    assert leftovers(tmp_path / "downloads") == []


def test_fetch_rejects_a_malformed_checksum(tmp_path):
    with pytest.raises(ValueError, match="64-digit hex sha256"):
        cache.fetch_npm("fake", "1.0.0", "abc", tmp_path)


# ----------------------------------------------------------------------------------------- fetch_wheel
def test_fetch_wheel_downloads_verifies_and_reuses(fake_pip, monkeypatch):
    path = cache.fetch_wheel("fake-pkg", "1.0", CONTENT_SHA, fake_pip)
    assert path == fake_pip / "downloads" / "fake_pkg-1.0-py3-none-any.whl"
    assert path.read_bytes() == CONTENT
    assert leftovers(fake_pip / "downloads") == [path.name]
    monkeypatch.setattr(cache.sys, "executable", "/nonexistent/python")  # pip gone: the cache answers
    assert cache.fetch_wheel("fake_pkg", "1.0", CONTENT_SHA, fake_pip) == path


def test_fetch_wheel_checksum_mismatch_leaves_nothing(fake_pip):
    with pytest.raises(DataError, match="Checksum mismatch for Python wheel fake-pkg==1.0"):
        cache.fetch_wheel("fake-pkg", "1.0", WRONG_SHA, fake_pip)
    assert leftovers(fake_pip / "downloads") == []


def test_fetch_wheel_command_failure(tmp_path, monkeypatch):
    python = fake_executable(tmp_path / "bin", "python", 'echo "ERROR: No matching distribution" >&2; exit 1\n')
    monkeypatch.setattr(cache.sys, "executable", str(python))
    with pytest.raises(DataError, match="(?s)exited with status 1.*No matching distribution"):
        cache.fetch_wheel("fake-pkg", "1.0", CONTENT_SHA, tmp_path)
    assert leftovers(tmp_path / "downloads") == []


# ------------------------------------------------------------------------------------------ atomic writes
def test_atomic_save_npy(tmp_path):
    cache.atomic_save_npy(tmp_path / "a.npy", np.arange(3))
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), np.arange(3))
    assert leftovers(tmp_path) == ["a.npy"]
    assert (tmp_path / "a.npy").stat().st_mode & 0o044  # readable by others as with a plain np.save (umask 022)


def test_atomic_save_npy_failure_leaves_the_old_file(tmp_path):
    cache.atomic_save_npy(tmp_path / "a.npy", np.arange(3))
    with pytest.raises(ValueError):
        cache.atomic_save_npy(tmp_path / "a.npy", np.array([{"a": 1}], dtype=object))  # pickling is refused
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), np.arange(3))
    assert leftovers(tmp_path) == ["a.npy"]


def test_atomic_dir_replaces_on_success(tmp_path):
    target = tmp_path / "set"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with cache.atomic_dir(target) as tmp:
        assert tmp.parent == tmp_path and not (tmp / "old.txt").exists()
        (tmp / "new.txt").write_text("new")
        assert not (target / "new.txt").exists()  # nothing visible before the end
    assert leftovers(tmp_path) == ["new.txt", "set"]
    assert (target / "new.txt").read_text() == "new"


def test_atomic_dir_leaves_nothing_on_an_exception(tmp_path):
    target = tmp_path / "set"
    with pytest.raises(RuntimeError, match="boom"):
        with cache.atomic_dir(target) as tmp:
            (tmp / "half.npy").write_text("half")
            raise RuntimeError("boom")
    assert leftovers(tmp_path) == []
    target.mkdir()
    (target / "keep.txt").write_text("keep")
    with pytest.raises(RuntimeError):
        with cache.atomic_dir(target) as tmp:
            raise RuntimeError("boom")
    assert leftovers(tmp_path) == ["keep.txt", "set"]
    assert os.listdir(target) == ["keep.txt"]


# --------------------------------------------------------------------------------------------- load_npy
class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_load_npy_never_unpickles_without_opt_in(tmp_path):
    marker = tmp_path / "payload_ran"
    np.save(tmp_path / "a.npy", np.array([_Payload(marker), 1], dtype=object), allow_pickle=True)
    with pytest.raises(
        cache.PickleRefusedError, match=r"(?s)a\.npy' holds a pickled object array.*ask first\. Rebuild"
    ):
        cache.load_npy(tmp_path / "a.npy", hint="Rebuild it.", pickle_hint="ask first.")
    assert not marker.exists()
    cache.load_npy(tmp_path / "a.npy", allow_pickle=True)  # the explicit opt-in unpickles (and runs the payload)
    assert marker.is_dir()


def test_load_npy_reads_plain_and_memory_mapped_arrays(tmp_path):
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.save(tmp_path / "a.npy", array)
    np.testing.assert_array_equal(cache.load_npy(tmp_path / "a.npy"), array)
    mapped = cache.load_npy(tmp_path / "a.npy", mmap_mode="r")
    assert isinstance(mapped, np.memmap)
    np.testing.assert_array_equal(mapped, array)


def test_load_npy_damaged_files(tmp_path):
    np.save(tmp_path / "a.npy", np.arange(100, dtype=np.int64))
    content = (tmp_path / "a.npy").read_bytes()
    (tmp_path / "empty.npy").write_bytes(b"")
    (tmp_path / "short.npy").write_bytes(content[:-1])
    (tmp_path / "header.npy").write_bytes(content[:20])
    with pytest.raises(DataError, match=r"empty\.npy' is empty \(0 bytes\)"):
        cache.load_npy(tmp_path / "empty.npy")
    with pytest.raises(DataError, match=r"short\.npy' is truncated: 927 bytes, .* shape \(100,\) \(928 bytes\)"):
        cache.load_npy(tmp_path / "short.npy")
    with pytest.raises(DataError, match=r"header\.npy' is not a readable \.npy file"):
        cache.load_npy(tmp_path / "header.npy")
    with pytest.raises(DataError, match=r"Missing file .*nothing\.npy'\. Place it there\."):
        cache.load_npy(tmp_path / "nothing.npy", hint="Place it there.")


# ------------------------------------------------------------------------------------- integrity records
def test_build_state_covers_every_case(tmp_path, capsys):
    folder = tmp_path / "set"
    wanted = {"seed": 0}

    def state():
        return cache.build_state(folder, "build.json", lambda record: record.get("seed") == 0, "demo set")

    assert state() == "missing"
    folder.mkdir()
    (folder / ".tmp-build.json-pid1-x").write_text("{")  # a leftover of a killed write
    assert state() == "missing"
    (folder / "a.npy").write_bytes(b"abc")
    assert state() == "foreign"  # files, no record: someone else's
    record = cache.write_record(folder, "build.json", wanted)
    assert record == {"seed": 0, "files": {"a.npy": {"size": 3, "sha256": hashlib.sha256(b"abc").hexdigest()}}}
    assert state() == "current"
    cache.write_record(folder, "build.json", {"seed": 1})
    assert state() == "stale"
    (folder / "build.json").write_text(json.dumps(wanted))
    assert state() == "unverified"
    (folder / "build.json").write_text("{broken")
    assert state() == "stale"  # our record, unreadable
    cache.write_record(folder, "build.json", wanted)
    (folder / "a.npy").write_bytes(b"abd")  # same size, other content
    capsys.readouterr()
    assert state() == "corrupt"
    assert "demo set in" in capsys.readouterr().err


def test_verify_files_names_each_problem(tmp_path):
    for name, content in (("a.npy", b"aaa"), ("b.npy", b"bbb"), ("c.npy", b"ccc")):
        (tmp_path / name).write_bytes(content)
    files = cache.record_files(tmp_path)
    cache.verify_files(tmp_path, files, "demo")
    (tmp_path / "a.npy").unlink()
    (tmp_path / "b.npy").write_bytes(b"bbbb")
    (tmp_path / "c.npy").write_bytes(b"CCC")
    with pytest.raises(cache.CorruptDataError) as info:
        cache.verify_files(tmp_path, files, "demo", hint="Rebuild it.")
    message = str(info.value)
    assert "a.npy (missing); b.npy (size 4 bytes, recorded 3); c.npy (sha256 " in message
    assert message.endswith("Rebuild it.")
    assert info.value.files == ("a.npy", "b.npy", "c.npy")
    digests_only = {name: entry["sha256"] for name, entry in files.items()}
    with pytest.raises(cache.CorruptDataError, match=r"b\.npy \(sha256"):  # records without sizes still work
        cache.verify_files(tmp_path, {"b.npy": digests_only["b.npy"]}, "demo")


def test_verify_files_hashes_a_file_once(tmp_path, monkeypatch):
    (tmp_path / "a.npy").write_bytes(b"a" * 1000)
    files = cache.record_files(tmp_path)
    hashed = []
    real = cache.sha256_file
    monkeypatch.setattr(cache, "sha256_file", lambda path: hashed.append(path) or real(path))
    cache.verify_files(tmp_path, files, "demo")
    cache.verify_files(tmp_path, files, "demo")
    assert hashed == []  # record_files cached the digest with the file's size, mtime and inode
    os.utime(tmp_path / "a.npy", ns=(1, 1))  # touched: hashed again, once
    cache.verify_files(tmp_path, files, "demo")
    cache.verify_files(tmp_path, files, "demo")
    assert len(hashed) == 1


# ------------------------------------------------------------------------- interrupted builds (subprocesses)
CHILD = r"""
import importlib.util, pathlib, sys, time
spec = importlib.util.spec_from_file_location("cache_under_test", sys.argv[1])
cache = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cache)
mode, root = sys.argv[2], pathlib.Path(sys.argv[3])
if mode == "download":
    cache.fetch_npm("fake", "1.0.0", "0" * 64, root)
elif mode == "signal_at_start":  # the SIGTERM arrives while Popen is still starting the client
    import os, signal, subprocess
    real_popen = subprocess.Popen
    def popen(*args, **kwargs):
        process = real_popen(*args, **kwargs)
        while not (root / "state" / "child.pid").exists():
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)  # the handler runs in here, before Popen has returned the process
        return process
    subprocess.Popen = popen
    cache.fetch_npm("fake", "1.0.0", "0" * 64, root)
else:
    with cache.atomic_dir(root / "set") as tmp:
        (tmp / "half.npy").write_bytes(b"x" * 1000)
        (root / "state" / "ready").write_text("ready")
        time.sleep(60)
"""


def wait_for(path, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text().strip():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)
    return path.read_text().strip()


def start_build(tmp_path, mode):
    """A child process in the middle of a download (a fake `npm` that hangs with a child of its own) or of an
    atomic_dir write; returns (process, root, pids of the processes it started)."""
    root, state = tmp_path / "data", tmp_path / "data" / "state"
    state.mkdir(parents=True)
    hang = f'echo $$ > "{state}/npm.pid"; sleep 60 & echo $! > "{state}/child.pid"; wait\n'
    fake_executable(tmp_path / "bin", "npm", hang)
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
    process = subprocess.Popen([sys.executable, "-c", CHILD, cache.__file__, mode, str(root)], env=env)
    if mode in ("download", "signal_at_start"):
        pids = [int(wait_for(state / "npm.pid")), int(wait_for(state / "child.pid"))]
    else:
        wait_for(state / "ready")
        pids = []
    return process, root, pids


def still_alive(pids, timeout=10.0):
    """The pids still running after up to ``timeout`` seconds (killed processes take a moment to go)."""
    deadline = time.monotonic() + timeout
    while any(cache._process_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [pid for pid in pids if cache._process_alive(pid)]


def temporaries(root):
    return sorted(p.name for p in root.rglob(".*") if p.name.startswith((".tmp-", ".old-")))


@pytest.mark.parametrize("mode", ["download", "write"])
def test_sigterm_mid_build_leaves_no_temporary_and_no_child_process(tmp_path, mode):
    process, root, pids = start_build(tmp_path, mode)
    assert temporaries(root)  # the build is under way
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 128 + signal.SIGTERM  # cleaned up, then exited as a SIGTERM would
    assert temporaries(root) == []
    assert not (root / "set").exists()
    assert not still_alive(pids)  # npm and what it started are gone


def test_sigterm_while_the_client_starts_still_kills_it(tmp_path):
    """The race a loaded machine hit: the signal comes after npm was forked but before Popen returned.

    The SystemExit must wait until the caller can kill the client's process group, or npm is orphaned."""
    process, root, pids = start_build(tmp_path, "signal_at_start")
    assert process.wait(timeout=30) == 128 + signal.SIGTERM
    assert temporaries(root) == []
    assert not still_alive(pids)  # npm and its child are gone


def test_sigkill_leftovers_are_removed_by_the_next_build(tmp_path):
    process, root, _ = start_build(tmp_path, "write")
    process.send_signal(signal.SIGKILL)  # nothing can clean up after this one
    process.wait(timeout=30)
    left = temporaries(root)
    assert len(left) == 1 and left[0].startswith(f".tmp-set-pid{process.pid}-")
    running = root / f".tmp-set-pid{os.getpid()}-another_build"  # a live build's directory is kept
    running.mkdir()
    with cache.atomic_dir(root / "set") as tmp:
        (tmp / "done.txt").write_text("done")
    assert temporaries(root) == [running.name]
    assert (root / "set" / "done.txt").read_text() == "done"


def test_stale_entries_without_a_pid_are_removed_after_a_day(tmp_path):
    old, recent = tmp_path / ".tmp-set-abc123", tmp_path / ".tmp-set-def456"
    old.mkdir()
    recent.mkdir()
    os.utime(old, (time.time() - cache.STALE_AFTER_S - 10,) * 2)
    assert cache.remove_stale_temporaries(tmp_path, "set") == [old.name]
    assert recent.exists()


def test_exit_on_termination_keeps_the_programs_own_handler():
    own = signal.signal(signal.SIGTERM, lambda *args: None)
    try:
        mine = signal.getsignal(signal.SIGTERM)
        with cache.exit_on_termination():
            assert signal.getsignal(signal.SIGTERM) is mine
        previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
        with cache.exit_on_termination():
            assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, mine)
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        signal.signal(signal.SIGTERM, previous)
    finally:
        signal.signal(signal.SIGTERM, own)
