"""Serialisation round trips compared by behaviour, not by config dicts.

Every core layer is restored twice: from ``keras.saving.serialize_keras_object`` /
``deserialize_keras_object``, and from a saved ``.keras`` model (``Input -> Dense -> layer``). The restored
copy and the original then run the same call sequence (inference, then two training steps) and must give
identical outputs and identical tape gradients: a copy restored with the same seed draws the same noise
sequence. (Keras does not save a ``SeedGenerator``'s state in ``.keras`` files, so a loaded model restarts its
noise sequence from the seed; the models are saved before any noisy call.) Also: the straight-through backward
pass of ``GumbelSoftmaxTopK`` against the closed-form Jacobian of ``softmax(z / T)``.
"""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import identity_tf as itf
import identity_tf.layers as layers_lib

from identity_tf.layers import GradientNoiseLayer, GumbelSoftmaxTopK, RelaxedSubset, SumOfGammaNoise

N = 6
X = np.random.default_rng(0).normal(size=(4, N)).astype(np.float32)
UPSTREAM = np.random.default_rng(1).normal(size=(4, N)).astype(np.float32)


def noise_margin():
    layer = layers_lib.NoiseMarginLayer(alpha=0.3, seed=5)
    layer.set_alpha(0.6)  # the changed margin must survive the round trip
    return layer


LAYERS = {
    "noise_margin": noise_margin,
    "projection_std": lambda: layers_lib.ProjectionLayer("std"),
    "projection_auto": lambda: layers_lib.ProjectionLayer("auto", solver=itf.solvers.TopK(k=2)),
    "solver_identity": lambda: layers_lib.SolverLayer(itf.solvers.TopK(k=2), gradient="identity"),
    "solver_blackbox": lambda: layers_lib.SolverLayer(itf.solvers.TopK(k=2), gradient=itf.gradients.Blackbox(lam=5.0)),
    "solver_imle": lambda: layers_lib.SolverLayer(
        itf.solvers.TopK(k=2),
        gradient=itf.gradients.IMLE(lam=2.0, noise=itf.noise.Gumbel(0.5), num_samples=2, sample_at_inference=True),
        seed=7,
    ),
    "solver_imle_sum_of_gamma": lambda: layers_lib.SolverLayer(
        itf.solvers.TopK(k=2), gradient=itf.gradients.IMLE(lam=2.0, noise=itf.noise.SumOfGamma(k=2, s=3)), seed=8
    ),
    "solver_perturbed": lambda: layers_lib.SolverLayer(
        itf.solvers.TopK(k=2), gradient=itf.gradients.Perturbed(sigma=0.3, num_samples=3, noise="gumbel"), seed=9
    ),
    "solver_perturbed_ranking": lambda: layers_lib.SolverLayer(
        itf.solvers.Ranking(),
        gradient=itf.gradients.Perturbed(sigma=0.5, num_samples=2, sample_at_inference=True),
        seed=10,
    ),
    "gradient_noise": lambda: GradientNoiseLayer(sigma=0.5, seed=3, scale="per_example"),
    "sum_of_gamma_noise": lambda: SumOfGammaNoise(k=2, tau=1.0, s=3, seed=4),
    "gumbel_softmax_topk": lambda: GumbelSoftmaxTopK(k=2, temperature=0.5, seed=6),
    "relaxed_subset_l2x": lambda: RelaxedSubset(k=2, kind="l2x", temperature=0.5, seed=11),
    "relaxed_subset_softsub": lambda: RelaxedSubset(k=2, kind="softsub", temperature=0.5, seed=12),
}
#: Layers whose training-mode calls are random (two steps must differ).
STOCHASTIC = {
    "noise_margin",
    "solver_imle",
    "solver_imle_sum_of_gamma",
    "solver_perturbed",
    "solver_perturbed_ranking",
    "gradient_noise",
    "sum_of_gamma_noise",
    "gumbel_softmax_topk",
    "relaxed_subset_l2x",
    "relaxed_subset_softsub",
}


