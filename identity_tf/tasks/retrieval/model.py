"""Image retrieval with a recall loss through a ranking solver (paper section 4.3, B.3; Rolinek et al. 2020).

Pipeline of one training step (one batch = ``B`` class-balanced episodes of ``n`` images, see
:mod:`identity_tf.datasets.retrieval.pipeline`)::

    images -> backbone -> Dense(512) "embedding" -> L2-normalise
      -> cosine similarities of every image with the other images of its episode and the batch memory
      -> [noise-induced margin] -> [projection P] -> Ranking (Identity or BB) -> recall loss "loglog"

* The memory (:class:`identity_tf.layers.BatchMemory`) holds the embeddings of the last ``memory_batches`` (3)
  training batches as extra database entries without gradient; a query never ranks itself.
* Margin: ``margin: noise`` adds the noise-induced margin ``alpha`` to the similarities (paper section 3.6);
  ``margin: informed`` shifts them inside the loss (``scores - alpha (relevance - 1/2)``, the original's).
* The projection acts per query on the *valid* entries of its database row (the others are filled with values
  that leave the projection of the valid ones unchanged: the row mean for ``mean``/``std``, 0 for ``norm``).
* The loss of a batch is the mean over its episodes of the original's per-batch loss: the sum of eq. 26's terms
  over all (query, positive) pairs divided by the number of pairs (which sets BB's effective lambda, 0.2 in the
  paper). With one episode per batch (the paper's setting: one batch of 128) this is the original exactly, and
  as a mean over episodes it is the same on any number of replicas.
* Optimiser (:class:`RetrievalAdam`): Adam with PyTorch's coupled weight decay (``weight_decay`` added to the
  gradients) and the embedding layer's learning rate times ``embedding_lr_multiplier`` (3).

The model's output is the embeddings ``[B, n, D]``; :meth:`RetrievalModel.embed` embeds plain images ``[b, S, S, 3]``.
"""

from __future__ import annotations

import dataclasses
import pathlib

import keras
import numpy as np
import tensorflow as tf

from identity_tf import layers, losses, metrics, solvers
from identity_tf.method import MethodConfig, margin_layer, projection_layer
from identity_tf.tasks.model_base import TaskModel

BACKBONES = ("small_cnn", "resnet50")
MARGINS = ("noise", "informed")


@dataclasses.dataclass
class RetrievalConfig:
    """Model settings of the retrieval task.

    Attributes:
        image_size: Side of the square input images (set from ``data.image_size``).
        backbone: "small_cnn" (4 conv stages, trains on a CPU) or "resnet50" (Keras applications, the paper's).
        width: Filters of the small CNN's first stage (doubling per stage).
        weights: A local weights file (``.h5``) of the backbone, or None (random init): for ResNet50 Keras'
            ImageNet file without top; for the small CNN one written by ``tools/retrieval_pretrain.py`` (the
            offline stand-in for a pretrained backbone). The embedding layer always starts fresh, as in the paper.
        embedding_dim: Embedding size (the paper: 512).
        margin: "noise" (noise-induced margin ``method.alpha`` on the similarities) or "informed".
        memory_batches: Previous training batches kept as database entries (the paper: 3; 0 = none).
        weight_decay: L2 weight decay added to the gradients (PyTorch's Adam ``weight_decay``; the paper: 4e-4).
        embedding_lr_multiplier: Learning-rate factor of the embedding layer (the paper: 3).
    """

    image_size: int = 64
    backbone: str = "small_cnn"
    width: int = 32
    weights: str | None = None
    embedding_dim: int = 512
    margin: str = "noise"
    memory_batches: int = 3
    weight_decay: float = 4e-4
    embedding_lr_multiplier: float = 3.0

    def __post_init__(self):
        for name, choices in (("backbone", BACKBONES), ("margin", MARGINS)):
            if getattr(self, name) not in choices:
                raise ValueError(f"`model.{name}` must be one of {choices}. Received: {name}={getattr(self, name)!r}")
        for name, low in (("image_size", 8), ("width", 1), ("embedding_dim", 1), ("memory_batches", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"`model.{name}` must be an integer >= {low}. Received: {name}={value!r}")
        if not self.weight_decay >= 0:
            raise ValueError(f"`model.weight_decay` must be >= 0. Received: weight_decay={self.weight_decay!r}")
        if not self.embedding_lr_multiplier > 0:
            raise ValueError(
                f"`model.embedding_lr_multiplier` must be > 0. Received: embedding_lr_multiplier={self.embedding_lr_multiplier!r}"
            )
        if self.weights is not None and not (isinstance(self.weights, str) and self.weights.endswith(".h5")):
            raise ValueError(
                "`model.weights` must be the path of a local Keras weights file (.h5) of the backbone, or null. "
                f"Received: weights={self.weights!r}"
            )


def small_cnn(image_size: int, width: int) -> keras.Model:
    """Four stages ``Conv3x3 -> BN -> ReLU -> MaxPool`` (``width``, 2x, 4x, 8x filters), global average pool."""
    inputs = keras.Input((image_size, image_size, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)
    for stage in range(4):
        x = keras.layers.Conv2D(width * 2**stage, 3, padding="same", use_bias=False, name=f"conv{stage + 1}")(x)
        x = keras.layers.BatchNormalization(name=f"bn{stage + 1}")(x)
        x = keras.layers.ReLU()(x)
        if x.shape[1] > 1:
            x = keras.layers.MaxPooling2D(2, padding="same")(x)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x), name="small_cnn")


