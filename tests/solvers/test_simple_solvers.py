"""TopK, Argmax, Ranking, LinearAssignment, IntegerLinearProgram, from_numpy against independent oracles."""

import itertools
import re
import signal
import subprocess
import sys
import threading
import time

import keras
import numpy as np
import pytest
import scipy.optimize
import tensorflow as tf

import identity_tf as itf

RNG = np.random.default_rng(0)


def brute_force(costs, candidates, sense):
    values = [float(np.sum(costs * y)) for y in candidates]
    return max(values) if sense == "max" else min(values)


def k_hot_vectors(n, k):
    for subset in itertools.combinations(range(n), k):
        y = np.zeros(n)
        y[list(subset)] = 1
        yield y


@pytest.mark.parametrize("n, k", [(1, 1), (5, 1), (5, 2), (7, 3), (6, 6)])
def test_topk_is_optimal_and_k_hot(n, k):
    costs = RNG.normal(size=(8, n)).astype(np.float32)
    y = itf.solvers.TopK(k=k)(costs).numpy()
    assert set(np.unique(y)) <= {0.0, 1.0}
    np.testing.assert_array_equal(y.sum(-1), k)
    for c, yi in zip(costs, y):
        best = brute_force(c, k_hot_vectors(n, k), "max")
        np.testing.assert_allclose((c * yi).sum(), best, rtol=1e-6)


def test_topk_exactly_k_ones_with_ties():
    costs = np.array([[1.0, 1.0, 1.0, 1.0], [0.0, -0.0, 0.0, -0.0], [2.0, 1.0, 1.0, 1.0]], np.float32)
    y = itf.solvers.TopK(k=2)(costs).numpy()
    np.testing.assert_array_equal(y.sum(-1), [2, 2, 2])
    assert y[2, 0] == 1


def test_topk_on_groups():
    costs = RNG.normal(size=(3, 4, 5)).astype(np.float32)  # [B, groups, n]
    y = itf.solvers.TopK(k=2)(costs).numpy()
    np.testing.assert_array_equal(y.sum(-1), np.full((3, 4), 2))
    np.testing.assert_array_equal(y[1, 2], itf.solvers.TopK(k=2)(costs[1:2, 2]).numpy()[0])


def test_argmax_matches_numpy():
    costs = RNG.normal(size=(10, 7)).astype(np.float32)
    y = itf.solvers.Argmax()(costs).numpy()
    np.testing.assert_array_equal(y.argmax(-1), costs.argmax(-1))
    np.testing.assert_array_equal(y.sum(-1), 1)


def test_ranking_minimises_over_all_permutations():
    costs = RNG.normal(size=(6, 5)).astype(np.float32)
    ranks = itf.solvers.Ranking()(costs).numpy()
    perms = [np.array(p, float) + 1 for p in itertools.permutations(range(5))]
    for c, r in zip(costs, ranks):
        np.testing.assert_allclose((c * r).sum(), brute_force(c, perms, "min"), rtol=1e-6)
        assert sorted(r) == [1, 2, 3, 4, 5]


def test_ranking_ties_signed_zero_and_normalize():
    costs = np.array([[0.0, -0.0, 1.0, 0.0]], np.float32)
    np.testing.assert_array_equal(itf.solvers.Ranking()(costs).numpy(), [[2, 3, 1, 4]])
    xla = tf.function(itf.solvers.Ranking(), jit_compile=True)(tf.constant(costs)).numpy()
    np.testing.assert_array_equal(xla, [[2, 3, 1, 4]])
    np.testing.assert_allclose(itf.solvers.Ranking(normalize=True)(costs).numpy(), [[0.5, 0.75, 0.25, 1.0]])


@pytest.mark.parametrize("solver", [itf.solvers.TopK(k=3), itf.solvers.Argmax(), itf.solvers.Ranking()])
def test_pure_tf_solvers_eager_graph_xla_agree(solver):
    costs = tf.constant(RNG.normal(size=(16, 9)).astype(np.float32))
    eager = solver(costs).numpy()
    np.testing.assert_array_equal(tf.function(solver)(costs).numpy(), eager)
    np.testing.assert_array_equal(tf.function(solver, jit_compile=True)(costs).numpy(), eager)


