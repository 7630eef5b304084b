"""Resumable training state of a run directory: backups that survive a kill at any moment.

:class:`Backup` replaces Keras' ``BackupAndRestore``, ``CSVLogger`` and ``ModelCheckpoint(save_best_only=True)``
in the trainer. At the end of every epoch it writes, each file atomically (``identity_tf.run_dir.atomic_write``):

1. ``backup/best-eNNNN.weights.h5`` when the monitored validation metric improved (finite values only);
2. ``backup/epoch-NNNN.weights.h5``: model and optimizer state after epoch NNNN;
3. ``backup/epoch-NNNN.json``: the commit record: epoch, the history rows so far, the best checkpoint, the state of
   stateful callbacks and the SHA-256 of every weights file it names;
4. ``history.csv``, rewritten from the committed rows.

Only committed state counts: a kill between two writes leaves files that no record names, and they are ignored.
The last two records are kept. :meth:`Backup.restore` (before ``fit``) loads the newest record whose files are
intact (checksums verified before loading) and falls back to the one before with a warning; when none is usable
the run restarts from epoch 1, with a warning. ``history.csv`` is derived: it is rewritten from the restored
record, so an interrupted or damaged history never duplicates or loses epochs.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import pathlib
import shutil
import warnings

import keras
import numpy as np

from identity_tf import run_dir as run_dir_lib

KEEP = 2  # committed records kept (the newest and one to fall back to)


def sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_bytes(model: keras.Model) -> int:
    """About the size of ``model.save_weights`` (model and optimizer variables)."""
    variables = list(model.weights) + (list(model.optimizer.variables) if model.optimizer is not None else [])
    return int(sum(np.prod(v.shape) * np.dtype(v.dtype).itemsize for v in variables)) + 65536


def save_weights(model: keras.Model, path) -> str:
    """``model.save_weights(path)`` written atomically, after a free-space check; returns the file's SHA-256."""
    run_dir_lib.atomic_write(path, lambda tmp: model.save_weights(str(tmp)), needed_bytes=weights_bytes(model))
    return sha256(path)


def _number(value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        return str(value)
    return value


def history_csv(rows: list[dict]) -> str:
    """The rows as ``CSVLogger`` writes them: ``epoch`` first, then the other keys sorted."""
    keys = sorted({key for row in rows for key in row} - {"epoch"})
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["epoch", *keys], lineterminator="\n", restval="")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


