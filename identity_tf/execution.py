"""Execution policy: whether the trainer XLA-compiles the whole train step (``train.jit_compile``).

``train.jit_compile: auto`` (the default) resolves per device and per model with the rule below, derived from
full train steps of the paper-task models built as the trainer builds them
(``python benchmarks/bench_train_step.py``, results in ``benchmarks/results/execution_policy.json``; measured on
this project's 2-core CPU machine, load average 8.4 from other jobs, so the absolute times are inflated; the
two variants alternated so that the load hit both alike). Median ms per train step (forward pass):

=============================  =============  ================  ==========  ======================
model (config, batch)          no XLA         whole-step XLA    XLA / no    solver alone with XLA
=============================  =============  ================  ==========  ======================
Warcraft 12x12 (identity, 70)  1864 (464)     3009 (549)        1.61x       1692 (0.91x)
Globe TSP k=10 (P_std, 50)     146 (47)       245 (94)          1.68x       123 (0.84x)
DVAE, Sum-of-Gamma (100)       203 (172)      1246 (1031)       6.14x       200 (0.99x)
DVAE, Gumbel ST (100)          57 (16)        38 (18)           0.67x       52 (0.91x)
L2X k=10, Sum-of-Gamma (40)    441 (108)      6243 (175)        14.2x       464 (1.05x)
=============================  =============  ================  ==========  ======================

The rule, in order:

1. A layer that XLA cannot compile (``supports_jit = False``: a host solver such as ``TSP(method="cp_sat")``
   or ``LinearAssignment``, which run behind ``tf.numpy_function``): no XLA. ``jit_compile: true`` is then an
   error, raised before training starts.
2. Several replicas on CPU devices (``MirroredStrategy`` over logical CPU devices): no XLA. XLA:CPU compiles
   each replica's step for the first device and fails with "Trying to access resource ... located in device
   CPU:1 from device CPU:0" (TF 2.21 / Keras 3.15; reproduced in ``tests/test_execution.py``).
   ``jit_compile: true`` is an error. Several GPU replicas: no XLA under "auto" until
   ``XLA_WITH_SEVERAL_GPU_REPLICAS`` is set from a GPU machine's ``benchmarks/gpu_check.sh`` probe
   (``gpu_mirrored_xla.json``); ``jit_compile: true`` is honoured there (the check measures it).
3. On a GPU (one replica): XLA (``benchmarks/gpu_check.sh`` measures both settings on a GPU machine).
4. On CPU, models with convolutions (Warcraft's ResNet stem, Globe TSP's flag CNN, L2X's Conv1D selector) or
   with Sum-of-Gamma noise (DVAE, L2X: TFP's Gamma sampler) run without whole-step XLA: XLA:CPU runs these
   convolutions and the Gamma sampler slower than TensorFlow's default kernels (table). Other models (dense
   layers and pure-TF solvers only, e.g. the Gumbel DVAE) are compiled.

Wherever "auto" leaves the step uncompiled, the model's pure-TF solvers are compiled on their own
(:func:`compile_solvers`; the table's last column). ``jit_compile: true`` / ``false`` are honoured as given,
except for the two errors above (``false`` also leaves the solvers uncompiled).
"""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from identity_tf import layers
from identity_tf import noise as noise_lib

#: Layers counted as convolutions by rule 4.
CONVOLUTIONS = (
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
    keras.layers.DepthwiseConv1D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv1D,
    keras.layers.SeparableConv2D,
)
#: Noise whose sampler is much slower under XLA on CPU (rule 4).
XLA_CPU_SLOW_NOISE = (noise_lib.SumOfGamma,)
#: Whether "auto" compiles with several GPU replicas (rule 2): unverified without a GPU machine.
XLA_WITH_SEVERAL_GPU_REPLICAS = False


@dataclasses.dataclass(frozen=True)
class ExecutionPlan:
    """The resolved setting: ``jit_compile`` for ``model.compile``, the rule that chose it, and whether the
    model's pure-TF solvers are compiled on their own (:func:`compile_solvers`) in the uncompiled step."""

    jit_compile: bool
    reason: str
    compile_solvers: bool = False


