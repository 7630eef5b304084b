"""Run directories: reuse rules, backups that survive damage, atomic writes, the lock and a full disk (toy task)."""

import csv
import errno
import json
import os
import socket
import subprocess
import sys

import pytest
import yaml

from identity_tf import backup as backup_lib
from identity_tf import cli, train
from identity_tf import run_dir as run_dir_lib


def history(run):
    with open(run / "history.csv") as f:
        return list(csv.DictReader(f))


def epochs(run):
    return [int(row["epoch"]) for row in history(run)]


def crash_in_epoch_3(toy, run, **overrides):
    """A toy run that dies at the start of its third epoch: two committed backups, no metrics.json."""
    toy.crash["at_epoch"] = 2
    with pytest.raises(RuntimeError, match="simulated crash"):
        train.train(toy.config(**overrides), run, verbose=0, plots=False)
    toy.crash["at_epoch"] = None
    assert epochs(run) == [0, 1] and not (run / "metrics.json").exists()
    assert sorted(p.name for p in (run / "backup").glob("epoch-*.json")) == ["epoch-0001.json", "epoch-0002.json"]


# ------------------------------------------------------------------------------------------------- reuse rules
def test_finished_run_of_the_same_config_is_not_trained_again(toy_task, tmp_path, monkeypatch):
    run = tmp_path / "run"
    first = train.train(toy_task.config(), run, verbose=0, plots=False)
    assert first["status"] == "ok" and epochs(run) == [0, 1, 2] and not (run / "backup").exists()
    saved = (run / "history.csv").read_text()
    monkeypatch.setattr(train, "_run", lambda *a, **k: pytest.fail("a finished run was trained again"))
    again = train.train(toy_task.config(), run, verbose=0, plots=False)
    assert again["reused"] is True and again["test"] == first["test"]
    assert (run / "history.csv").read_text() == saved  # no second copy of the epochs
    assert cli.main(["train", str(_config_file(tmp_path, toy_task.config())), "--out", str(run)]) == 0


def _config_file(folder, config):
    path = folder / "toy.yaml"
    resolved = config.to_dict()
    resolved["model"].pop("n")  # filled in from the data
    path.write_text(yaml.safe_dump(resolved))
    return path


