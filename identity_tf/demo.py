"""A small end-to-end demo: learn shortest-path costs from features with ``model.fit``.

It needs no download (``identity-tf demo``). Each example is an ``H x W`` grid of feature
vectors; the hidden true vertex costs are a fixed non-linear function of the features; the label is the
shortest path (8-neighbourhood, top-left to bottom-right) under the true costs. A 1x1-conv network predicts costs,
``SolverLayer(ShortestPath)`` turns them into a path, and the Hamming loss to the true path trains the network
through the Identity method (with P_norm and margin noise) or Blackbox backpropagation.
"""

from __future__ import annotations

import dataclasses
import time

import keras
import numpy as np

from identity_tf import gradients, layers, losses, solvers, validation


@dataclasses.dataclass
class DemoConfig:
    """Settings of the demo (``identity-tf demo --set KEY=VALUE``).

    Attributes:
        grid: Side of the square grid of vertices.
        features: Features per vertex.
        train_size, test_size: Generated examples.
        epochs, batch_size, learning_rate: ``model.fit`` with Adam.
        gradient: "identity" (Identity + P_norm + margin noise) or "blackbox" (BB, lambda 20).
        alpha: Margin noise of the Identity model.
        seed: Seed of the data, the weights and the noise.
    """

    grid: int = 12
    features: int = 8
    train_size: int = 1000
    test_size: int = 200
    epochs: int = 20
    batch_size: int = 50
    learning_rate: float = 1e-3
    gradient: str = "identity"  # or "blackbox"
    alpha: float = 0.2  # margin noise
    seed: int = 0

    def __post_init__(self):
        if self.gradient not in ("identity", "blackbox"):
            raise validation.ConfigError(
                f"`gradient` must be 'identity' or 'blackbox'. Received: gradient={self.gradient!r}"
            )


def config_from_overrides(items: list[str]) -> DemoConfig:
    """``["epochs=5", "gradient=blackbox"]`` -> a checked :class:`DemoConfig` (``identity-tf demo --set``).

    Values are read as YAML scalars and checked by type and range
    (:func:`identity_tf.validation.check_section`); a bad key or value is a ``ConfigError``.

    Example:

    >>> config_from_overrides(["epochs=5", "learning_rate=1e-2"]).epochs
    5
    >>> config_from_overrides(["epochs=abc"])
    Traceback (most recent call last):
    ...
    identity_tf.validation.ConfigError: `demo.epochs` must be an integer >= 1. Received: epochs='abc' (str)
    """
    import yaml

    fields = sorted(f.name for f in dataclasses.fields(DemoConfig))
    values = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or key.strip() not in fields:
            raise validation.ConfigError(f"`demo --set` expects KEY=VALUE with KEY in {fields}. Received: {item!r}")
        try:
            values[key.strip()] = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise validation.ConfigError(
                f"`demo --set {item}`: not a YAML scalar ({error}). Received: {text!r}"
            ) from None
    return DemoConfig(**validation.check_section("demo", DemoConfig, values))


def make_data(config: DemoConfig, size: int, rng: np.random.Generator, weights):
    """Features ``[N, H, W, F]``, true costs ``[N, H, W]`` and shortest paths ``[N, H, W]``."""
    features = rng.normal(size=(size, config.grid, config.grid, config.features)).astype(np.float32)
    hidden = np.tanh(features @ weights[0])  # [N, H, W, 16]
    true_costs = np.log1p(np.exp(hidden @ weights[1]))[..., 0] + 0.05  # softplus, [N, H, W]
    paths = solvers.ShortestPath(neighbourhood=8)(true_costs.astype(np.float32)).numpy()
    return features, true_costs.astype(np.float32), paths


def build_model(config: DemoConfig) -> keras.Model:
    solver = solvers.ShortestPath(neighbourhood=8)
    inputs = keras.Input((config.grid, config.grid, config.features))
    x = keras.layers.Conv2D(32, 1, activation="relu")(inputs)
    x = keras.layers.Conv2D(1, 1)(x)
    raw = keras.layers.Reshape((config.grid, config.grid))(x)
    if config.gradient == "identity":
        # The margin noise goes before the softplus so that the costs stay >= 0 for the shortest-path solver.
        raw = layers.NoiseMarginLayer(config.alpha, seed=config.seed)(raw)
        costs = layers.ProjectionLayer("norm")(keras.layers.Activation("softplus")(raw))
        method = gradients.Identity()
    else:
        costs = keras.layers.Activation("softplus")(raw)
        method = gradients.Blackbox(lam=20.0)
    paths = layers.SolverLayer(solver, gradient=method, name="shortest_path")(costs)
    model = keras.Model(inputs, paths)
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss=losses.HammingLoss())
    return model


def evaluate(model: keras.Model, features, true_costs, paths) -> dict[str, float]:
    predicted = model.predict(features, batch_size=100, verbose=0)
    exact = float(np.mean(np.all(predicted == paths, axis=(1, 2))))
    ratio = np.sum(predicted * true_costs, axis=(1, 2)) / np.sum(paths * true_costs, axis=(1, 2))
    return {"exact_path_accuracy": exact, "cost_ratio_x100": float(100 * ratio.mean())}


def run(config: DemoConfig | None = None, verbose: int = 1) -> dict[str, float]:
    """Trains the demo model and returns test metrics before and after training."""
    config = config or DemoConfig()
    if config.gradient not in ("identity", "blackbox"):
        raise ValueError(f"`gradient` must be 'identity' or 'blackbox'. Received: gradient={config.gradient!r}")
    keras.utils.set_random_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    weights = (rng.normal(size=(config.features, 16)), rng.normal(size=(16, 1)))
    train = make_data(config, config.train_size, rng, weights)
    test = make_data(config, config.test_size, rng, weights)
    model = build_model(config)
    before = evaluate(model, *test)
    start = time.perf_counter()
    model.fit(train[0], train[2], epochs=config.epochs, batch_size=config.batch_size, verbose=verbose)
    after = evaluate(model, *test)
    result = {f"before_{k}": v for k, v in before.items()}
    result.update(after)
    result["train_seconds"] = time.perf_counter() - start
    return result