@pytest.mark.parametrize("shape", [(5, 4, 4), (5, 3, 6), (5, 6, 3)])
def test_linear_assignment_against_brute_force(shape):
    costs = RNG.normal(size=shape).astype(np.float32)
    y = itf.solvers.LinearAssignment()(costs).numpy()
    n, m = shape[1:]
    assert np.all(y.sum(-1) <= 1) and np.all(y.sum(-2) <= 1)
    np.testing.assert_array_equal(y.sum((-1, -2)), min(n, m))
    for c, yi in zip(costs, y):
        best = np.inf
        if n <= m:
            for cols in itertools.permutations(range(m), n):
                best = min(best, c[np.arange(n), cols].sum())
        else:
            for rows in itertools.permutations(range(n), m):
                best = min(best, c[rows, np.arange(m)].sum())
        np.testing.assert_allclose((c * yi).sum(), best, rtol=1e-5)


def test_integer_linear_program_against_brute_force_knapsack():
    weights = np.array([3, 4, 5, 2, 6], float)
    solver = itf.solvers.IntegerLinearProgram(A_ub=[weights], b_ub=[10])  # binary knapsack, minimise -value
    costs = -RNG.uniform(1, 5, size=(6, 5)).astype(np.float32)
    y = solver(costs).numpy()
    candidates = [np.array(b, float) for b in itertools.product([0, 1], repeat=5) if np.dot(b, weights) <= 10]
    for c, yi in zip(costs, y):
        assert np.dot(yi, weights) <= 10
        np.testing.assert_allclose((c * yi).sum(), brute_force(c, candidates, "min"), rtol=1e-5)


def test_integer_linear_program_general_integers_match_scipy():
    solver = itf.solvers.IntegerLinearProgram(A_ub=[[1, 1, 1], [2, 1, 0]], b_ub=[7.5, 6], bounds=(0, 5))
    costs = np.array([[-1.0, -2.0, 0.5], [-3.0, -1.0, -1.0]], np.float32)
    y = solver(costs).numpy()
    for c, yi in zip(costs, y):
        ref = scipy.optimize.milp(
            c.astype(float),
            integrality=np.ones(3),
            bounds=scipy.optimize.Bounds(0, 5),
            constraints=scipy.optimize.LinearConstraint([[1, 1, 1], [2, 1, 0]], -np.inf, [7.5, 6]),
            options={"mip_rel_gap": 0},
        )
        np.testing.assert_allclose((c * yi).sum(), ref.fun, rtol=1e-6)
        assert np.all(yi == np.round(yi))


def test_integer_linear_program_infeasible_and_unbounded():
    infeasible = itf.solvers.IntegerLinearProgram(A_eq=[[1, 1]], b_eq=[3])  # binary x can't sum to 3
    with pytest.raises(ValueError, match="infeasible"):
        infeasible([[1.0, 1.0]])
    unbounded = itf.solvers.IntegerLinearProgram(bounds=(0, None))
    with pytest.raises(ValueError, match="unbounded"):
        unbounded([[-1.0, 1.0]])


@pytest.mark.parametrize(
    "costs, highs_fails", [([1e30, 2e30, 3e30], True), ([-1e30, 1.0, 2.0], False), ([1e20, 0.0, 0.0], False)]
)
def test_integer_linear_program_rejects_costs_highs_calls_infinite(costs, highs_fails):
    solver = itf.solvers.IntegerLinearProgram(A_eq=[[1, 1, 1]], b_eq=[2], name="pick_two")
    largest = max(abs(c) for c in costs)
    message = f"'pick_two': HiGHS treats costs with \\|c\\| >= 1e\\+20 as infinite.*max\\(\\|costs\\|\\)={re.escape(f'{largest:g}')}"
    with pytest.raises(ValueError, match=message):
        solver([costs])
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        tf.function(solver)(tf.constant([costs], tf.float64))
    unchecked = itf.solvers.IntegerLinearProgram(A_eq=[[1, 1, 1]], b_eq=[2], validate_args=False)
    if highs_fails:  # unchecked, HiGHS answers "unknown" here (for -1e30 it reports an objective of -inf)
        with pytest.raises(ValueError, match="no proven optimum.*near HiGHS' infinity"):
            unchecked([costs])


def test_integer_linear_program_large_finite_costs_below_highs_infinity():
    solver = itf.solvers.IntegerLinearProgram(A_eq=[[1, 1, 1]], b_eq=[2])
    costs = np.array([[1e19, 3e19, 2e19], [2e15, 1e15, 3e15]])
    expected = [min(k_hot_vectors(3, 2), key=lambda y: float(np.dot(c, y))) for c in costs]  # brute force
    np.testing.assert_array_equal(solver(costs).numpy(), expected)


