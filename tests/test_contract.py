"""Contract test over every (solver x gradient method) pair, and the paper's Theorem 1 as a property test.

A new solver is tested by adding it to SOLVER_CASES.
"""

import itertools

import numpy as np
import pytest
import tensorflow as tf

import identity_tf as itf

RNG = np.random.default_rng(3)


def symmetric(b, k):
    d = RNG.uniform(1, 10, size=(b, k, k)).astype(np.float32)
    d = d + np.transpose(d, (0, 2, 1))
    d[:, np.arange(k), np.arange(k)] = 0
    return d


def _argmin_one_hot(c):
    return (np.arange(c.size) == c.argmin()).astype(float)


SOLVER_CASES = {
    "topk": (lambda: itf.solvers.TopK(k=2), lambda: RNG.normal(size=(3, 5)).astype(np.float32)),
    "argmax": (lambda: itf.solvers.Argmax(), lambda: RNG.normal(size=(3, 5)).astype(np.float32)),
    "ranking": (lambda: itf.solvers.Ranking(), lambda: RNG.normal(size=(3, 5)).astype(np.float32)),
    "shortest_path": (
        lambda: itf.solvers.ShortestPath(neighbourhood=8),
        lambda: RNG.uniform(0.1, 5, size=(3, 4, 5)).astype(np.float32),
    ),
    "tsp_dp": (lambda: itf.solvers.TSP(method="dp"), lambda: symmetric(3, 5)),
    "tsp_cp_sat": (lambda: itf.solvers.TSP(method="cp_sat"), lambda: symmetric(3, 5)),
    "tsp_milp": (lambda: itf.solvers.TSP(method="milp"), lambda: symmetric(3, 5)),
    "tsp_lkh": (lambda: itf.solvers.TSP(method="lkh"), lambda: symmetric(3, 5)),
    "assignment": (lambda: itf.solvers.LinearAssignment(), lambda: RNG.normal(size=(3, 3, 4)).astype(np.float32)),
    "ilp": (
        lambda: itf.solvers.IntegerLinearProgram(A_eq=[[1, 1, 1, 1]], b_eq=[2], on_hyperplane=True),
        lambda: RNG.normal(size=(3, 4)).astype(np.float32),
    ),
    "from_numpy": (
        lambda: itf.solvers.from_numpy(_argmin_one_hot, sense="min", on_hyperplane=True),
        lambda: RNG.normal(size=(3, 5)).astype(np.float32),
    ),
}

GRADIENTS = {
    "identity": lambda: itf.gradients.Identity(),
    "blackbox": lambda: itf.gradients.Blackbox(lam=2.0),
    "imle": lambda: itf.gradients.IMLE(lam=2.0, noise=itf.noise.Gumbel(0.1), num_samples=2),
    "perturbed": lambda: itf.gradients.Perturbed(sigma=0.1, num_samples=2),
}


@pytest.mark.parametrize("solver_name, gradient_name", list(itertools.product(SOLVER_CASES, GRADIENTS)))
@pytest.mark.parametrize("mode", ["eager", "function"])
def test_every_solver_with_every_gradient(solver_name, gradient_name, mode):
    make_solver, make_costs = SOLVER_CASES[solver_name]
    solver, method = make_solver(), GRADIENTS[gradient_name]()
    costs = tf.constant(make_costs())
    reference = solver(costs).numpy()
    upstream = tf.constant(RNG.normal(size=reference.shape).astype(np.float32))
    seed = tf.constant([1, 2], tf.int32)

    def step(c):
        with tf.GradientTape() as tape:
            tape.watch(c)
            y = method(solver, c, seed=seed, training=True)
            loss = tf.reduce_sum(y * upstream)
        return y, tape.gradient(loss, c)

    y, grad = (step if mode == "eager" else tf.function(step))(costs)
    assert y.shape == reference.shape and y.dtype == costs.dtype
    assert grad.shape == costs.shape
    assert np.all(np.isfinite(grad.numpy()))
    if gradient_name in ("identity", "blackbox"):
        np.testing.assert_array_equal(y.numpy(), reference)
    if gradient_name == "identity":
        sign = 1.0 if solver.sense == "max" else -1.0
        np.testing.assert_array_equal(grad.numpy(), sign * upstream.numpy())
    if solver.xla and mode == "function":
        y_xla, grad_xla = tf.function(step, jit_compile=True)(costs)
        if gradient_name in ("identity", "blackbox"):
            np.testing.assert_array_equal(y_xla.numpy(), reference)
            np.testing.assert_allclose(grad_xla.numpy(), grad.numpy(), rtol=1e-6)


@pytest.mark.parametrize("solver_name", list(SOLVER_CASES))
def test_solver_attributes_and_layer(solver_name):
    make_solver, make_costs = SOLVER_CASES[solver_name]
    solver = make_solver()
    assert solver.sense in ("min", "max")
    assert isinstance(solver.xla, bool) and isinstance(solver.on_hyperplane, bool)
    layer = itf.layers.SolverLayer(solver)
    assert layer.supports_jit == solver.xla
    costs = make_costs()
    np.testing.assert_array_equal(layer(costs).numpy(), solver(costs).numpy())
    if solver.on_hyperplane:  # <1, y> is the same for every solution
        totals = solver(RNG.normal(size=costs.shape).astype(np.float32) * 0 + costs[::-1]).numpy().reshape(3, -1)
        np.testing.assert_allclose(totals.sum(-1), totals.sum(-1)[0])


# ------------------------------------------------------------------------------------------ Theorem 1
THEOREM_CASES = {
    "topk": (lambda: itf.solvers.TopK(k=3), (7,)),
    "ranking": (lambda: itf.solvers.Ranking(), (5,)),
    "assignment": (lambda: itf.solvers.LinearAssignment(), (4, 4)),
    "tsp": (lambda: itf.solvers.TSP(method="dp"), (6, 6)),
}


def _symmetric(x):
    return x + np.swapaxes(x, -1, -2)


@pytest.mark.parametrize("case", list(THEOREM_CASES))
@pytest.mark.parametrize("seed", range(4))
def test_theorem_1_iterated_identity_updates(case, seed):
    """omega_{k+1} = omega_k - alpha * (Identity gradient of the linearised loss <c, y>) keeps the solution until it
    jumps to one with strictly lower linearised loss; if a better solution exists, it is reached."""
    rng = np.random.default_rng(seed)
    make_solver, shape = THEOREM_CASES[case]
    solver = make_solver()
    omega = rng.uniform(0.5, 2.0, size=(1, *shape))
    c = rng.normal(size=(1, *shape))  # dl/dy of the linearised loss, fixed (paper eq. 6)
    if case == "tsp":  # distances and their updates stay symmetric
        omega, c = _symmetric(omega), _symmetric(c)
    omega, c = tf.Variable(omega), tf.constant(c)
    y0 = solver(omega).numpy()
    f0 = float(np.sum(c.numpy() * y0))
    alpha = 1e-2
    changed = False
    for _ in range(3000):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(itf.gradients.identity(solver, omega) * c)
        omega.assign_sub(alpha * tape.gradient(loss, omega))
        y = solver(omega).numpy()
        if not np.array_equal(y, y0):
            assert float(np.sum(c.numpy() * y)) < f0 - 1e-9  # the first change lowers the linearised loss
            changed = True
            break
    # independent check: does a solution with lower linearised loss exist? (minimise <c, y> with the solver)
    best = solver(c if solver.sense == "min" else -c).numpy()
    exists = float(np.sum(c.numpy() * best)) < f0 - 1e-9
    assert changed == exists
