"""Wrap any user numpy function as a solver."""

from __future__ import annotations

import concurrent.futures
import math
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from identity_tf.solvers.base import HostSolver, check_sense, register


@register
class NumpySolver(HostSolver):
    """A user's own solver: ``fn(costs_one_instance) -> solution_one_instance`` in numpy.

    Build it with :func:`from_numpy`. The instances of a batch are solved by ``num_workers`` daemon threads.
    ``fn`` receives a float64 array without the batch axis and must return a finite numeric array of
    ``output_shape``; anything else (NaN or inf, a wrong shape, a non-numeric value) raises an error that names
    the solver and the instance. The waiting thread stays interruptible (Ctrl-C), and with ``timeout`` a call
    that does not return in time raises ``TimeoutError``. Python cannot stop a running thread: an abandoned
    call runs on in the background until ``fn`` returns (daemon threads do not keep the process alive).
    """

    def __init__(
        self,
        fn: Callable[[np.ndarray], np.ndarray],
        sense: str = "min",
        output_shape: Sequence[int] | None = None,
        on_hyperplane: bool = False,
        num_workers: int | None = None,
        validate_args: bool = True,
        name: str | None = None,
        timeout: float | None = None,
    ):
        if isinstance(fn, dict):  # from a Keras config
            fn = keras.saving.deserialize_keras_object(fn)
        if not callable(fn):
            raise TypeError(f"Argument `fn` must be callable. Received: fn={fn!r}")
        if timeout is not None and (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or not math.isfinite(timeout)
            or timeout <= 0
        ):
            raise ValueError(
                f"Argument `timeout` must be a positive number of seconds or None. Received: timeout={timeout!r}"
            )
        super().__init__(
            num_workers=num_workers, validate_args=validate_args, name=name or getattr(fn, "__name__", None)
        )
        self.fn = fn
        self.sense = check_sense(sense)
        self.on_hyperplane = bool(on_hyperplane)
        self.timeout = None if timeout is None else float(timeout)
        self._output_shape = None if output_shape is None else tuple(int(d) for d in output_shape)

    def output_shape(self, instance_shape: tf.TensorShape) -> tf.TensorShape:
        return instance_shape if self._output_shape is None else tf.TensorShape(self._output_shape)

    def solve_one(self, costs: np.ndarray) -> np.ndarray:
        raw = self.fn(costs)
        try:
            array = np.asarray(raw)
            if array.dtype.kind not in "biuf":
                raise TypeError(f"dtype {array.dtype}")
            solution = array.astype(np.float64)
        except (TypeError, ValueError) as error:
            raise TypeError(
                f"Solver function {self.name!r} must return a real numeric array. "
                f"Received: {type(raw).__name__} {str(raw)[:80]!r} ({error})"
            ) from error
        expected = tuple(self.output_shape(tf.TensorShape(costs.shape)).as_list())
        if solution.shape != expected:
            raise ValueError(
                f"Solver function {self.name!r} returned the wrong shape: expected {expected}. "
                f"Received: solution.shape={solution.shape}"
            )
        if not np.all(np.isfinite(solution)):
            raise ValueError(
                f"Solver function {self.name!r} returned non-finite values (NaN or inf); a solution must be finite. "
                f"Received: solution={np.array2string(solution, threshold=12)}"
            )
        return solution

    def _solve_instances(self, batch: np.ndarray) -> list[np.ndarray]:
        """Solves the instances in daemon threads; the caller waits interruptibly, at most ``timeout`` each."""
        num = len(batch)
        if num == 0:
            return []
        futures = [concurrent.futures.Future() for _ in range(num)]
        started: list[float | None] = [None] * num
        todo: queue.SimpleQueue[int] = queue.SimpleQueue()
        for index in range(num):
            todo.put(index)
        abandoned = threading.Event()

        def work():
            while not abandoned.is_set():
                try:
                    index = todo.get_nowait()
                except queue.Empty:
                    return
                started[index] = time.monotonic()
                try:
                    futures[index].set_result(self.solve_one(batch[index]))
                except BaseException as error:  # noqa: BLE001 - handed to the waiting thread
                    futures[index].set_exception(error)

        workers = min(self.num_workers or os.cpu_count() or 1, num)
        for worker in range(workers):
            threading.Thread(target=work, name=f"identity_tf-{self.name}-{worker}", daemon=True).start()
        position = {future: index for index, future in enumerate(futures)}
        pending = set(futures)
        try:
            while pending:
                wait_s = None
                if self.timeout is not None:
                    running = [started[position[f]] for f in pending if started[position[f]] is not None]
                    wait_s = max(1e-3, min(running) + self.timeout - time.monotonic()) if running else 1e-2
                done, pending = concurrent.futures.wait(
                    pending, timeout=wait_s, return_when=concurrent.futures.FIRST_COMPLETED
                )
                for future in sorted(done, key=position.get):
                    error = future.exception()
                    if error is not None:
                        error.add_note(f"(instance {position[future]} of the batch, solver {self.name!r})")
                        raise error
                if self.timeout is not None:
                    now = time.monotonic()
                    late = sorted(
                        position[f]
                        for f in pending
                        if started[position[f]] is not None and now - started[position[f]] > self.timeout
                    )
                    if late:
                        raise TimeoutError(
                            f"Solver {self.name!r}: `fn` did not return within timeout={self.timeout:g} s on "
                            f"instance(s) {late} of the batch; the batch was given up (the call runs on in a "
                            "background thread until `fn` returns)."
                        )
        finally:
            abandoned.set()  # queued instances are not started
        return [future.result() for future in futures]

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "fn": keras.saving.serialize_keras_object(self.fn),
            "sense": self.sense,
            "output_shape": self._output_shape,
            "on_hyperplane": self.on_hyperplane,
            "timeout": self.timeout,
        }


def from_numpy(
    fn: Callable[[np.ndarray], np.ndarray],
    sense: str = "min",
    output_shape: Sequence[int] | None = None,
    on_hyperplane: bool = False,
    name: str | None = None,
    num_workers: int | None = None,
    timeout: float | None = None,
) -> NumpySolver:
    """Makes a solver from a function that solves one instance in numpy.

    Args:
        fn: ``costs [*instance_shape] (float64) -> solution [*output_shape]``, finite numbers.
        sense: "min" if ``fn`` minimises ``<costs, y>``, "max" if it maximises.
        output_shape: Per-instance output shape; default: the input's per-instance shape.
        on_hyperplane: Declare that every solution has the same ``<1, y>``.
        name: Name shown in errors and graphs; default: ``fn.__name__``.
        num_workers: Threads over the batch (default: number of CPU cores).
        timeout: Seconds one instance may take; a call that takes longer raises ``TimeoutError`` (in a graph:
            a TensorFlow error with that message). None (default): no limit.

    Returns:
        A :class:`NumpySolver`. To save it in a ``.keras`` file, ``fn`` must be a named function registered
        with ``keras.saving.register_keras_serializable``.

    Example:
    >>> import numpy as np
    >>> import identity_tf as itf
    >>> cheapest = itf.solvers.from_numpy(lambda c: (c == c.min()).astype(float), sense="min", timeout=10.0)
    >>> cheapest([[3.0, 1.0, 2.0]]).numpy()
    array([[0., 1., 0.]], dtype=float32)
    """
    return NumpySolver(
        fn,
        sense=sense,
        output_shape=output_shape,
        on_hyperplane=on_hyperplane,
        name=name,
        num_workers=num_workers,
        timeout=timeout,
    )