def test_integer_linear_program_bad_arguments():
    with pytest.raises(ValueError, match="given together"):
        itf.solvers.IntegerLinearProgram(A_ub=[[1, 1]])
    with pytest.raises(ValueError, match="rows"):
        itf.solvers.IntegerLinearProgram(A_ub=[[1, 1]], b_ub=[1, 2])
    with pytest.raises(ValueError, match="variables"):
        itf.solvers.IntegerLinearProgram(A_eq=[[1, 1]], b_eq=[1])([[1.0, 2.0, 3.0]])


def test_from_numpy_runs_user_function_in_graph():
    solver = itf.solvers.from_numpy(lambda c: (c == c.max()).astype(float), sense="max", on_hyperplane=True)
    costs = RNG.normal(size=(5, 4)).astype(np.float32)
    out = tf.function(solver)(tf.constant(costs))
    assert out.shape == (5, 4)
    np.testing.assert_array_equal(out.numpy().argmax(-1), costs.argmax(-1))
    assert solver.sense == "max" and solver.on_hyperplane and not solver.xla


def test_from_numpy_output_shape_and_wrong_shape_error():
    solver = itf.solvers.from_numpy(lambda c: np.array([c.argmin()]), output_shape=[1], name="argmin_index")
    assert tf.function(solver).get_concrete_function(tf.TensorSpec([None, 4])).output_shapes == [None, 1]
    bad = itf.solvers.from_numpy(lambda c: np.zeros(3), name="bad")
    with pytest.raises(ValueError, match="wrong shape"):
        bad([[1.0, 2.0]])


@pytest.mark.parametrize(
    "result, error, message",
    [
        (np.array([0.0, np.nan, 1.0]), ValueError, r"returned non-finite values \(NaN or inf\).*nan"),
        (np.array([0.0, np.inf, 1.0]), ValueError, "returned non-finite values"),
        (None, TypeError, "must return a real numeric array. Received: NoneType"),
        (np.array(["a", "b", "c"]), TypeError, "must return a real numeric array"),
        (np.array([1j, 0, 0]), TypeError, "must return a real numeric array"),
        (np.array([{}, {}, {}], dtype=object), TypeError, "must return a real numeric array"),
    ],
)
def test_from_numpy_validates_results(result, error, message):
    solver = itf.solvers.from_numpy(lambda c: result, name="broken")
    costs = np.zeros((3, 3), np.float32)
    with pytest.raises(error, match=f"(?s)'broken'.*{message}") as info:
        solver(costs)
    assert "(instance 0 of the batch, solver 'broken')" in info.value.__notes__
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"(?s)'broken'.*{message}"):  # graph mode too
        tf.function(solver)(tf.constant(costs))


def test_from_numpy_names_the_failing_instance():
    def ratio(c):
        with np.errstate(divide="ignore", invalid="ignore"):
            return c / c[0]  # 0 / 0 on the second instance only

    solver = itf.solvers.from_numpy(ratio)
    with pytest.raises(ValueError, match="non-finite") as info:
        solver([[1.0, 2.0], [0.0, 1.0], [2.0, 2.0]])
    assert info.value.__notes__ == ["(instance 1 of the batch, solver 'ratio')"]


def test_from_numpy_timeout_gives_up_a_hanging_instance():
    release = threading.Event()

    def hangs_on_negative(c):
        if c[0] < 0:
            release.wait(60)
        return (c == c.min()).astype(float)

    solver = itf.solvers.from_numpy(hangs_on_negative, name="hangs", timeout=0.3, num_workers=2)
    costs = np.array([[1.0, 2.0], [-1.0, 0.0], [3.0, 1.0]], np.float32)
    try:
        start = time.monotonic()
        with pytest.raises(
            TimeoutError, match=r"'hangs': `fn` did not return within timeout=0\.3 s on instance\(s\) \[1\]"
        ):
            solver(costs)
        assert time.monotonic() - start < 5
        with pytest.raises(tf.errors.OpError, match="did not return within timeout=0.3 s"):  # graph mode
            tf.function(solver)(tf.constant(costs))
        np.testing.assert_array_equal(solver(costs[[0, 2]]).numpy(), [[1, 0], [0, 1]])  # fast instances pass
    finally:
        release.set()