def behaviour(fn, variables=()):
    """The call sequence: an inference call, then two training steps with tape gradients w.r.t. the input (and
    ``variables``). Returns a flat list of numpy arrays."""
    out = [np.asarray(fn(tf.constant(X), training=False))]
    for _ in range(2):
        x = tf.constant(X)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x, training=True)
            loss = tf.reduce_sum(y * UPSTREAM)
        grads = tape.gradient(loss, [x, *variables])
        out += [y.numpy()] + [g.numpy() for g in grads]
    return out


def assert_same(a, b):
    assert len(a) == len(b)
    for i, (u, v) in enumerate(zip(a, b)):
        np.testing.assert_array_equal(u, v, err_msg=f"entry {i} of the call sequence")


def model_with(layer):
    inputs = keras.Input((N,))
    dense = keras.layers.Dense(N, kernel_initializer=keras.initializers.RandomNormal(seed=1), bias_initializer="ones")
    return keras.Model(inputs, layer(dense(inputs)))


@pytest.mark.parametrize("name", list(LAYERS))
def test_config_round_trip_keeps_behaviour(name):
    original = LAYERS[name]()
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(original))
    assert type(restored) is type(original) and restored is not original
    a, b = behaviour(original), behaviour(restored)
    assert_same(a, b)
    if name in STOCHASTIC:  # the equality is not vacuous: the layer is random in training and the seed is used
        assert not (np.array_equal(a[1], a[3]) and np.array_equal(a[2], a[4])), "two training steps were equal"


@pytest.mark.parametrize("name", list(LAYERS))
def test_keras_file_round_trip_keeps_behaviour(name, tmp_path):
    model = model_with(LAYERS[name]())
    path = os.path.join(tmp_path, f"{name}.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    a = behaviour(model, model.trainable_variables)
    b = behaviour(loaded, loaded.trainable_variables)
    assert_same(a, b)


def test_noise_margin_set_alpha_survives_both_round_trips(tmp_path):
    """Behavioural form of the alpha check: the restored training noise has magnitude alpha / 2 = 0.3."""
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(noise_margin()))
    zeros = tf.zeros((3, 50))
    np.testing.assert_allclose(np.abs(restored(zeros, training=True).numpy()), 0.3, rtol=1e-6)
    inputs = keras.Input((50,))
    model = keras.Model(inputs, noise_margin()(inputs))
    model.save(os.path.join(tmp_path, "m.keras"))
    loaded = keras.models.load_model(os.path.join(tmp_path, "m.keras"))
    np.testing.assert_allclose(np.abs(loaded(zeros, training=True).numpy()), 0.3, rtol=1e-6)


# -------------------------------------------------------------------------------------------------- BatchMemory


def memory_model():
    embeddings = keras.Input((3,))
    labels = keras.Input((), dtype="int32")
    projected = keras.layers.Dense(3, kernel_initializer=keras.initializers.RandomNormal(seed=2))(embeddings)
    database, database_labels, valid = layers_lib.BatchMemory(num_batches=2, batch_size=2)(projected, labels)
    return keras.Model([embeddings, labels], [database, database_labels, valid])