def plan(requested, model: keras.Model, strategy: tf.distribute.Strategy | None = None) -> ExecutionPlan:
    """Resolves ``train.jit_compile`` (True, False or "auto") for a built ``model`` under ``strategy``.

    Args:
        requested: The config value: True, False or "auto".
        model: The model, built (its layers exist).
        strategy: The distribution strategy the model is compiled under (default: the current one).

    Returns:
        An :class:`ExecutionPlan`.

    Raises:
        ValueError: ``requested`` is not True, False or "auto", or it is True for a model or strategy that XLA
            cannot compile (rules 1 and 2).

    Example:
    >>> import keras
    >>> import identity_tf as itf
    >>> inputs = keras.Input((5,))
    >>> dense = keras.Model(inputs, itf.layers.SolverLayer(itf.solvers.TopK(k=2))(keras.layers.Dense(5)(inputs)))
    >>> plan("auto", dense).jit_compile  # on CPU: dense layers and a pure-TF solver
    True
    >>> host = keras.Model(inputs, itf.layers.SolverLayer(itf.solvers.LinearAssignment())(keras.layers.Reshape((1, 5))(inputs)))
    >>> plan("auto", host).jit_compile  # LinearAssignment runs on the host
    False
    """
    if requested not in (True, False, "auto") or (requested != "auto" and not isinstance(requested, bool)):
        raise ValueError(f"`jit_compile` must be True, False or 'auto'. Received: jit_compile={requested!r}")
    strategy = strategy or tf.distribute.get_strategy()
    if requested is False:
        return ExecutionPlan(False, "jit_compile is false")
    blockers = [layer.name for layer in model._flatten_layers() if not layer.supports_jit]
    if blockers:
        reason = f"layer {blockers[0]!r} cannot be XLA-compiled (supports_jit=False)"
        if requested is True:
            raise ValueError(
                f"jit_compile=True, but {reason}: it runs on the host (tf.numpy_function). Use jit_compile "
                f"'auto' or false, or a pure-TF solver. Received: jit_compile={requested!r}"
            )
        return ExecutionPlan(False, reason, compile_solvers=True)
    devices = _device_types(strategy)
    replicas = strategy.num_replicas_in_sync
    if replicas > 1 and "GPU" in devices and requested == "auto" and not XLA_WITH_SEVERAL_GPU_REPLICAS:
        reason = f"{replicas} GPU replicas: XLA with MirroredStrategy is not verified on GPUs"
        return ExecutionPlan(False, reason, compile_solvers=True)
    if replicas > 1 and "GPU" not in devices:
        reason = (
            f"{replicas} replicas on CPU devices: XLA:CPU cannot read the other replicas' "
            'variables ("Trying to access resource ... located in device CPU:1 from device CPU:0")'
        )
        if requested is True:
            raise ValueError(
                f"jit_compile=True does not work with {reason}. Use jit_compile 'auto' or false. "
                f"Received: jit_compile={requested!r}"
            )
        return ExecutionPlan(False, reason, compile_solvers=True)
    if requested is True:
        return ExecutionPlan(True, "jit_compile is true")
    if "GPU" in devices:
        return ExecutionPlan(True, "GPU: XLA")
    convolutions = [layer.name for layer in model._flatten_layers() if isinstance(layer, CONVOLUTIONS)]
    if convolutions:
        reason = f"CPU: convolutions ({convolutions[0]!r}, ...) run faster without XLA"
        return ExecutionPlan(False, reason, compile_solvers=True)
    slow_noise = _slow_noise(model)
    if slow_noise:
        return ExecutionPlan(False, f"CPU: {slow_noise} noise samples much slower under XLA", compile_solvers=True)
    return ExecutionPlan(True, "CPU: no convolutions and no Gamma noise, XLA")


def jit_compile(requested, model: keras.Model, strategy: tf.distribute.Strategy | None = None) -> bool:
    """``plan(requested, model, strategy).jit_compile``: the value to pass to ``model.compile`` (no side effect)."""
    return plan(requested, model, strategy).jit_compile


def resolve(requested, model: keras.Model, strategy: tf.distribute.Strategy | None = None) -> bool:
    """Applies :func:`plan` to ``model`` (what the trainer does): compiles its pure-TF solvers alone when the plan
    says so, and returns the ``jit_compile`` value for ``model.compile``."""
    decision = plan(requested, model, strategy)
    if decision.compile_solvers:
        compile_solvers(model)
    return decision.jit_compile


def _device_types(strategy) -> set[str]:
    """Device types ("CPU", "GPU", ...) the strategy's replicas run on (the default strategy: GPU if visible)."""
    if strategy.num_replicas_in_sync == 1 and not isinstance(strategy, tf.distribute.MirroredStrategy):
        return {"GPU"} if tf.config.list_logical_devices("GPU") else {"CPU"}
    devices = getattr(strategy.extended, "worker_devices", ())
    return {tf.DeviceSpec.from_string(name).device_type or "CPU" for name in devices} or {"CPU"}


def _slow_noise(model) -> str | None:
    """Name of a noise class in ``XLA_CPU_SLOW_NOISE`` that a layer (or its gradient method) samples, or None."""
    for layer in model._flatten_layers():
        candidates = [getattr(layer, "noise", None), getattr(getattr(layer, "gradient", None), "noise", None)]
        for candidate in candidates:
            if isinstance(candidate, XLA_CPU_SLOW_NOISE):
                return type(candidate).__name__
    return None


def compile_solvers(model: keras.Model) -> list[str]:
    """XLA-compiles the pure-TF solvers of ``model``'s solver layers on their own; returns their names.

    For a train step that runs without whole-step XLA: each solver's ``_solve`` (the solve itself, after the
    shape and value checks, which keep running outside XLA) goes through a ``tf.function(jit_compile=True)`` on
    that solver instance, for the input shapes it compiles for (``solver.supports_xla(shape)`` where the solver
    has it, e.g. ``TSP(method="auto")`` only when it resolves to the DP). Host solvers are left alone.
    Serialisation is unaffected (``get_config`` does not see it). Measured on CPU
    (``benchmarks/results/execution_policy.json``, ``solver_xla``): Globe TSP(10) step 0.84x, Warcraft 0.91x,
    the TopK models 0.91-1.05x (noise) of the step with the solver in graph mode.
    """
    names = []
    for layer in model._flatten_layers():
        solver = getattr(layer, "solver", None) if isinstance(layer, layers.SolverLayer) else None
        if solver is None or not solver.xla or "_solve" in vars(solver):
            continue
        solver._solve = _compiled_solve(solver)
        names.append(solver.name)
    return names


def _compiled_solve(solver):
    graph_solve = solver._solve  # the bound method of the class
    xla_solve = tf.function(graph_solve, jit_compile=True, reduce_retracing=True)
    supports_xla = getattr(solver, "supports_xla", lambda shape: True)

    def solve(costs):
        return xla_solve(costs) if supports_xla(costs.shape) else graph_solve(costs)

    return solve
