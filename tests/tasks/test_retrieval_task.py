"""The retrieval task: R@K against brute-force nearest neighbours, the episode loss against eq. 26 counted by hand
(with and without the batch memory), the masked projection, the optimiser's learning-rate factor and weight decay,
the class splits and the errors of bad settings."""

import math

import keras
import numpy as np
import pytest

from identity_tf import projections, train
from identity_tf.datasets.retrieval.format import RetrievalSet as Data
from identity_tf.tasks.retrieval import RetrievalAdam, RetrievalConfig, RetrievalData, RetrievalModel
from identity_tf.tasks.retrieval.model import episode_scores, fill_invalid
from identity_tf.tasks.retrieval.task import recall_at_ks, split_indices
from identity_tf.validation import ConfigError


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_recall_at_k_is_brute_force_nearest_neighbours():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 6, size=40)
    embeddings = unit(rng.normal(size=(40, 5)) + 0.8 * np.eye(6)[labels][:, :5])
    expected = {}
    for k in (1, 2, 4, 8):
        hits = []
        for q in range(40):
            distances = [np.arccos(np.clip(embeddings[q] @ embeddings[j], -1, 1)) for j in range(40)]
            others = sorted((d, j) for j, d in enumerate(distances) if j != q)[:k]
            hits.append(any(labels[j] == labels[q] for _, j in others))
        expected[f"recall_at_{k}"] = np.mean(hits)
    measured = recall_at_ks(embeddings.astype("float32"), labels)
    assert measured == pytest.approx(expected, abs=1e-7)
    assert 0 < expected["recall_at_1"] < expected["recall_at_8"] < 1


def eq26_episode(e, y, memory=(), memory_labels=()):
    """Sum over the episode's (query, positive) pairs of log(1 + log(1 + #irrelevant above)) / #pairs, by counting."""
    terms, pairs = 0.0, 0
    database = [(e[j], y[j], j) for j in range(len(y))] + [(m, ml, None) for m, ml in zip(memory, memory_labels)]
    for q in range(len(y)):
        entries = [(float(e[q] @ v), label) for v, label, j in database if j != q]
        for score, label in entries:
            if label == y[q]:
                above = sum(1 for s, lab in entries if s > score and lab != y[q])
                terms += math.log1p(math.log1p(above))
                pairs += 1
    return terms / pairs


def model(**config):
    config = {"image_size": 8, "width": 2, "embedding_dim": 4, **config}
    return RetrievalModel(config, {"gradient": "identity", "projection": "none"}, batch_size=2)


def test_episode_loss_is_eq26_per_episode():
    rng = np.random.default_rng(1)
    e = unit(rng.normal(size=(2, 6, 4))).astype("float32")
    y = np.array([[0, 0, 1, 1, 2, 2], [3, 3, 3, 4, 4, 4]])
    loss = float(model(memory_batches=0).compute_loss(y=y, y_pred=e, training=False))
    expected = np.mean([eq26_episode(e[b], y[b]) for b in range(2)])
    assert loss == pytest.approx(expected, rel=1e-5) and expected > 0


def test_episode_loss_with_memory():
    rng = np.random.default_rng(2)
    m = model(memory_batches=3)
    first = unit(rng.normal(size=(2, 4, 4))).astype("float32")
    y1 = np.array([[0, 0, 1, 1], [2, 2, 3, 3]])
    second = unit(rng.normal(size=(2, 4, 4))).astype("float32")
    y2 = np.array([[1, 1, 2, 2], [5, 5, 0, 0]])
    loss1 = float(m.compute_loss(y=y1, y_pred=first, training=True))  # empty memory
    assert loss1 == pytest.approx(np.mean([eq26_episode(first[b], y1[b]) for b in range(2)]), rel=1e-5)
    loss2 = float(m.compute_loss(y=y2, y_pred=second, training=True))  # memory = the first batch
    memory, memory_labels = first.reshape(-1, 4), y1.reshape(-1)
    expected = np.mean([eq26_episode(second[b], y2[b], memory, memory_labels) for b in range(2)])
    assert loss2 == pytest.approx(expected, rel=1e-5)
    # evaluation ignores (and keeps) the memory
    assert float(m.compute_loss(y=y2, y_pred=second, training=False)) == pytest.approx(
        np.mean([eq26_episode(second[b], y2[b]) for b in range(2)]), rel=1e-5
    )


def test_projection_acts_on_the_valid_entries_only():
    rng = np.random.default_rng(3)
    costs = rng.normal(size=(3, 7)).astype("float32")
    valid = rng.random((3, 7)) > 0.4
    valid[:, 0] = True
    valid[:, 1] = True
    for name in ("mean", "norm", "std"):
        projected = projections.get(name)(fill_invalid(costs, valid, name)).numpy()
        for row in range(3):
            w = costs[row, valid[row]].astype(np.float64)
            if name in ("mean", "std"):
                w = w - w.mean()
            if name in ("norm", "std"):
                w = w / np.linalg.norm(w)
            np.testing.assert_allclose(projected[row, valid[row]], w, rtol=1e-5, atol=1e-6)