def test_different_config_is_refused_unless_overwrite(toy_task, tmp_path, capsys):
    run = tmp_path / "run"
    train.train(toy_task.config(), run, verbose=0, plots=False)
    with pytest.raises(run_dir_lib.RunDirError, match=r"finished run of a different config.*train.epochs: 3 -> 2"):
        train.train(toy_task.config(**{"train.epochs": 2}), run, verbose=0, plots=False)
    path = _config_file(tmp_path, toy_task.config(**{"train.epochs": 2}))
    assert cli.main(["train", str(path), "--out", str(run)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert cli.main(["train", str(path), "--out", str(run), "--overwrite"]) == 0
    assert epochs(run) == [0, 1] and yaml.safe_load((run / "config.yaml").read_text())["train"]["epochs"] == 2


def test_a_directory_that_is_no_run_directory_is_never_written(toy_task, tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "thesis.tex").write_text("precious")
    for overwrite in (False, True):
        with pytest.raises(run_dir_lib.RunDirError, match="holds no config.yaml, so it is not a run directory"):
            train.train(toy_task.config(), folder, verbose=0, plots=False, overwrite=overwrite)
    assert sorted(p.name for p in folder.iterdir()) == ["thesis.tex"]


def test_unfinished_run_resumes_at_its_first_unfinished_epoch(toy_task, tmp_path):
    run = tmp_path / "run"
    crash_in_epoch_3(toy_task, run)
    metrics = train.train(toy_task.config(), run, verbose=0, plots=False)
    assert metrics["resumed_at_epoch"] == 2 and epochs(run) == [0, 1, 2]
    assert json.loads((run / "metrics.json").read_text())["status"] == "ok"


# ---------------------------------------------------------------------------------------------- damaged backups
def test_damaged_newest_backup_falls_back_to_the_one_before(toy_task, tmp_path):
    run = tmp_path / "run"
    crash_in_epoch_3(toy_task, run)
    newest = run / "backup" / "epoch-0002.weights.h5"
    newest.write_bytes(newest.read_bytes()[:100])  # what a SIGKILL in the middle of an h5 write left before
    with pytest.warns(RuntimeWarning, match=r"backup epoch-0002.json .* unusable .*checksum.*falling back"):
        metrics = train.train(toy_task.config(), run, verbose=0, plots=False)
    assert metrics["resumed_at_epoch"] == 1 and epochs(run) == [0, 1, 2]  # epoch 2 retrained, not duplicated


def test_no_usable_backup_restarts_from_epoch_1(toy_task, tmp_path):
    run = tmp_path / "run"
    crash_in_epoch_3(toy_task, run)
    for path in (run / "backup").glob("epoch-*.weights.h5"):
        path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    (run / "history.csv").write_bytes(b"\xff\xfe garbage")  # a damaged history is rebuilt, not parsed
    with pytest.warns(RuntimeWarning, match="no usable backup .* restarts from epoch 1"):
        metrics = train.train(toy_task.config(), run, verbose=0, plots=False)
    assert metrics["resumed_at_epoch"] == 0 and epochs(run) == [0, 1, 2]


def test_damaged_history_is_rewritten_from_the_backup(toy_task, tmp_path):
    run = tmp_path / "run"
    crash_in_epoch_3(toy_task, run)
    rows = history(run)
    (run / "history.csv").write_text("epoch,loss\n0,1\n0,1\n0,1\n1,garbage\n5")  # duplicated and torn rows
    train.train(toy_task.config(), run, verbose=0, plots=False)
    resumed = history(run)
    assert [int(r["epoch"]) for r in resumed] == [0, 1, 2] and resumed[:2] == rows


def test_files_a_kill_left_between_two_writes_are_ignored(toy_task, tmp_path):
    run = tmp_path / "run"
    crash_in_epoch_3(toy_task, run)
    # weights of epoch 3 written but not committed (no epoch-0003.json), and a temporary file of a torn write
    (run / "backup" / "epoch-0003.weights.h5").write_bytes(b"half")
    (run / "backup" / ".tmp-999-epoch-0003.json").write_text("{")
    metrics = train.train(toy_task.config(), run, verbose=0, plots=False)
    assert metrics["resumed_at_epoch"] == 2 and epochs(run) == [0, 1, 2]


def test_corrupted_run_files_are_clean_errors(toy_task, tmp_path, capsys):
    run = tmp_path / "run"
    train.train(toy_task.config(), run, verbose=0, plots=False)
    (run / "metrics.json").write_text('{"test": ')
    with pytest.raises(run_dir_lib.RunDirError, match=r"metrics.json is unreadable .*--overwrite"):
        train.train(toy_task.config(), run, verbose=0, plots=False)
    (run / "config.yaml").write_text("task: [toy\n")
    path = _config_file(tmp_path, toy_task.config())
    assert cli.main(["train", str(path), "--out", str(run)]) == 2
    assert "config.yaml is unreadable" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ atomic writes
def test_atomic_write_leaves_the_old_file_when_the_writer_fails(tmp_path):
    path = tmp_path / "metrics.json"
    run_dir_lib.atomic_write_text(path, "old")

    def torn(tmp):
        tmp.write_text("half of the new")
        raise KeyboardInterrupt  # e.g. a signal in the middle of the write

    with pytest.raises(KeyboardInterrupt):
        run_dir_lib.atomic_write(path, torn)
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_full_disk_is_a_clean_error_before_hdf5_writes(toy_task, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    crash_in_epoch_3(toy_task, run)
    usage = run_dir_lib.shutil.disk_usage(tmp_path)
    with monkeypatch.context() as patch:
        patch.setattr(run_dir_lib.shutil, "disk_usage", lambda p: usage._replace(free=4096))
        with pytest.raises(run_dir_lib.DiskFull, match=r"No space left to write .* 0.0 MiB free"):
            train.train(toy_task.config(), run, verbose=0, plots=False)
        assert sorted(p.name for p in (run / "backup").iterdir() if p.name.startswith(".tmp-")) == []
        assert cli.main(["train", str(_config_file(tmp_path, toy_task.config())), "--out", str(run)]) == 2
        assert "No space left" in capsys.readouterr().err
    metrics = train.train(toy_task.config(), run, verbose=0, plots=False)  # space freed: it resumes
    assert metrics["resumed_at_epoch"] == 2 and epochs(run) == [0, 1, 2]


def test_enospc_from_the_writer_is_disk_full(tmp_path, monkeypatch):
    def full(tmp):
        tmp.write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(run_dir_lib.DiskFull, match=r"No space left on the device while writing .*x.weights.h5"):
        run_dir_lib.atomic_write(tmp_path / "x.weights.h5", full)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_out_is_a_clean_error(toy_task, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(run_dir_lib.RunDirError, match="Cannot create the run directory"):
        train.train(toy_task.config(), blocker / "run", verbose=0, plots=False)
    assert cli.main(["train", str(_config_file(tmp_path, toy_task.config())), "--out", str(blocker / "run")]) == 2
    assert "Cannot create the run directory" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------------- lock
def test_a_held_lock_refuses_a_second_training(toy_task, tmp_path, capsys):
    run = tmp_path / "run"
    with run_dir_lib.RunLock(run):
        owner = json.loads((run / "run.lock").read_text())
        assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
        with pytest.raises(run_dir_lib.RunDirLocked, match=rf"in use by another training: pid {os.getpid()} on host"):
            train.train(toy_task.config(), run, verbose=0, plots=False)
        assert cli.main(["train", str(_config_file(tmp_path, toy_task.config())), "--out", str(run)]) == 2
        assert "in use by another training" in capsys.readouterr().err
    assert not (run / "run.lock").exists()  # released
    assert train.train(toy_task.config(), run, verbose=0, plots=False)["status"] == "ok"


def test_a_stale_lock_is_reported_and_taken_over(toy_task, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid is no longer running
    stale = {"pid": dead.pid, "host": socket.gethostname(), "started": "yesterday"}
    (run / "run.lock").write_text(json.dumps(stale))
    with pytest.warns(RuntimeWarning, match=rf"took over the stale lock .*pid {dead.pid} .*no longer running"):
        metrics = train.train(toy_task.config(), run, verbose=0, plots=False)
    assert metrics["status"] == "ok" and not (run / "run.lock").exists()


def test_a_lock_of_another_host_is_not_taken_over(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.lock").write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": "now"}))
    with pytest.raises(run_dir_lib.RunDirLocked, match=r"another host: pid 1 on host elsewhere.*delete"):
        run_dir_lib.RunLock(run).acquire()


def test_backup_keeps_two_records(toy_task, tmp_path):
    run = tmp_path / "run"
    toy_task.crash["at_epoch"] = 4
    with pytest.raises(RuntimeError):
        train.train(toy_task.config(**{"train.epochs": 5}), run, verbose=0, plots=False)
    names = sorted(p.name for p in (run / "backup").iterdir())
    records = [json.loads((run / "backup" / n).read_text()) for n in names if n.endswith(".json")]
    assert [r["epoch"] for r in records] == [3, 4]
    named = {r["weights"] for r in records} | {r["best"]["file"] for r in records if r["best"]}
    assert set(names) == named | {"epoch-0003.json", "epoch-0004.json"}  # nothing else is kept
    for r in records:
        assert backup_lib.sha256(run / "backup" / r["weights"]) == r["weights_sha256"]