def resnet50(image_size: int, weights: str | None) -> keras.Model:
    """Keras' ResNet50 without its top, average-pooled (the paper's backbone), with its own preprocessing."""
    inputs = keras.Input((image_size, image_size, 3))
    x = keras.layers.Lambda(keras.applications.resnet50.preprocess_input, output_shape=(image_size, image_size, 3))(
        inputs
    )
    base = keras.applications.ResNet50(
        include_top=False,
        weights=None if weights is None else _weights_file(weights),
        input_shape=(image_size, image_size, 3),
        pooling="avg",
    )
    return keras.Model(inputs, base(x), name="resnet50")


def _weights_file(path: str) -> str:
    if not pathlib.Path(path).expanduser().is_file():
        raise FileNotFoundError(f"`model.weights`: no weights file at {path!r} (a local .h5 file of the backbone).")
    return str(pathlib.Path(path).expanduser())


def episode_scores(embeddings, labels, memory=None, memory_labels=None, memory_valid=None):
    """Cosine similarities of every image with its episode (itself excluded) and the memory.

    Args:
        embeddings: ``[B, n, D]`` unit vectors; labels: ``[B, n]``.
        memory, memory_labels, memory_valid: ``[M, D]``, ``[M]``, ``[M]`` bool extra database entries (or None).

    Returns:
        ``(scores, relevance, valid)``, each ``[B * n, n + M]``: query ``(b, i)`` against the ``n`` images of
        episode ``b`` and the ``M`` memory entries; relevance = same label; valid = not itself and a filled slot.

    Example:
    >>> import numpy as np
    >>> e = np.eye(2, dtype="float32")[None]  # one episode of two orthogonal embeddings
    >>> scores, relevance, valid = episode_scores(e, np.array([[3, 3]]))
    >>> scores.numpy().tolist(), relevance.numpy().tolist(), valid.numpy().tolist()
    ([[1.0, 0.0], [0.0, 1.0]], [[1.0, 1.0], [1.0, 1.0]], [[False, True], [True, False]])
    """
    embeddings = tf.convert_to_tensor(embeddings)
    labels = tf.convert_to_tensor(labels)
    n = tf.shape(embeddings)[1]
    scores = tf.linalg.matmul(embeddings, embeddings, transpose_b=True)  # [B, n, n]
    relevance = tf.equal(labels[:, :, None], labels[:, None, :])
    valid = tf.broadcast_to(~tf.eye(n, dtype=tf.bool)[None], tf.shape(scores))
    if memory is not None:
        memory = tf.cast(memory, embeddings.dtype)
        extra = tf.einsum("bnd,md->bnm", embeddings, memory)  # [B, n, M]
        scores = tf.concat([scores, extra], axis=-1)
        relevance = tf.concat([relevance, tf.equal(labels[:, :, None], tf.cast(memory_labels, labels.dtype))], -1)
        valid = tf.concat([valid, tf.broadcast_to(memory_valid[None, None], tf.shape(extra))], axis=-1)
    width = tf.shape(scores)[-1]
    flat = lambda t: tf.reshape(t, [-1, width])  # noqa: E731
    return flat(scores), tf.cast(flat(relevance), embeddings.dtype), flat(valid)