class Backup(keras.callbacks.Callback):
    """Per-epoch backup, history and best-validation checkpoint of a run directory (module docstring).

    Args:
        run_dir: The run directory.
        monitor: Validation metric that selects the best checkpoint (e.g. ``val_tour_accuracy``).
        mode: "max" or "min".
        stateful: Callbacks with ``get_run_state() -> dict`` and ``set_run_state(dict)`` whose state is saved
            with each record (e.g. :class:`identity_tf.run_health.RunHealth`'s collapse streak).
    """

    def __init__(self, run_dir, monitor: str, mode: str, stateful=()):
        super().__init__()
        if mode not in ("max", "min"):
            raise ValueError(f"`mode` must be 'max' or 'min'. Received: mode={mode!r}")
        self.run_dir = pathlib.Path(run_dir)
        self.dir = self.run_dir / "backup"
        self.monitor, self.mode = monitor, mode
        self.stateful = list(stateful)
        self.rows: list[dict] = []
        self.best: dict | None = None  # {"epoch": index, "value", "file", "sha256"}

    # ------------------------------------------------------------------------------------------- restore
    def _records(self, folder: pathlib.Path | None = None) -> list[pathlib.Path]:
        folder = self.dir if folder is None else folder
        return sorted(folder.glob("epoch-*.json"), reverse=True) if folder.is_dir() else []

    def _load(self, model, record_path: pathlib.Path) -> dict:
        record = json.loads(record_path.read_text())
        files = [(record["weights"], record["weights_sha256"])]
        if record.get("best"):
            files.append((record["best"]["file"], record["best"]["sha256"]))
        folder = record_path.parent
        for name, digest in files:
            path = folder / name
            if not path.is_file():
                raise OSError(f"{path} is missing")
            if sha256(path) != digest:
                raise OSError(f"{path} does not match its checksum (damaged or half-written)")
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        model.load_weights(str(folder / record["weights"]))
        if folder != self.dir:  # restored from another worker's backup: this backup continues from a copy
            self.dir.mkdir(parents=True, exist_ok=True)
            for name, _ in files:
                shutil.copyfile(folder / name, self.dir / name)
            run_dir_lib.atomic_write_text(self.dir / record_path.name, json.dumps(record))
        return record

    def restore(self, model: keras.Model, source: str | pathlib.Path | None = None) -> int:
        """Loads the newest intact record into ``model``; returns the number of finished epochs (0: start over).

        ``source``: the backup folder to read instead of this one's (the non-chief workers of a multi-worker run
        resume from the chief's backup and continue in their own scratch folder).
        """
        records = self._records(None if source is None else pathlib.Path(source))
        if source is not None and not records:
            self.rows, self.best = [], None
            return 0
        for record_path in records:
            try:
                record = self._load(model, record_path)
            except (OSError, ValueError, KeyError, TypeError) as error:
                warnings.warn(
                    f"identity-tf: the backup {record_path.name} of {self.run_dir} is unusable ({error}); "
                    "falling back to the one before.",
                    RuntimeWarning,
                    stacklevel=2,
                )
                continue
            self.rows, self.best = list(record["history"]), record.get("best")
            states = record.get("callbacks", {})
            for callback in self.stateful:
                if type(callback).__name__ in states:
                    callback.set_run_state(states[type(callback).__name__])
            run_dir_lib.atomic_write_text(self.run_dir / "history.csv", history_csv(self.rows))
            return int(record["epoch"])
        if records:
            warnings.warn(
                f"identity-tf: no usable backup in {self.dir}; the run restarts from epoch 1.",
                RuntimeWarning,
                stacklevel=2,
            )
        self.rows, self.best = [], None
        if self.dir.exists():
            shutil.rmtree(self.dir)
        (self.run_dir / "history.csv").unlink(missing_ok=True)
        return 0

    # ------------------------------------------------------------------------------------------ per epoch
    def _better(self, value: float) -> bool:
        if self.best is None:
            return True
        return value > self.best["value"] if self.mode == "max" else value < self.best["value"]

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self.rows.append({"epoch": epoch, **{key: _number(logs[key]) for key in sorted(logs)}})
        self.dir.mkdir(parents=True, exist_ok=True)
        value = logs.get(self.monitor)
        if value is not None and math.isfinite(float(value)) and self._better(float(value)):
            name = f"best-e{epoch + 1:04d}.weights.h5"
            digest = save_weights(self.model, self.dir / name)
            self.best = {"epoch": epoch, "value": float(value), "file": name, "sha256": digest}
        done = epoch + 1
        weights = f"epoch-{done:04d}.weights.h5"
        record = {
            "epoch": done,
            "weights": weights,
            "weights_sha256": save_weights(self.model, self.dir / weights),
            "best": self.best,
            "history": self.rows,
            "callbacks": {type(c).__name__: c.get_run_state() for c in self.stateful},
        }
        run_dir_lib.atomic_write_text(self.dir / f"epoch-{done:04d}.json", json.dumps(record))  # the commit
        run_dir_lib.atomic_write_text(self.run_dir / "history.csv", history_csv(self.rows))
        self._prune()

    def _prune(self) -> None:
        """Deletes all but the newest ``KEEP`` records and every file none of them names."""
        records = self._records()
        named = set()
        for record_path in records[:KEEP]:
            try:
                record = json.loads(record_path.read_text())
            except (OSError, ValueError):
                continue
            named |= {record_path.name, record["weights"]} | ({record["best"]["file"]} if record.get("best") else set())
        for path in self.dir.iterdir():
            if path.name not in named and not path.name.startswith(".tmp-"):
                path.unlink(missing_ok=True)

    # ------------------------------------------------------------------------------------------- the end
    def finish(self, model: keras.Model) -> int | None:
        """Loads the best checkpoint into ``model`` and copies it to ``best.weights.h5``; returns its epoch index.

        None (and the last epoch's weights stay in ``model``) when no epoch had a finite monitored value.
        """
        if self.best is None:
            return None
        path = self.dir / self.best["file"]
        if sha256(path) != self.best["sha256"]:
            raise run_dir_lib.RunDirError(
                f"The best checkpoint {path} does not match its checksum (damaged); delete the run directory or "
                f"train again with --overwrite. Received: {path}"
            )
        model.load_weights(str(path))
        run_dir_lib.atomic_copy(path, self.run_dir / "best.weights.h5")
        return int(self.best["epoch"])

    def discard(self) -> None:
        """Deletes the backup (after ``metrics.json`` marks the run finished)."""
        if self.dir.exists():
            shutil.rmtree(self.dir)
