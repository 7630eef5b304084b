"""L2X ("learning to explain", Chen et al. 2018) on BeerAdvocate reviews (paper section 4.1 and B.1).

A selector scores the 350 tokens of a review, a k-subset of tokens is selected, and a predictor sees only the
selected words' embeddings and regresses the aspect score (MSE). Architecture (DESIGN.md section 6, as the
reference code):

* selector: Embedding(V, 200, frozen, initialised from the given embedding matrix) -> Conv1D(100, 3, same, relu);
  global branch GlobalMaxPool -> Dense(100, relu); local branch Conv1D(100, 3, same, relu) x 2; concatenate (global
  tiled over time) -> Dropout(0.2) -> Conv1D(100, 1, relu) -> Conv1D(1, 1) = token logits ``[B, 350]``;
* k-subset selection (``method.gradient``, the run config's ``method:`` section):

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
>>> from identity_tf.method import MethodConfig
>>> method = MethodConfig(gradient="identity", projection="std", noise="sum_of_gamma")
>>> model = L2X({"k": 3}, embeddings=np.ones([10, 200], "float32"), method=method)
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

from identity_tf import method as method_lib
from identity_tf import solvers
from identity_tf.layers import RelaxedSubset  # noqa: F401  (its home until 0.2; kept importable)
from identity_tf.method import MethodConfig
from identity_tf.tasks.model_base import TaskModel

METHODS = ("identity", "imle", "l2x", "softsub")
MAX_LEN = 350
EMBED_DIM = 200


@dataclasses.dataclass
class L2XConfig:
    """Model settings of the L2X task.

    Attributes:
        k: Number of selected tokens.
        vocab_size: Rows of the embedding matrix (set by the trainer from the data).
        max_len: Tokens per review.
        hidden: Filters/units of the selector (100).
        predictor_hidden: Units of the predictor's hidden layer (250).
        dropout: Selector dropout rate (0.2).
    """

    k: int = 10
    vocab_size: int = 2
    max_len: int = MAX_LEN
    hidden: int = 100
    predictor_hidden: int = 250
    dropout: float = 0.2

    def __post_init__(self):
        for name, low in (
            ("k", 1),
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
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ValueError(f"`model.dropout` must be in [0, 1). Received: dropout={self.dropout!r}")
        self.dropout = float(self.dropout)


# Release 0.1 kept the method in the model section: old name -> MethodConfig field, and the old defaults.
LEGACY_METHOD_KEYS = {
    "method": "gradient",
    "projection": "projection",
    "lam": "lam",
    "tau": "noise_tau",
    "s": "noise_s",
    "noise_variant": "noise_variant",
    "temperature": "temperature",
}
LEGACY_DEFAULTS = {
    "method": "identity",
    "projection": "std",
    "lam": 10.0,
    "tau": 10.0,
    "s": 10,
    "noise_variant": "paper",
    "temperature": 0.1,
}


# -------------------------------------------------------------------------------------------------- model
@keras.saving.register_keras_serializable(package="identity_tf")
class L2X(TaskModel):
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

    config_class = L2XConfig
    legacy_method_keys = (LEGACY_METHOD_KEYS, LEGACY_DEFAULTS)

    def __init__(
        self,
        config: L2XConfig | dict | None = None,
        embeddings=None,
        seed: int = 0,
        method: MethodConfig | dict | None = None,
        **kwargs,
    ):
        super().__init__(config, method, seed, **kwargs)
        config = dict(dataclasses.asdict(self.task_config))
        if embeddings is not None:
            embeddings = np.asarray(embeddings, np.float32)
            if embeddings.ndim != 2 or embeddings.shape[1] != EMBED_DIM:
                raise ValueError(f"`embeddings` must be [V, {EMBED_DIM}]. Received: shape={embeddings.shape}")
            config["vocab_size"] = int(embeddings.shape[0])
        self.task_config = c = L2XConfig(**config)
        m = self.method
        if m.gradient not in METHODS:
            raise ValueError(f"L2X's method.gradient must be one of {METHODS}. Received: gradient={m.gradient!r}")
        if m.gradient in ("l2x", "softsub") and m.projection != "none":
            raise ValueError(
                f"`method.projection` must be 'none' for method.gradient {m.gradient!r} (a relaxation, not a solver). "
                f"Received: projection={m.projection!r}"
            )
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
        # the layers' names and seeds are release 0.1's, so that its saved models load into these attributes
        self.noise_layer = method_lib.perturbation_layer(m, self.solver, seed=seed)
        self.projection = method_lib.projection_layer(m, self.solver)
        self.select_layer = method_lib.selection_layer(m, self.solver, seed=seed + 1)

    def default_loss(self):
        return mse

    def default_metrics(self):
        return [mse]

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


__all__ = [
    "EMBED_DIM",
    "L2X",
    "L2XConfig",
    "LEGACY_DEFAULTS",
    "LEGACY_METHOD_KEYS",
    "MAX_LEN",
    "METHODS",
    "RelaxedSubset",
    "mse",
    "rationale_precision",
    "selected_words",
]