def fill_invalid(costs, valid, projection: str):
    """Fills invalid entries so that a row's projection of its valid entries is that of the valid entries alone:
    the mean of the valid entries for ``mean`` / ``std`` (the row mean is then theirs, and they become 0 before the
    norm), 0 for ``norm`` (no share of the norm).

    Example:
    >>> import numpy as np
    >>> fill_invalid(np.array([[1.0, 3.0, 9.0]], "float32"), np.array([[True, True, False]]), "std").numpy()
    array([[1., 3., 2.]], dtype=float32)
    """
    costs = tf.convert_to_tensor(costs)
    if projection in ("mean", "std"):
        weights = tf.cast(valid, costs.dtype)
        fill = tf.math.divide_no_nan(
            tf.reduce_sum(costs * weights, -1, keepdims=True), tf.reduce_sum(weights, -1, keepdims=True)
        )
    else:
        fill = tf.zeros_like(costs)
    return tf.where(valid, costs, tf.broadcast_to(fill, tf.shape(costs)))


@keras.saving.register_keras_serializable(package="identity_tf")
class RetrievalModel(TaskModel):
    """Backbone -> 512-d embedding; the loss ranks cosine similarities through the method's gradient (module doc).

    Args:
        config: :class:`RetrievalConfig` (or its dict).
        method: :class:`identity_tf.method.MethodConfig`: gradient "identity" or "blackbox" (``lam``), ``alpha``
            (the margin of ``config.margin``), ``projection``.
        seed: Seed of the margin noise.
        batch_size: The largest global batch (episodes) the memory stores.

    Call arguments:
        episodes: ``[B, n, S, S, 3]`` uint8 or float images in 0..255.

    Returns:
        Unit embeddings ``[B, n, D]``.
    """

    config_class = RetrievalConfig

    def __init__(self, config=None, method: MethodConfig | dict | None = None, seed=0, batch_size: int = 1, **kwargs):
        super().__init__(config, method, seed, **kwargs)
        c = self.task_config
        self.batch_size = int(batch_size)
        if c.backbone == "resnet50":
            self.backbone = resnet50(c.image_size, c.weights)
        else:
            self.backbone = small_cnn(c.image_size, c.width)
        self.embedding = keras.layers.Dense(c.embedding_dim, name="embedding")
        self.memory = layers.BatchMemory(c.memory_batches, self.batch_size, name="memory") if c.memory_batches else None
        ranking = solvers.Ranking()
        self.margin = margin_layer(self.method, seed) if c.margin == "noise" else None
        self.projection = projection_layer(self.method, ranking)
        # "auto" is std for rankings (their solutions lie on a hyperplane)
        self.projection_name = "std" if self.method.projection == "auto" else self.method.projection
        self.recall_loss = losses.RecallLoss(
            gradient=self.method.gradient_object(ranking),
            alpha=self.method.alpha if c.margin == "informed" else 0.0,
            seed=seed,
        )

    def load_pretrained(self) -> None:
        """Loads the small CNN's ``model.weights`` file into the backbone (the task calls this on a new model; a
        saved model reloads its own weights without the file). ResNet50 reads its file when it is built."""
        c = self.task_config
        if c.weights is not None and c.backbone == "small_cnn":
            self.backbone.load_weights(_weights_file(c.weights))

    def embed(self, images, training=False):
        """Unit embeddings ``[b, D]`` of images ``[b, S, S, 3]``."""
        x = tf.cast(images, self.compute_dtype)
        return tf.math.l2_normalize(self.embedding(self.backbone(x, training=training)), axis=-1)

    def call(self, episodes, training=None):
        size = self.task_config.image_size
        shape = tf.shape(episodes)
        flat = tf.reshape(episodes, [-1, size, size, 3])
        return tf.reshape(self.embed(flat, training=training), [shape[0], shape[1], self.task_config.embedding_dim])

    def scores(self, embeddings, labels, training=False):
        """``(costs, relevance, valid)`` ``[B n, N]``: the ranking's inputs after margin and projection."""
        memory = (None, None, None)
        if training and self.memory is not None:
            database, database_labels, database_valid = self.memory(embeddings, labels, training=True)
            batch = tf.shape(embeddings)[0]
            n = tf.shape(embeddings)[1]
            memory = (
                tf.reshape(database[batch:], [-1, self.task_config.embedding_dim]),
                tf.reshape(database_labels[batch:], [-1]),
                tf.reshape(tf.repeat(database_valid[batch:, None], n, axis=1), [-1]),
            )
        costs, relevance, valid = episode_scores(embeddings, labels, *memory)
        if self.margin is not None:
            costs = self.margin(costs, training=training)
        if self.projection is not None:
            costs = self.projection(fill_invalid(costs, valid, self.projection_name))
        return costs, relevance, valid

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        labels = tf.cast(y, tf.int32)
        costs, relevance, valid = self.scores(y_pred, labels, training=training)
        values = self.recall_loss.call((relevance, valid), costs)  # [Q] = terms_q * Q / (all pairs)
        counts = tf.reduce_sum(relevance * tf.cast(valid, relevance.dtype), axis=-1)  # positives per query
        num_queries = tf.cast(tf.shape(values)[0], values.dtype)
        terms = values * tf.reduce_sum(counts) / tf.maximum(num_queries, 1.0)  # sum of eq. 26's terms per query
        batch = tf.shape(y_pred)[0]
        per_episode = tf.math.divide_no_nan(
            tf.reduce_sum(tf.reshape(terms, [batch, -1]), -1), tf.reduce_sum(tf.reshape(counts, [batch, -1]), -1)
        )
        loss = tf.math.divide_no_nan(tf.reduce_sum(per_episode), tf.cast(batch, per_episode.dtype))
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return loss / replicas if replicas > 1 else loss  # as Keras scales compiled losses

    def default_loss(self):
        """None: :meth:`compute_loss` is the loss (it needs the labels of the batch memory)."""
        return None

    def default_metrics(self):
        return [episode_recall_at_1]

    def get_config(self):
        return {**super().get_config(), "batch_size": self.batch_size}