def test_episode_scores_masks_the_query_itself():
    e = unit(np.arange(1, 13, dtype="float32").reshape(1, 3, 4))
    scores, relevance, valid = episode_scores(e, np.array([[1, 2, 1]]))
    np.testing.assert_allclose(scores.numpy(), e[0] @ e[0].T, rtol=1e-6)
    assert relevance.numpy().tolist() == [[1, 0, 1], [0, 1, 0], [1, 0, 1]]
    assert valid.numpy().tolist() == [[False, True, True], [True, False, True], [True, True, False]]


def test_optimizer_embedding_factor_and_weight_decay():
    inputs = keras.Input((2,))
    net = keras.Model(inputs, keras.layers.Dense(1, name="embedding")(keras.layers.Dense(2, name="conv")(inputs)))
    before = [v.numpy().copy() for v in net.trainable_variables]
    optimizer = RetrievalAdam(learning_rate=0.01, weight_decay_l2=0.0, lr_multipliers={"embedding": 3.0})
    optimizer.apply([np.ones(v.shape, "float32") for v in net.trainable_variables], net.trainable_variables)
    # Adam's first step is -lr * g / (|g| + eps): -0.01 per entry, times 3 under "embedding"
    for v, old in zip(net.trainable_variables, before):
        factor = 3.0 if "embedding" in v.path else 1.0
        np.testing.assert_allclose(v.numpy() - old, -0.01 * factor, rtol=1e-4)
    decay = RetrievalAdam(learning_rate=0.01, weight_decay_l2=0.1)
    w = keras.Variable(np.array([2.0, -3.0], "float32"))
    decay.apply([np.zeros(2, "float32")], [w])  # gradient 0 + 0.1 w: a step against the sign of w
    np.testing.assert_allclose(w.numpy(), [1.99, -2.99], rtol=1e-5)
    assert RetrievalAdam.from_config(optimizer.get_config()).lr_multipliers == {"embedding": 3.0}


def test_class_splits_are_disjoint():
    labels = np.repeat(np.arange(20), 3)
    data = Data(
        np.zeros((60, 2, 2, 3), np.uint8),
        labels,
        [str(c) for c in range(20)],
        list(range(10)),
        list(range(10, 20)),
        "t",
    )
    splits = split_indices(data, val_fraction=0.2, seed=0)
    classes = [set(labels[getattr(splits, name)]) for name in ("train", "val", "test")]
    assert [len(c) for c in classes] == [8, 2, 10]
    assert classes[0] | classes[1] == set(range(10)) and classes[2] == set(range(10, 20))
    assert not classes[0] & classes[1]
    with pytest.raises(ValueError, match="max_train_classes=3"):
        split_indices(data, 0.2, 0, max_train_classes=3)


def test_bad_settings_name_the_argument(tmp_path):
    with pytest.raises(ValueError, match="model.backbone"):
        RetrievalConfig(backbone="vgg16")
    with pytest.raises(ValueError, match="model.weights"):
        RetrievalConfig(weights="imagenet")
    with pytest.raises(FileNotFoundError, match="model.weights"):
        RetrievalModel({"image_size": 8, "width": 2, "weights": str(tmp_path / "missing.weights.h5")}).load_pretrained()
    with pytest.raises(ValueError, match="data.images_per_class"):
        RetrievalData(images_per_class=1)
    with pytest.raises(ValueError, match="data.source"):
        RetrievalData(source="imagenet")
    base = {"task": "retrieval", "method": {"gradient": "imle", "noise": "gumbel"}}
    with pytest.raises(ConfigError, match="supports method.gradient"):
        train.load_config(base)
    with pytest.raises(ConfigError, match="perturbation noise"):
        train.load_config({"task": "retrieval", "method": {"gradient": "identity", "noise": "sum_of_gamma"}})


def test_resnet50_backbone():
    m = RetrievalModel({"backbone": "resnet50", "image_size": 32}, batch_size=1)  # Keras' ResNet50, random weights
    assert m.backbone.output_shape == (None, 2048) and m.backbone.count_params() == 23587712


