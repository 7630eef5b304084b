"""SolverLayer checks the solver's accepted shapes when it is built, not in the first training step."""

import keras
import numpy as np
import pytest

import identity_tf as itf

TOO_BIG = "TopK needs k <= n \\(the size of the last axis\\). Received: k=30, n=20"


@pytest.mark.parametrize(
    "build",
    [
        lambda layer: keras.Model(inputs := keras.Input((20,)), layer(inputs)),  # functional
        lambda layer: keras.Sequential([keras.Input((20,)), layer]),
        lambda layer: layer(np.zeros((2, 20), "float32")),  # eager call
        lambda layer: layer.build((None, 20)),
    ],
    ids=["functional", "sequential", "eager", "build"],
)
def test_topk_larger_than_its_input_fails_at_build_time(build):
    layer = itf.layers.SolverLayer(itf.solvers.TopK(k=30), name="select")
    with pytest.raises(ValueError, match=f"SolverLayer 'select' cannot solve inputs of shape \\(.*, 20\\): {TOO_BIG}"):
        build(layer)


def test_wrong_rank_fails_at_build_time():
    layer = itf.layers.SolverLayer(itf.solvers.ShortestPath(), name="path")
    with pytest.raises(ValueError, match=r"'path' cannot solve inputs of shape \(None, 144\).*rank >= 3"):
        keras.Model(inputs := keras.Input((144,)), layer(inputs))


def test_valid_shapes_still_build_and_train():
    inputs = keras.Input((6,))
    outputs = itf.layers.SolverLayer(itf.solvers.TopK(k=2))(keras.layers.Dense(6)(inputs))
    model = keras.Model(inputs, outputs)
    model.compile("sgd", loss="mse")
    history = model.fit(np.ones((4, 6), "float32"), np.zeros((4, 6), "float32"), epochs=1, verbose=0)
    assert len(history.history["loss"]) == 1
    keras.Model(inputs := keras.Input((12, 12)), itf.layers.SolverLayer(itf.solvers.ShortestPath())(inputs))
