"""L2X ("learning to explain", Chen et al. 2018) on BeerAdvocate reviews (paper section 4.1 and B.1).

A selector scores the 350 tokens of a review, a k-subset of tokens is selected, and a predictor sees only the
selected words' embeddings and regresses the aspect score (MSE). Architecture (DESIGN.md section 6, as the
reference code):

* selector: Embedding(V, 200, frozen, initialised from the given embedding matrix) -> Conv1D(100, 3, same, relu);
  global branch GlobalMaxPool -> Dense(100, relu); local branch Conv1D(100, 3, same, relu) x 2; concatenate (global
  tiled over time) -> Dropout(0.2) -> Conv1D(100, 1, relu) -> Conv1D(1, 1) = token logits ``[B, 350]``;
* k-subset selection (``L2XConfig.method``):

  - ``"identity"`` (the paper): when training ``logits + SoG noise`` -> projection (``"std"`` or ``"none"``) ->
    TopK(k) with the Identity backward pass; at test time the hard top-k of the logits;
  - ``"imle"``: [projection] -> TopK(k) with I-MLE (lambda ``lam``, its own Sum-of-Gamma noise); hard top-k at test;
  - ``"l2x"``: the concrete relaxation of Chen et al. 2018: k independent concrete (Gumbel-softmax) samples
    ``softmax((logits + G_j) / temperature)``, elementwise max over j; hard top-k at test;
  - ``"softsub"``: relaxed subset sampling of Xie & Ermon 2019: ``w = logits + G``; k rounds of
    ``p_j = softmax(w / temperature)``, ``w += log(max(1 - p_j, eps))``; the relaxed k-hot is ``sum_j p_j``; hard
    top-k at test;
* predictor: embeddings x k-hot mask -> sum over tokens / k -> Dense(250) -> relu -> Dense(1, sigmoid).

Padding tokens are not masked out of the selection (as the reference); they have zero embeddings, so selecting
them only wastes a slot. :func:`rationale_precision` is the fraction of the k selected tokens (hard top-k, test
mode) inside the annotated rationale of the aspect, averaged over the annotated reviews (pads count as outside).

Example:
>>> import numpy as np
>>> model = L2X({"k": 3, "method": "identity"}, embeddings=np.ones([10, 200], "float32"))
>>> model(np.ones([2, 350], "int32")).shape
TensorShape([2, 1])
>>> model.select(np.arange(700).reshape(2, 350) % 10).numpy().sum(axis=-1).tolist()
[3.0, 3.0]
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from identity_tf import gradients, layers, solvers
from identity_tf import noise as noise_lib
from identity_tf.tasks.common import SumOfGammaNoise, as_config

METHODS = ("identity", "imle", "l2x", "softsub")
PROJECTIONS = ("none", "mean", "norm", "std")
MAX_LEN = 350
EMBED_DIM = 200


@dataclasses.dataclass
class L2XConfig:
    """Model settings of the L2X task.

    Attributes:
        k: Number of selected tokens.
        method: "identity" (the paper), "imle", "l2x" (concrete relaxation) or "softsub" (relaxed subset sampling).
        projection: "none", "mean", "norm" or "std", per example over the 350 logits, before the solver
            ("identity" and "imle" only; must be "none" for "l2x" and "softsub").
        lam: I-MLE lambda.
        tau, s, noise_variant: Sum-of-Gamma noise ("identity", "imle").
        temperature: Relaxation temperature ("l2x", "softsub").
        vocab_size: Rows of the embedding matrix (set by the trainer from the data).
        max_len: Tokens per review.
        hidden: Filters/units of the selector (100).
        predictor_hidden: Units of the predictor's hidden layer (250).
        dropout: Selector dropout rate (0.2).
    """

    k: int = 10
    method: str = "identity"
    projection: str = "std"
    lam: float = 10.0
    tau: float = 10.0
    s: int = 10
    noise_variant: str = "paper"
    temperature: float = 0.1
    vocab_size: int = 2
    max_len: int = MAX_LEN
    hidden: int = 100
    predictor_hidden: int = 250
    dropout: float = 0.2

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"`model.method` must be one of {METHODS}. Received: method={self.method!r}")
        if self.projection not in PROJECTIONS:
            raise ValueError(
                f"`model.projection` must be one of {PROJECTIONS}. Received: projection={self.projection!r}"
            )
        if self.method in ("l2x", "softsub") and self.projection != "none":
            raise ValueError(
                f"`model.projection` must be 'none' for method {self.method!r} (a relaxation, not a solver). "
                f"Received: projection={self.projection!r}"
            )
        if self.noise_variant not in noise_lib.SumOfGamma.VARIANTS:
            raise ValueError(
                f"`model.noise_variant` must be one of {noise_lib.SumOfGamma.VARIANTS}. "
                f"Received: noise_variant={self.noise_variant!r}"
            )
        for name, low in (
            ("k", 1),
            ("s", 1),
            ("vocab_size", 2),
            ("max_len", 1),
            ("hidden", 1),
            ("predictor_hidden", 1),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"`model.{name}` must be an integer >= {low}. Received: {name}={value!r}")
        if self.k > self.max_len:
            raise ValueError(f"`model.k` must be <= max_len ({self.max_len}). Received: k={self.k}")
        for name in ("tau", "lam", "temperature"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"`model.{name}` must be a positive number. Received: {name}={value!r}")
            setattr(self, name, float(value))
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ValueError(f"`model.dropout` must be in [0, 1). Received: dropout={self.dropout!r}")
        self.dropout = float(self.dropout)

    def sum_of_gamma(self) -> noise_lib.SumOfGamma:
        return noise_lib.SumOfGamma(k=self.k, tau=self.tau, s=self.s, variant=self.noise_variant)


# ------------------------------------------------------------------------------------------------ relaxations
@keras.saving.register_keras_serializable(package="identity_tf.l2x")
class RelaxedSubset(keras.layers.Layer):
    """The relaxed k-subsets of L2X ("l2x") and of Xie & Ermon ("softsub") when training; hard top-k otherwise."""

    def __init__(self, k=10, kind="l2x", temperature=0.1, seed=None, **kwargs):
        super().__init__(**kwargs)
        if kind not in ("l2x", "softsub"):
            raise ValueError(f"Argument `kind` must be 'l2x' or 'softsub'. Received: kind={kind!r}")
        self.k, self.kind, self.temperature, self.seed = int(k), kind, float(temperature), seed
        self.solver = solvers.TopK(k=self.k)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def _gumbel(self, shape, dtype):
        return noise_lib.Gumbel().sample(shape, seed=self.seed_generator, dtype=dtype)

    def call(self, logits, training=None):
        if not training:
            return tf.cast(self.solver(logits), logits.dtype)
        t = self.temperature
        if self.kind == "l2x":  # k independent concrete samples, elementwise max (Chen et al. 2018)
            shape = tf.concat([tf.shape(logits)[:1], [self.k], tf.shape(logits)[1:]], axis=0)
            samples = tf.nn.softmax((logits[:, None] + self._gumbel(shape, logits.dtype)) / t, axis=-1)
            return tf.reduce_max(samples, axis=1)
        w = logits + self._gumbel(tf.shape(logits), logits.dtype)  # Xie & Ermon 2019
        khot = tf.zeros_like(logits)
        onehot = tf.zeros_like(logits)
        eps = tf.constant(np.finfo(np.float32).tiny, logits.dtype)
        for _ in range(self.k):
            w = w + tf.math.log(tf.maximum(1.0 - onehot, eps))
            onehot = tf.nn.softmax(w / t, axis=-1)
            khot = khot + onehot
        return khot

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "k": self.k,
            "kind": self.kind,
            "temperature": self.temperature,
            "seed": self.seed,
        }


# -------------------------------------------------------------------------------------------------- model
@keras.saving.register_keras_serializable(package="identity_tf")
class L2X(keras.Model):
    """Selector -> k-subset -> predictor (see the module docstring).

    Args:
        config: :class:`L2XConfig` or its dict.
        embeddings: The ``[V, 200]`` word vectors (frozen); None = zeros of ``config.vocab_size`` rows (e.g. when
            loading a saved model, whose weights hold the vectors).
        seed: Seed of the noise.

    Call arguments:
        token_ids: int ``[B, 350]``.

    Returns:
        Predicted scores ``[B, 1]`` in (0, 1).
    """

    def __init__(self, config: L2XConfig | dict | None = None, embeddings=None, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        config = dict(dataclasses.asdict(as_config(L2XConfig, config)))
        if embeddings is not None:
            embeddings = np.asarray(embeddings, np.float32)
            if embeddings.ndim != 2 or embeddings.shape[1] != EMBED_DIM:
                raise ValueError(f"`embeddings` must be [V, {EMBED_DIM}]. Received: shape={embeddings.shape}")
            config["vocab_size"] = int(embeddings.shape[0])
        self.task_config = c = L2XConfig(**config)
        self.seed = seed
        self.embedding = keras.layers.Embedding(c.vocab_size, EMBED_DIM, trainable=False, name="embedding")
        self.embedding.build((None, c.max_len))
        if embeddings is not None:
            self.embedding.embeddings.assign(embeddings)
        conv = lambda name, size=3: keras.layers.Conv1D(c.hidden, size, padding="same", activation="relu", name=name)  # noqa: E731
        self.first_conv = conv("first_conv")
        self.global_pool = keras.layers.GlobalMaxPooling1D(name="global_pool")
        self.global_dense = keras.layers.Dense(c.hidden, activation="relu", name="global_dense")
        self.local_conv1 = conv("local_conv1")
        self.local_conv2 = conv("local_conv2")
        self.dropout = keras.layers.Dropout(c.dropout, seed=seed, name="dropout")
        self.combine = conv("combine", 1)
        self.token_logits = keras.layers.Conv1D(1, 1, name="token_logits")
        self.predictor_hidden = keras.layers.Dense(c.predictor_hidden, activation="relu", name="predictor_hidden")
        self.predictor_out = keras.layers.Dense(1, activation="sigmoid", name="predictor_out")
        self.solver = solvers.TopK(k=c.k)
        self.noise_layer = None
        self.projection = None
        if c.method in ("identity", "imle"):
            if c.method == "identity":
                self.noise_layer = SumOfGammaNoise(
                    c.k, c.tau, c.s, c.noise_variant, at_inference=False, seed=seed, name="sog_noise"
                )
            if c.projection != "none":
                self.projection = layers.ProjectionLayer(c.projection, solver=self.solver, name="projection")
            gradient = (
                gradients.IMLE(lam=c.lam, noise=c.sum_of_gamma(), sample_at_inference=False)
                if c.method == "imle"
                else gradients.Identity()
            )
            self.select_layer = layers.SolverLayer(self.solver, gradient=gradient, seed=seed + 1, name="solver")
        else:
            self.select_layer = RelaxedSubset(c.k, c.method, c.temperature, seed=seed + 1, name="relaxed_subset")

    # --- pieces
    def logits(self, token_ids, training=None):
        """Token logits ``[B, L]`` of the selector."""
        e = self.embedding(tf.cast(token_ids, "int32"))
        h = self.first_conv(e)
        g = self.global_dense(self.global_pool(h))  # [B, hidden]
        local = self.local_conv2(self.local_conv1(h))  # [B, L, hidden]
        g = tf.tile(g[:, None, :], [1, tf.shape(local)[1], 1])
        h = self.dropout(tf.concat([g, local], axis=-1), training=training)
        return tf.squeeze(self.token_logits(self.combine(h)), axis=-1)

    def subset(self, logits, training=None):
        """The (relaxed when training, for "l2x"/"softsub") k-hot selection ``[B, L]`` of token logits."""
        w = logits if self.noise_layer is None else self.noise_layer(logits, training=training)
        if self.projection is not None:
            w = self.projection(w)
        return self.select_layer(w, training=training)

    def select(self, token_ids, training=False):
        """The k-hot token selection ``[B, L]`` (hard top-k of the logits at inference)."""
        return self.subset(self.logits(token_ids, training=training), training=training)

    def predict_from_mask(self, token_ids, mask):
        e = self.embedding(tf.cast(token_ids, "int32"))
        pooled = tf.reduce_sum(e * tf.cast(mask, e.dtype)[..., None], axis=1) / float(self.task_config.k)
        return self.predictor_out(self.predictor_hidden(pooled))

    def call(self, token_ids, training=None):
        return self.predict_from_mask(token_ids, self.select(token_ids, training=training))

    def get_config(self):
        return {**super().get_config(), "config": dataclasses.asdict(self.task_config), "seed": self.seed}


# ------------------------------------------------------------------------------------------ losses / metrics
@keras.saving.register_keras_serializable(package="identity_tf.l2x")
def mse(y_true, y_pred):
    """Mean squared error per example (the loss and the reported metric; reproduce reports it x100)."""
    y_pred = tf.convert_to_tensor(y_pred)
    y_true = tf.cast(tf.reshape(y_true, tf.shape(y_pred)), y_pred.dtype)
    return tf.reduce_mean(tf.square(y_true - y_pred), axis=-1)


def rationale_precision(model: L2X, data, batch_size: int = 100) -> float:
    """Fraction of the k selected tokens (hard top-k) inside the annotated rationale, averaged over reviews.

    Args:
        model: An :class:`L2X`.
        data: Anything with ``x_annotations`` int ``[M, L]`` and ``rationale`` ``[M, L]`` 0/1 (e.g.
            :class:`identity_tf.datasets.beer.BeerData`).
    """
    x, rationale = np.asarray(data.x_annotations), np.asarray(data.rationale, np.float32)
    if len(x) == 0:
        return float("nan")
    hits = []
    for start in range(0, len(x), batch_size):
        mask = np.asarray(model.select(x[start : start + batch_size], training=False))
        chosen = mask.sum(axis=-1)
        hits.append((mask * rationale[start : start + batch_size]).sum(axis=-1) / np.maximum(chosen, 1.0))
    return float(np.concatenate(hits).mean())


def selected_words(model: L2X, token_ids, vocabulary) -> list[list[str]]:
    """The selected words of each review (hard top-k), in text order."""
    mask = np.asarray(model.select(np.asarray(token_ids), training=False))
    return [[vocabulary[t] for t, m in zip(ids, row) if m > 0.5] for ids, row in zip(np.asarray(token_ids), mask)]