def test_validation_callback_logs_recall_and_mean_similarity():
    from identity_tf.tasks.retrieval.task import ValidationRecall

    rng = np.random.default_rng(4)
    embeddings = unit(rng.normal(size=(9, 3))).astype("float32")
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])

    class Embedder(keras.Model):  # embeds image i (a constant image of value i) as embeddings[i]
        def embed(self, images):
            return embeddings[images[:, 0, 0, 0].astype(int)]

    images = np.arange(9, dtype=np.uint8).reshape(9, 1, 1, 1).repeat(3, -1)
    callback = ValidationRecall(images, labels, np.arange(9))
    callback.set_model(Embedder())
    logs = {}
    callback.on_epoch_end(0, logs)
    similarities = embeddings @ embeddings.T
    expected = similarities[~np.eye(9, dtype=bool)].mean()
    assert logs["val_mean_similarity"] == pytest.approx(expected, rel=1e-5)
    assert logs["val_recall_at_1"] == pytest.approx(recall_at_ks(embeddings, labels, ks=(1,))["recall_at_1"])


@pytest.mark.parametrize("projection", ["none", "mean", "norm", "std", "blackbox"])
def test_every_method_fits_free_embeddings(projection):
    """Adam on free embeddings (16 classes x 4, 16-d, overlapping) through each method's backward pass drives the
    exact recall loss (eq. 26, the forward value) below a quarter of its start and the episode's R@1 (brute force)
    to >= 0.95: the update is a descent direction of the true loss for every projection and for BB (a sign error
    raises the loss)."""
    import tensorflow as tf

    from identity_tf.method import MethodConfig

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(16), 4)
    raw = tf.Variable((0.3 * np.repeat(rng.normal(size=(16, 16)), 4, axis=0) + rng.normal(size=(64, 16))).astype("f4"))
    if projection == "blackbox":
        method = MethodConfig(gradient="blackbox", lam=0.2, projection="none")
    else:
        method = MethodConfig(gradient="identity", projection=projection)
    m = RetrievalModel({"image_size": 8, "width": 1, "embedding_dim": 16, "memory_batches": 0}, method)
    optimizer = keras.optimizers.Adam(0.01)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            value = m.compute_loss(y=labels[None], y_pred=tf.math.l2_normalize(raw, -1)[None], training=False)
        optimizer.apply([tape.gradient(value, raw)], [raw])
        return value

    values = [float(step()) for _ in range(300)]
    e = unit(raw.numpy())
    similarity = e @ e.T
    np.fill_diagonal(similarity, -np.inf)
    assert values[0] > 1.0 and values[-1] < 0.25 * values[0]
    assert np.mean(labels[similarity.argmax(1)] == labels) >= 0.95


def test_pretrained_small_cnn_weights_are_loaded(tmp_path):
    from identity_tf.tasks.retrieval.model import small_cnn

    keras.utils.set_random_seed(5)
    pretrained = small_cnn(8, 2)
    path = str(tmp_path / "backbone.weights.h5")
    pretrained.save_weights(path)
    m = RetrievalModel({"image_size": 8, "width": 2, "embedding_dim": 4, "weights": path})
    fresh = [w.copy() for w in m.backbone.get_weights()]
    m.load_pretrained()
    loaded = m.backbone.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(loaded, pretrained.get_weights()))
    assert not all(np.array_equal(a, b) for a, b in zip(loaded, fresh))


def test_last_epoch_recall_is_measured_before_the_best_weights_return():
    from identity_tf.tasks.retrieval.task import LastEpochRecall, RetrievalTask, Splits

    labels = np.array([0, 0, 1, 1, 2, 2])
    # last epoch, cosines by hand: nearest neighbours 0->2, 1->2, 2->0, 3->1 (wrong classes), 4->5, 5->4 (right);
    # second nearest: 0->1 and 1->0 (right), 2->1 and 3->5 (wrong)
    last = unit(np.array([[1, 0, 0], [1, 0.5, 0], [1, 0.1, 0], [0, 1, 0.2], [0, 0, 1], [0, 0.1, 1]], "float32"))
    state = {"embeddings": last}

    class Embedder(keras.Model):
        def embed(self, images):
            return state["embeddings"][images[:, 0, 0, 0].astype(int)]

    data = type("D", (), {"images": np.arange(6, dtype=np.uint8).reshape(6, 1, 1, 1).repeat(3, -1), "labels": labels})
    splits = Splits(data, np.arange(0), np.arange(0), np.arange(6))
    callback = LastEpochRecall(splits)
    callback.set_model(Embedder())
    callback.on_train_end()
    state["embeddings"] = unit(np.repeat(np.eye(3, dtype="float32"), 2, axis=0) + 0.01)  # the best epoch: perfect
    test = RetrievalTask().evaluate(callback.model, None, type("T", (), {"data": splits})())
    assert test["recall_at_1"] == 1.0
    assert test["last_epoch_recall_at_1"] == pytest.approx(2 / 6)
    assert test["last_epoch_recall_at_2"] == pytest.approx(4 / 6)