def memory_step(model, step):
    x = tf.constant(np.full((2, 3), step + 1.0, np.float32) + np.arange(3, dtype=np.float32))
    labels = tf.constant([10 * step, 10 * step + 1], tf.int32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        database, database_labels, valid = model([x, labels], training=True)
        weights = tf.reshape(tf.range(tf.size(database), dtype=tf.float32), tf.shape(database))
        loss = tf.reduce_sum(database * weights)
    grads = tape.gradient(loss, [x, *model.trainable_variables])
    return [database.numpy(), database_labels.numpy(), valid.numpy()] + [g.numpy() for g in grads]


def test_batch_memory_config_round_trip_and_saved_memory(tmp_path):
    original = memory_model()
    # config round trip of the layer: a fresh copy fed the same batches returns the same databases
    layer = next(layer for layer in original.layers if isinstance(layer, layers_lib.BatchMemory))
    copy = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    for step in range(3):
        x = tf.constant(np.full((2, 3), float(step), np.float32))
        labels = tf.constant([step, step], tf.int32)
        assert_same(
            list(map(np.asarray, layer(x, labels, training=True))),
            list(map(np.asarray, copy(x, labels, training=True))),
        )
    layer.reset()
    # .keras round trip after two steps: the memory is saved with the weights, so the next steps agree
    for step in range(2):
        memory_step(original, step)
    original.save(os.path.join(tmp_path, "memory.keras"))
    loaded = keras.models.load_model(os.path.join(tmp_path, "memory.keras"))
    for step in (2, 3):
        a, b = memory_step(original, step), memory_step(loaded, step)
        assert a[2].all()  # both stored batches are valid: the memory really was restored
        assert_same(a, b)
    # inference: the batch alone, memory untouched
    x = tf.constant(X[:2, :3])
    assert_same(
        [np.asarray(t) for t in original([x, tf.constant([0, 1])], training=False)],
        [np.asarray(t) for t in loaded([x, tf.constant([0, 1])], training=False)],
    )


# ---------------------------------------------------------------------------- Gumbel straight-through top-k


def softmax_vjp(z, upstream, temperature):
    """Closed form ``J^T u`` of ``softmax(z / T)``: ``J = (diag(p) - p p^T) / T``, row by row."""
    z64 = z.astype(np.float64) / temperature
    p = np.exp(z64 - z64.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return (p * upstream - p * (p * upstream).sum(-1, keepdims=True)) / temperature


def topk_numpy(z, k):
    out = np.zeros_like(z)
    np.put_along_axis(out, np.argsort(-z, axis=-1, kind="stable")[:, :k], 1.0, axis=-1)
    return out


def tape(layer, x, training):
    x = tf.constant(x)
    with tf.GradientTape() as t:
        t.watch(x)
        y = layer(x, training=training)
        loss = tf.reduce_sum(y * UPSTREAM)
    return y.numpy(), t.gradient(loss, x).numpy()


def test_gumbel_softmax_topk_without_noise_is_hard_forward_soft_backward():
    layer = GumbelSoftmaxTopK(k=2, temperature=0.7, at_inference=False, seed=0)
    y, grad = tape(layer, X, training=False)
    np.testing.assert_array_equal(y, topk_numpy(X, 2))
    np.testing.assert_allclose(grad, softmax_vjp(X, UPSTREAM, 0.7), rtol=1e-5, atol=1e-6)


def test_gumbel_softmax_topk_training_uses_one_gumbel_sample_on_both_passes():
    """Training: forward k-hot top-k of z = logits + G, backward the softmax(z / T) Jacobian at the same z.
    G is the layer's own draw, recovered from a fresh SeedGenerator with the same seed."""
    seed, temperature = 13, 0.5
    layer = GumbelSoftmaxTopK(k=2, temperature=temperature, seed=seed)
    generator = keras.random.SeedGenerator(seed)
    changed = False
    for _ in range(2):  # two steps: fresh noise each, still matched
        gumbel = itf.noise.Gumbel().sample(X.shape, seed=generator).numpy()
        z = X + gumbel
        y, grad = tape(layer, X, training=True)
        np.testing.assert_array_equal(y, topk_numpy(z, 2))
        np.testing.assert_array_equal(y.sum(-1), 2.0)  # exactly k-hot
        np.testing.assert_allclose(grad, softmax_vjp(z, UPSTREAM, temperature), rtol=1e-4, atol=1e-6)
        changed |= not np.array_equal(y, topk_numpy(X, 2))
    assert changed  # the noise moved the top-k somewhere: the forward really is the noisy one