def test_from_numpy_waits_interruptibly():
    assert threading.current_thread() is threading.main_thread()  # Python runs signal handlers there only
    release = threading.Event()
    solver = itf.solvers.from_numpy(lambda c: release.wait(60) and c, name="hangs")  # no timeout
    timer = threading.Timer(0.3, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT))
    # Ctrl-C's default handler: pytest-xdist workers ignore SIGINT (the controller handles Ctrl-C)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        timer.start()
        start = time.monotonic()
        with pytest.raises(KeyboardInterrupt):  # Ctrl-C
            solver(np.zeros((2, 3), np.float32))
        assert time.monotonic() - start < 5
    finally:
        timer.cancel()
        release.set()
        signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("timeout", [0, -1.0, float("inf"), "5", True])
def test_from_numpy_rejects_bad_timeout(timeout):
    with pytest.raises(
        ValueError, match=f"`timeout` must be a positive number of seconds or None. Received: timeout={timeout!r}"
    ):
        itf.solvers.from_numpy(pick_min, timeout=timeout)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: itf.solvers.TopK(k=0), ValueError, "k"),
        (lambda: itf.solvers.TopK(k=2.5), ValueError, "k"),
        (lambda: itf.solvers.TopK(k=5)([[1.0, 2.0]]), ValueError, "k <= n"),
        (lambda: itf.solvers.TopK(k=1)([1.0, 2.0]), ValueError, "rank"),
        (lambda: itf.solvers.TopK(k=1)([[1.0, np.nan]]), ValueError, "non-finite"),
        (lambda: itf.solvers.Ranking()([[1.0, np.inf]]), ValueError, "non-finite"),
        (lambda: itf.solvers.Argmax()(tf.constant([[1, 2]])), TypeError, "floating"),
        (lambda: itf.solvers.LinearAssignment()([[np.nan, 1.0], [1.0, 1.0]]), ValueError, "shape"),
        (lambda: itf.solvers.LinearAssignment()([[[np.nan, 1.0], [1.0, 1.0]]]), ValueError, "non-finite"),
        (lambda: itf.solvers.from_numpy(lambda c: c, sense="up"), ValueError, "sense"),
        (lambda: itf.solvers.from_numpy(3), TypeError, "callable"),
        (lambda: itf.solvers.LinearAssignment(num_workers=0), ValueError, "num_workers"),
    ],
)
def test_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_nan_check_in_graph_mode_raises():
    f = tf.function(itf.solvers.TopK(k=1))
    with pytest.raises(tf.errors.InvalidArgumentError, match="non-finite"):
        f(tf.constant([[1.0, np.nan]]))
    g = tf.function(itf.solvers.LinearAssignment())
    with pytest.raises(Exception, match="non-finite"):
        g(tf.constant([[[1.0, np.nan], [0.0, 1.0]]]))


@keras.saving.register_keras_serializable(package="tests")
def pick_min(c):
    return (c == c.min()).astype(float)


@pytest.mark.parametrize(
    "solver",
    [
        itf.solvers.TopK(k=3, validate_args=False),
        itf.solvers.Argmax(),
        itf.solvers.Ranking(normalize=True),
        itf.solvers.LinearAssignment(num_workers=2),
        itf.solvers.IntegerLinearProgram(A_ub=[[1, 2]], b_ub=[2], bounds=(0, [1, 3]), time_limit=5.0),
        itf.solvers.from_numpy(pick_min, sense="min", on_hyperplane=True),
        itf.solvers.from_numpy(pick_min, timeout=2.5),
    ],
)
def test_config_round_trip(solver):
    config = keras.saving.serialize_keras_object(solver)
    restored = keras.saving.deserialize_keras_object(config)
    assert type(restored) is type(solver)
    assert restored.get_config() == solver.get_config()
    assert (restored.sense, restored.xla, restored.on_hyperplane) == (solver.sense, solver.xla, solver.on_hyperplane)


def test_host_solver_is_safe_after_tensorflow_import_in_subprocess():
    code = (
        "import os; os.environ['TF_CPP_MIN_LOG_LEVEL']='3'\n"
        "import tensorflow as tf\n"
        "import identity_tf as itf, numpy as np\n"
        "c = np.random.default_rng(0).normal(size=(4, 6, 6)).astype('float32')\n"
        "print(tf.function(itf.solvers.LinearAssignment())(c).numpy().sum())\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("24.0")
