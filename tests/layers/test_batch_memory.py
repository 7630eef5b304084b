"""BatchMemory: the last M batches as extra database entries (expiry, validity, no gradient, fit, save, replicas)."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import identity_tf as itf

RNG = np.random.default_rng(7)


def batch(step, size=2, dim=3):
    """Batch ``step``: every entry is ``step`` (embeddings) and labels ``10 * step + row``."""
    return np.full((size, dim), float(step), np.float32), 10 * step + np.arange(size)


def expected_database(step, num_batches, batch_size, size=2, dim=3):
    """What the layer must return at ``step`` (all previous batches of ``size`` rows, newest first)."""
    rows, labels, valid = [np.full((size, dim), float(step))], [10 * step + np.arange(size)], [np.ones(size, bool)]
    for age in range(1, num_batches + 1):
        old = step - age
        present = old >= 0
        rows.append(np.where((np.arange(batch_size) < size)[:, None] & present, float(old), 0.0) * np.ones(dim))
        labels.append(
            np.concatenate([10 * old + np.arange(size), np.zeros(batch_size - size)])
            if present
            else np.zeros(batch_size)
        )
        valid.append((np.arange(batch_size) < size) & present)
    return np.concatenate(rows), np.concatenate(labels), np.concatenate(valid)


@pytest.mark.parametrize("mode", ["eager", "function", "xla"])
def test_entries_expire_after_num_batches_and_first_batches_are_masked(mode):
    memory = itf.layers.BatchMemory(num_batches=3, batch_size=3)  # batches of 2: one invalid row per slot

    def call(embeddings, labels):
        return memory(embeddings, labels, training=True)

    if mode != "eager":
        call = tf.function(call, jit_compile=mode == "xla")
    for step in range(6):
        database, labels, valid = call(*batch(step))
        want = expected_database(step, num_batches=3, batch_size=3)
        np.testing.assert_array_equal(database.numpy(), want[0])
        np.testing.assert_array_equal(labels.numpy(), want[1])
        np.testing.assert_array_equal(valid.numpy(), want[2])
    assert int(memory.batches_seen.numpy()) == 6


def test_inference_returns_the_batch_and_leaves_memory_untouched():
    memory = itf.layers.BatchMemory(num_batches=2, batch_size=2)
    memory(*batch(0), training=True)
    database, labels, valid = memory(*batch(1), training=False)
    np.testing.assert_array_equal(database.numpy(), batch(1)[0])
    np.testing.assert_array_equal(valid.numpy(), [True, True])
    assert int(memory.batches_seen.numpy()) == 1
    memory.reset()
    _, _, valid = memory(*batch(2), training=True)
    np.testing.assert_array_equal(valid.numpy(), [True, True, False, False, False, False])


def test_no_gradient_flows_into_the_memory():
    memory = itf.layers.BatchMemory(num_batches=2, batch_size=2)
    dense = keras.layers.Dense(3)
    x0, x1 = RNG.normal(size=(2, 4)).astype(np.float32), RNG.normal(size=(2, 4)).astype(np.float32)
    memory(dense(x0), np.array([0, 1]), training=True)
    weights = RNG.normal(size=(6, 3)).astype(np.float32)
    with tf.GradientTape(persistent=True) as tape:
        embeddings = dense(x1)
        database, _, _ = memory(embeddings, np.array([0, 1]), training=True)
        loss = tf.reduce_sum(database * weights)
    # d loss / d current embeddings: only the current rows' weights; the memory rows are constants
    np.testing.assert_allclose(tape.gradient(loss, embeddings).numpy(), weights[:2])
    kernel_grad = tape.gradient(loss, dense.kernel).numpy()
    np.testing.assert_allclose(kernel_grad, x1.T @ weights[:2], rtol=1e-5)
    assert tape.gradient(loss, memory.memory_embeddings.value) is None
    assert all(not v.trainable for v in memory.weights) and not memory.trainable_weights


class TinyRetrieval(keras.Model):
    """Embeddings of a Dense layer trained with the recall loss against batch + memory."""

    def __init__(self, memory_batches=2, batch_size=8):
        super().__init__()
        self.embed = keras.layers.Dense(4)
        self.memory = itf.layers.BatchMemory(num_batches=memory_batches, batch_size=batch_size)
        self.recall_loss = itf.losses.RecallLoss(gradient=itf.gradients.Blackbox(lam=0.5))

    def call(self, inputs):
        return tf.math.l2_normalize(self.embed(inputs), axis=-1)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        database, database_labels, valid = self.memory(y_pred, y, training=training)
        scores = y_pred @ tf.transpose(database)  # [B, B + M * rows]
        relevance = tf.cast(y[:, None] == database_labels[None, :], scores.dtype)
        batch = tf.shape(y_pred)[0]
        not_self = tf.pad(
            ~tf.eye(batch, dtype=tf.bool), [[0, 0], [0, tf.shape(database)[0] - batch]], constant_values=True
        )
        return self.recall_loss(relevance, scores, valid=valid[None, :] & not_self)


def retrieval_data(n=48):
    labels = RNG.integers(0, 4, size=n).astype(np.int32)
    x = (np.eye(4)[labels] @ RNG.normal(size=(4, 6)) + 0.5 * RNG.normal(size=(n, 6))).astype(np.float32)
    return x, labels


def test_memory_inside_model_fit():
    keras.utils.set_random_seed(1)
    x, labels = retrieval_data()
    model = TinyRetrieval()
    model.compile(optimizer=keras.optimizers.SGD(0.0))  # frozen weights: the memory must hold the last batches
    model.fit(x, labels, batch_size=8, epochs=1, shuffle=False, verbose=0)
    assert int(model.memory.batches_seen.numpy()) == 6
    embeddings = model.predict(x, verbose=0)
    stored = model.memory.memory_embeddings.numpy()  # slots of batches 4 and 5 (6 mod 2 = 0 is next)
    np.testing.assert_allclose(stored[0], embeddings[32:40], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stored[1], embeddings[40:48], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(model.memory.memory_labels.numpy(), labels[32:48].reshape(2, 8))

    trained = TinyRetrieval()
    trained.compile(optimizer=keras.optimizers.Adam(0.05))
    history = trained.fit(x, labels, batch_size=8, epochs=3, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_memory_under_xla_fit():
    x, labels = retrieval_data(32)
    model = TinyRetrieval(batch_size=8)
    model.compile(optimizer=keras.optimizers.Adam(0.01), jit_compile=True)
    history = model.fit(x, labels, batch_size=8, epochs=1, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert int(model.memory.batches_seen.numpy()) == 4


def test_memory_survives_save_and_load_of_weights(tmp_path):
    def make():
        inputs = keras.Input((3,))
        labels = keras.Input((), dtype="int32")
        memory = itf.layers.BatchMemory(num_batches=2, batch_size=2)
        outputs = memory(keras.layers.Dense(3)(inputs), labels)
        return keras.Model([inputs, labels], outputs), memory

    model, memory = make()
    for step in range(3):
        memory(*batch(step), training=True)
    path = os.path.join(tmp_path, "memory.weights.h5")
    model.save_weights(path)
    restored_model, restored = make()
    restored_model.load_weights(path)
    for variable, restored_variable in zip(memory.weights, restored.weights):
        np.testing.assert_array_equal(variable.numpy(), restored_variable.numpy())
    for a, b in zip(memory(*batch(3), training=True), restored(*batch(3), training=True)):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def mirrored():
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    assert len(devices) == 2
    return tf.distribute.MirroredStrategy(devices, cross_device_ops=tf.distribute.ReductionToOneDevice())


def test_memory_is_gathered_across_replicas_under_mirrored_strategy(tmp_path):
    x, labels = retrieval_data(32)
    strategy = mirrored()
    with strategy.scope():
        model = TinyRetrieval(batch_size=8)
        model.compile(optimizer=keras.optimizers.SGD(0.0))
    model.fit(x, labels, batch_size=8, epochs=1, shuffle=False, verbose=0)
    memory = model.memory
    assert memory.memory_embeddings.shape == (2, 8, 4)  # 2 replicas x ceil(8 / 2) rows per slot
    replicas = memory.memory_embeddings.value.values
    assert len(replicas) == 2
    np.testing.assert_array_equal(replicas[0].numpy(), replicas[1].numpy())  # the same gathered memory
    embeddings = model.predict(x, verbose=0)
    np.testing.assert_allclose(memory.memory_embeddings.numpy()[0], embeddings[16:24], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(memory.memory_embeddings.numpy()[1], embeddings[24:32], rtol=1e-5, atol=1e-6)
    assert memory.memory_valid.numpy().all() and int(memory.batches_seen.numpy()) == 4

    # Checkpoint resume: the saved (first replica's) memory is restored on every replica.
    path = os.path.join(tmp_path, "mirrored.weights.h5")
    model.save_weights(path)
    with strategy.scope():
        other = TinyRetrieval(batch_size=8)
        other.compile(optimizer=keras.optimizers.SGD(0.0))
    other.fit(x[:8] + 5.0, labels[:8], batch_size=8, epochs=1, verbose=0)  # builds it, with other contents
    other.load_weights(path)
    for variable, restored in zip(memory.weights, other.memory.weights):
        for copy in restored.value.values:
            np.testing.assert_array_equal(copy.numpy(), variable.value.values[0].numpy())


def test_config_round_trip_and_errors():
    layer = itf.layers.BatchMemory(num_batches=3, batch_size=128, label_dtype="int64", name="memory")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert restored.get_config() == layer.get_config()
    with pytest.raises(ValueError, match="num_batches=0"):
        itf.layers.BatchMemory(num_batches=0, batch_size=4)
    with pytest.raises(ValueError, match="batch_size=None"):
        itf.layers.BatchMemory(num_batches=2)
    with pytest.raises(ValueError, match="at most 2 rows"):
        itf.layers.BatchMemory(num_batches=2, batch_size=2)(*batch(0, size=3), training=True)
