"""Divergence and collapse checks of a training run, made outside the compiled train step every epoch.

Inside ``jit_compile=True`` the solvers' NaN assertions are dropped, and a diverged network need not produce a
non-finite loss: under XLA a ReLU maps NaN to 0, so a network whose weights are NaN can still hand finite, constant
costs to the solver and report a finite loss. :class:`RunHealth` therefore checks, eagerly at each epoch's end:

* the epoch's losses are finite;
* every weight is finite;
* the gradient norm of the loss on a fixed training batch is finite (``grad_norm``);
* the inputs of every :class:`identity_tf.layers.SolverLayer` on a fixed validation batch are finite, and whether
  they collapsed: ``solver_input_std`` (mean over examples of the per-example standard deviation; 0 when every
  example's costs are constant, i.e. the solver sees only ties) and ``solver_input_spread`` (mean over entries of
  the standard deviation across examples; 0 when every example gets the same costs: the network ignores its input);
* ``distinct_solutions``: how many different solutions the solvers return on that batch.

A non-finite value raises :class:`TrainingDiverged` at once (before the epoch is backed up, so a resumed run never
continues from it). A collapse — solver inputs constant within each example (relative to their size, below
``tolerance``), the same for every example, or one solution for every example while the validation labels have
several — that lasts ``patience`` consecutive epochs and still holds at the last epoch marks the run collapsed
(:attr:`RunHealth.collapse`); the trainer writes it to ``metrics.json`` as ``"status": "collapsed"``. A collapse the
run recovered from is kept in :attr:`RunHealth.episodes` (``metrics.json["collapse_episodes"]``). The four numbers
are columns of ``history.csv``.

A *cost collapse* (paper section 3.6: the costs shrink towards zero while the solutions stay varied, as BB's do
once a margin-inducing noise stops) is not numerically degenerate, so it leaves the status ``ok``, but it is never
silent: :func:`identity_tf.cost_collapse.cost_collapse` flags a run whose ``solver_input_std`` stayed below 10 % of
its running peak for its last ``patience`` epochs or more (:attr:`RunHealth.cost_collapse`, written to
``metrics.json["cost_collapse"]``, printed by the CLI, and marked in the results tables of :mod:`identity_tf.report`,
which apply the same function to a committed ``history.csv``).

Example:

>>> import numpy as np, keras
>>> import identity_tf as itf
>>> inputs = keras.Input((4,))
>>> costs = keras.layers.Dense(4, kernel_initializer="zeros", bias_initializer="ones")(inputs)
>>> model = keras.Model(inputs, itf.layers.SolverLayer(itf.solvers.TopK(k=2))(costs))
>>> model.compile("adam", loss=itf.losses.HammingLoss())
>>> x = np.eye(4, dtype="float32"); y = np.eye(4, dtype="float32")[:, ::-1] + np.eye(4, dtype="float32")
>>> health = RunHealth((x, y), (x, y), patience=1)
>>> health.set_model(model)
>>> logs = {"loss": 1.0}
>>> health.on_epoch_end(0, logs)
>>> logs["solver_input_std"], logs["distinct_solutions"], health.collapse["check"]
(0.0, 1.0, 'solver inputs constant within every example (the solver sees only ties)')
"""

from __future__ import annotations

import contextlib
import math

import keras
import numpy as np
import tensorflow as tf

from identity_tf import layers
from identity_tf.cost_collapse import cost_collapse

TOLERANCE = 1e-6
PROBE = 32  # examples of the fixed batches the checks run on


def _head(batch, n: int):
    return tf.nest.map_structure(lambda t: t[:n], batch)


class TrainingDiverged(RuntimeError):
    """Training produced non-finite weights, gradients, solver inputs or losses (e.g. a learning rate too large)."""


def solver_layers(model) -> list:
    return [layer for layer in model._flatten_layers() if isinstance(layer, layers.SolverLayer)]