def embed_split(model, images: np.ndarray, indices: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Unit embeddings ``[len(indices), D]`` of ``images[indices]`` (inference mode)."""
    parts = [
        keras.ops.convert_to_numpy(model.embed(images[indices[start : start + batch_size]]))
        for start in range(0, len(indices), batch_size)
    ]
    return np.concatenate(parts) if parts else np.zeros((0, model.task_config.embedding_dim), np.float32)


@keras.saving.register_keras_serializable(package="identity_tf.retrieval")
def episode_recall_at_1(y_true, y_pred):
    """R@1 of every episode, its images querying the other images of the episode: ``[B]``."""
    embeddings = tf.convert_to_tensor(y_pred)
    scores, relevance, valid = episode_scores(embeddings, tf.cast(y_true, tf.int32))
    hits, _ = metrics.recall_at_k_per_query(relevance, scores, k=1, valid=valid)
    return tf.reduce_mean(tf.reshape(hits, [tf.shape(embeddings)[0], -1]), axis=-1)


@keras.saving.register_keras_serializable(package="identity_tf.retrieval")
class RetrievalAdam(keras.optimizers.Adam):
    """Adam with coupled L2 weight decay and per-layer learning-rate factors (the paper's retrieval optimiser).

    ``weight_decay_l2 * w`` is added to every gradient before Adam's moments (PyTorch's ``Adam(weight_decay)``,
    unlike Keras' decoupled ``weight_decay``), and variables under a layer named in ``lr_multipliers`` get the
    learning rate times its factor (e.g. ``{"embedding": 3.0}``). Other arguments are Adam's.

    Example:
    >>> import numpy as np
    >>> optimizer = RetrievalAdam(learning_rate=0.1, weight_decay_l2=0.5)
    >>> w = keras.Variable(np.array([2.0], "float32"))
    >>> optimizer.apply([np.array([0.0], "float32")], [w])  # gradient 0 + 0.5 * 2 > 0: Adam's first step is -lr
    >>> round(float(w.numpy()[0]), 4)
    1.9
    """

    def __init__(self, weight_decay_l2: float = 0.0, lr_multipliers: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        self.weight_decay_l2 = float(weight_decay_l2)
        self.lr_multipliers = {str(k): float(v) for k, v in (lr_multipliers or {}).items()}
        self._factors = []

    def build(self, variables):
        super().build(variables)
        self._factors = [
            next((f for name, f in self.lr_multipliers.items() if name in v.path.split("/")), 1.0) for v in variables
        ]

    def update_step(self, gradient, variable, learning_rate):
        if self.weight_decay_l2:
            gradient = gradient + tf.cast(self.weight_decay_l2, gradient.dtype) * tf.cast(variable, gradient.dtype)
        factor = self._factors[self._get_variable_index(variable)]
        if factor != 1.0:
            learning_rate = learning_rate * tf.cast(factor, learning_rate.dtype)
        super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        return {**super().get_config(), "weight_decay_l2": self.weight_decay_l2, "lr_multipliers": self.lr_multipliers}