@contextlib.contextmanager
def recording(solver_layers_):
    """Records ``[costs, solution]`` of every call of the given layers (eager calls) while active."""

    def wrap(original, calls: list):
        def call(costs, *args, **kwargs):
            calls.append([costs, None])  # before the solve: its own finite check may raise (eager)
            solution = original(costs, *args, **kwargs)
            calls[-1][1] = solution
            return solution

        return call

    records = {id(layer): [] for layer in solver_layers_}
    for layer in solver_layers_:
        layer.call = wrap(layer.call, records[id(layer)])  # an instance attribute shadows the method until popped
    try:
        yield records
    finally:
        for layer in solver_layers_:
            layer.__dict__.pop("call", None)


def _numpy(x) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float64)


def _per_example(x) -> np.ndarray:
    """``[B, -1]`` float64; structured costs or solutions (a tuple, e.g. graph matching's): the floating parts."""
    if isinstance(x, (tuple, list)):
        parts = [keras.ops.convert_to_numpy(p) for p in x]
        parts = [p.reshape(len(p), -1) for p in parts if np.issubdtype(p.dtype, np.floating)]
        return np.concatenate(parts, axis=1).astype(np.float64)
    values = _numpy(x)
    return values.reshape(len(values), -1)


class RunHealth(keras.callbacks.Callback):
    """Per-epoch divergence and collapse checks (module docstring); adds its numbers to the epoch's logs.

    Args:
        val_batch: A fixed ``(x, y)`` validation batch (solver inputs, solutions; its first ``PROBE`` examples).
        train_batch: A fixed ``(x, y)`` training batch (gradient norm; its first ``PROBE`` examples).
        patience: Consecutive collapsed epochs that mark the run collapsed (0 = never).
        tolerance: Relative size below which a spread counts as zero.
        hint: Appended to the divergence message (e.g. the learning rate to lower).
    """

    def __init__(self, val_batch, train_batch, patience: int = 3, tolerance: float = TOLERANCE, hint: str = ""):
        super().__init__()
        if patience < 0:
            raise ValueError(f"`patience` must be >= 0. Received: patience={patience!r}")
        # at most PROBE examples: the checks run eagerly every epoch (about 0.3 s for Globe TSP, measured)
        self.val_batch, self.train_batch = _head(val_batch, PROBE), _head(train_batch, PROBE)
        self.patience, self.tolerance, self.hint = int(patience), float(tolerance), hint
        self.streak: list = []  # (epoch, check) of the current run of collapsed epochs
        # the current collapse (at least `patience` epochs long): {"epoch", "last_epoch" (1-based), "check"}
        self.collapse: dict | None = None
        self.episodes: list[dict] = []  # earlier collapses the run recovered from
        self.input_stds: list[float] = []  # solver_input_std of each epoch so far
        self.cost_collapse: dict | None = None  # cost_collapse(self.input_stds, patience)

    # the state a resumed run continues from (saved by identity_tf.backup.Backup)
    def get_run_state(self) -> dict:
        return {
            "streak": self.streak,
            "collapse": self.collapse,
            "episodes": self.episodes,
            "input_stds": self.input_stds,
        }

    def set_run_state(self, state: dict) -> None:
        self.streak = [tuple(item) for item in state.get("streak", [])]
        self.collapse = state.get("collapse")
        self.episodes = list(state.get("episodes", []))
        self.input_stds = [float(s) for s in state.get("input_stds", [])]
        self.cost_collapse = cost_collapse(self.input_stds, self.patience)

    def _diverged(self, epoch: int, what: str) -> TrainingDiverged:
        return TrainingDiverged(f"Training diverged in epoch {epoch + 1} ({what}). {self.hint}".rstrip())

    def _check_weights(self, epoch: int) -> None:
        bad, total, first = 0, 0, None
        for variable in self.model.weights:
            if not np.issubdtype(np.dtype(variable.dtype), np.floating):
                continue
            values = _numpy(variable)
            n = int(values.size - np.isfinite(values).sum())
            total += values.size
            if n and first is None:
                first = variable.path
            bad += n
        if bad:
            raise self._diverged(epoch, f"{bad} of {total} weights are NaN or inf (the first in {first})")

    def _grad_norm(self) -> float:
        x, y = self.train_batch
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            y_pred = self.model(x, training=False)  # no BatchNorm statistics update, no dropout: a probe
            loss = self.model.compute_loss(x=x, y=y, y_pred=y_pred, training=False)
        grads = [g for g in tape.gradient(loss, variables) if g is not None]
        if not grads:
            return 0.0
        return float(math.sqrt(sum(float(tf.reduce_sum(tf.square(tf.cast(g, tf.float64)))) for g in grads)))

    def _solver_stats(self, epoch: int) -> dict:
        found = solver_layers(self.model)
        if not found:
            return {}
        x, y = self.val_batch
        with recording(found) as records:
            try:
                self.model(x, training=False)
            except (ValueError, tf.errors.InvalidArgumentError):  # a solver's finite check: reported below
                if not any(not np.all(np.isfinite(_per_example(c))) for r in records.values() for c, _ in r):
                    raise
        stds, spreads, scales, distinct = [], [], [], []
        for layer in found:
            for costs, solution in records[id(layer)]:
                costs = _per_example(costs)
                if not np.all(np.isfinite(costs)):
                    share = 1 - np.isfinite(costs).mean()
                    raise self._diverged(
                        epoch, f"{100 * share:.0f} % of the inputs of solver layer {layer.name!r} are NaN or inf"
                    )
                flat = costs.reshape(len(costs), -1)  # [B, n]
                stds.append(float(flat.std(axis=1).mean()))
                spreads.append(float(flat.std(axis=0).mean()) if len(flat) > 1 else math.inf)
                scales.append(float(np.sqrt(np.mean(flat**2))))
                solutions = np.round(_per_example(solution), 6)
                distinct.append(len(np.unique(solutions, axis=0)))
        labels = np.asarray(y)
        label_solutions = None
        last = records[id(found[-1])][-1][1] if records[id(found[-1])] else None
        if last is not None and labels.shape[1:] == tuple(getattr(last, "shape", (None,))[1:]):
            label_solutions = len(np.unique(np.round(labels.reshape(len(labels), -1), 6), axis=0))
        return {
            "solver_input_std": min(stds),
            "solver_input_spread": min(spreads),
            "solver_input_scale": min(scales),
            "distinct_solutions": min(distinct),
            "label_solutions": label_solutions,
        }

    def _collapse_check(self, stats: dict) -> str | None:
        if not stats:
            return None
        floor = self.tolerance * stats["solver_input_scale"]
        if stats["solver_input_std"] <= floor:
            return "solver inputs constant within every example (the solver sees only ties)"
        if stats["solver_input_spread"] <= floor:
            return "solver inputs identical for every validation example (the network ignores its input)"
        if stats["distinct_solutions"] == 1 and (stats["label_solutions"] or 0) > 1:
            return "the same solution for every validation example"
        return None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        for key in ("loss", "val_loss"):
            if key in logs and not math.isfinite(float(logs[key])):
                raise self._diverged(
                    epoch, f"the {'validation' if key.startswith('val') else 'training'} loss is {float(logs[key])}"
                )
        self._check_weights(epoch)
        grad_norm = self._grad_norm()
        if not math.isfinite(grad_norm):
            raise self._diverged(epoch, f"the gradient norm on a training batch is {grad_norm}")
        stats = self._solver_stats(epoch)
        logs["grad_norm"] = grad_norm
        if stats:
            logs["solver_input_std"] = stats["solver_input_std"]
            logs["solver_input_spread"] = stats["solver_input_spread"]
            logs["distinct_solutions"] = float(stats["distinct_solutions"])
            self.input_stds.append(stats["solver_input_std"])
            self.cost_collapse = cost_collapse(self.input_stds, self.patience)
        check = self._collapse_check(stats)
        if check is None:
            if self.collapse is not None:
                self.episodes.append(self.collapse)
            self.streak, self.collapse = [], None
            return
        self.streak.append((epoch, check))
        if self.patience and len(self.streak) >= self.patience:
            self.collapse = {"epoch": self.streak[0][0] + 1, "last_epoch": epoch + 1, "check": check}
