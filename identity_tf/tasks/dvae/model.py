"""Discrete VAE on MNIST (paper section 4.1 and B.1): 20 groups of 10-hot latents through a top-k solver.

Model (Niepert et al. 2021, as the paper): encoder Dense 512 relu -> 256 relu -> 400 logits, reshaped to 20 groups
x 20; a k-hot sample per group (TopK(10) along the last axis); decoder Dense 256 relu -> 512 relu -> 784 logits.
The N-ELBO per example is ``sum_pixels BCE(x, sigmoid(decoder logits)) + sum_groups KL(q || uniform(1/20))`` with
``q = softmax(raw encoder logits)`` per group and ``log(q + 1e-20)`` as in the original code.

How the sample is drawn and differentiated (``method.gradient``, the run config's ``method:`` section):

* ``"identity"`` (the paper): ``logits + SoG noise -> [projection] -> TopK`` with the Identity backward pass;
  the projection (``"none" | "mean" | "norm" | "std"``) acts before the solver, so autodiff applies ``P'^T`` to
  the update (paper eq. 11); per example over all 400 entries (``projection_scope="example"``, the default) or per
  group of 20 (``"group"``, what the paper's DVAE notebook did and what ``configs/dvae`` use).
* ``"imle"``: ``[projection] -> TopK`` with I-MLE (lambda = ``lam``), which perturbs with its own Sum-of-Gamma
  noise (not added twice).
* ``"gumbel_st"``: straight-through Gumbel-softmax baseline: the forward is the hard top-k of
  ``logits + Gumbel noise``; the backward is the gradient of ``softmax((logits + Gumbel) / temperature)`` per group.

For ``imle`` and ``gumbel_st`` the projection (if any) acts on the logits before the method's own noise.

Noise at evaluation: the original notebook kept the Sum-of-Gamma noise on when it measured the test N-ELBO, i.e.
it reports the N-ELBO of *sampled* latents (the quantity the ELBO is an expectation over). We do the same by default
(``method.noise_at_inference: true`` in ``configs/dvae``: the noise of every method is also drawn in
``model.evaluate``/``predict``, so ``val_nelbo`` and the test N-ELBO are comparable with the paper); ``false`` evaluates the noise-free top-k (mode) of the
logits instead.

Losses under ``model.fit``: the model returns the 784 decoder logits. The reconstruction term is the compiled loss
:func:`negative_elbo` (it sees only ``y_true``/``y_pred``); the KL term is added by the model in ``call`` with
``add_loss`` (Keras scales it for ``tf.distribute`` as it scales compiled losses), and :meth:`DiscreteVAE.compute_loss`
records the per-example averages as the metrics ``nelbo`` (= the total loss), ``kl`` and ``bce``. The model owns
its loss: ``model.compile(optimizer)`` uses :func:`negative_elbo`.
"""

from __future__ import annotations

import dataclasses
import pathlib

import keras
import numpy as np
import tensorflow as tf

from identity_tf import method as method_lib
from identity_tf import solvers
from identity_tf.layers import GumbelSoftmaxTopK  # noqa: F401  (its home until 0.2; kept importable)
from identity_tf.method import MethodConfig
from identity_tf.tasks.model_base import TaskModel

GROUPS = 20
GROUP_SIZE = 20
LATENT = GROUPS * GROUP_SIZE
PIXELS = 784
METHODS = ("identity", "imle", "gumbel_st")
PROJECTION_SCOPES = ("example", "group")
LOG_EPSILON = 1e-20


@dataclasses.dataclass
class DVAEConfig:
    """Model settings of the DVAE task (the method is the ``method:`` section, :class:`identity_tf.method.MethodConfig`).

    Attributes:
        k: Ones per group (1 <= k <= 20).
        projection_scope: What one projection acts on: "example" (all 400 logits of an example, the package's
            convention for projections) or "group" (each group of 20 separately, as the paper's DVAE notebook
            did: it reshaped the logits to ``[B * 20, 20]`` before projecting). Both leave every group's top-k
            unchanged (each group's k-hot solutions lie on their own hyperplane ``<1, y_g> = k``).
    """

    k: int = 10
    projection_scope: str = "example"

    def __post_init__(self):
        if isinstance(self.k, bool) or not isinstance(self.k, int) or not 1 <= self.k <= GROUP_SIZE:
            raise ValueError(f"`model.k` must be an integer in [1, {GROUP_SIZE}]. Received: k={self.k!r}")
        if self.projection_scope not in PROJECTION_SCOPES:
            raise ValueError(
                f"`model.projection_scope` must be one of {PROJECTION_SCOPES}. "
                f"Received: projection_scope={self.projection_scope!r}"
            )


# Release 0.1 kept the method in the model section: old name -> MethodConfig field, and the old defaults.
LEGACY_METHOD_KEYS = {
    "method": "gradient",
    "projection": "projection",
    "noise_variant": "noise_variant",
    "tau": "noise_tau",
    "s": "noise_s",
    "lam": "lam",
    "temperature": "temperature",
    "eval_noise": "noise_at_inference",
}
LEGACY_DEFAULTS = {
    "method": "identity",
    "projection": "std",
    "noise_variant": "paper",
    "tau": 10.0,
    "s": 10,
    "lam": 10.0,
    "temperature": 1.0,
    "eval_noise": True,
}


# ------------------------------------------------------------------------------------------------- losses
def kl_to_uniform(logits):
    """Per-example ``sum_groups KL(softmax(logits) || uniform)`` for logits ``[B, groups, n]`` -> ``[B]``."""
    logits = tf.convert_to_tensor(logits)
    n = tf.cast(tf.shape(logits)[-1], logits.dtype)
    q = tf.nn.softmax(logits, axis=-1)
    return tf.reduce_sum(q * (tf.math.log(q + LOG_EPSILON) + tf.math.log(n)), axis=[1, 2])


@keras.saving.register_keras_serializable(package="identity_tf.dvae")
def negative_elbo(y_true, y_pred):
    """Reconstruction part of the N-ELBO, per example: ``sum_pixels`` sigmoid BCE of ``y_true`` in [0, 1] and the
    decoder logits ``y_pred`` ``[B, 784]``. :class:`DiscreteVAE` adds the KL term (``add_loss``)."""
    y_pred = tf.convert_to_tensor(y_pred)
    y_true = tf.cast(y_true, y_pred.dtype)
    return tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels=y_true, logits=y_pred), axis=-1)


def _replicas() -> int:
    return tf.distribute.get_strategy().num_replicas_in_sync


# -------------------------------------------------------------------------------------------------- model
@keras.saving.register_keras_serializable(package="identity_tf")
class DiscreteVAE(TaskModel):
    """Encoder -> 20 x TopK(k) latent through a solver -> decoder (see the module docstring).

    Call arguments:
        x: ``[B, 784]`` grey levels in [0, 1].
        training: Training mode (noise; also at inference when ``method.noise_at_inference``).

    Returns:
        Decoder logits ``[B, 784]``. The KL term of the batch is added with ``add_loss``.

    Example:
    >>> import numpy as np
    >>> from identity_tf.method import MethodConfig
    >>> method = MethodConfig(gradient="identity", projection="std", noise="sum_of_gamma", noise_at_inference=True)
    >>> model = DiscreteVAE({"k": 10}, seed=0, method=method)
    >>> model(np.zeros([2, 784], "float32")).shape
    TensorShape([2, 784])
    >>> int(model.latent(np.zeros([2, 784], "float32")).numpy().sum(axis=-1).max())
    10
    """

    config_class = DVAEConfig
    legacy_method_keys = (LEGACY_METHOD_KEYS, LEGACY_DEFAULTS)

    def __init__(
        self,
        config: DVAEConfig | dict | None = None,
        seed: int = 0,
        method: MethodConfig | dict | None = None,
        **kwargs,
    ):
        super().__init__(config, method, seed, **kwargs)
        c, m = self.task_config, self.method
        if m.gradient not in METHODS:
            raise ValueError(f"The DVAE's method.gradient must be one of {METHODS}. Received: gradient={m.gradient!r}")
        self.encoder = keras.Sequential(
            [
                keras.layers.Dense(512, activation="relu"),
                keras.layers.Dense(256, activation="relu"),
                keras.layers.Dense(LATENT),
            ],
            name="encoder",
        )
        self.decoder = keras.Sequential(
            [
                keras.layers.Dense(256, activation="relu"),
                keras.layers.Dense(512, activation="relu"),
                keras.layers.Dense(PIXELS),
            ],
            name="decoder",
        )
        self.solver = solvers.TopK(k=c.k)
        # the layers' names and seeds are release 0.1's, so that its saved models load into these attributes
        self.noise_layer = method_lib.perturbation_layer(m, self.solver, seed=seed)
        self.projection = method_lib.projection_layer(m, self.solver)
        self.select_layer = method_lib.selection_layer(m, self.solver, seed=seed + 1)
        self.nelbo_tracker = keras.metrics.Mean(name="nelbo")
        self.kl_tracker = keras.metrics.Mean(name="kl")
        self.bce_tracker = keras.metrics.Mean(name="bce")

    def default_loss(self):
        """The reconstruction term :func:`negative_elbo` (the KL term is the model's ``add_loss``)."""
        return negative_elbo

    # --- pieces (public so tests and notebooks can look inside)
    def encode(self, x):
        """Raw encoder logits ``[B, 20, 20]``."""
        return tf.reshape(self.encoder(x), [-1, GROUPS, GROUP_SIZE])

    def perturb(self, logits, training=None):
        """``logits + SoG noise`` for "identity" (when the noise is on); unchanged for the other methods."""
        return logits if self.noise_layer is None else self.noise_layer(logits, training=training)

    def project(self, w):
        """The projection of ``w`` ``[B, 20, 20]``, per example or per group (``config.projection_scope``)."""
        if self.projection is None:
            return w
        if self.task_config.projection_scope == "group":
            # [B, 20, 20] -> [B * 20, 20]: each group is one "example" of the projection
            return tf.reshape(self.projection(tf.reshape(w, [-1, GROUP_SIZE])), [-1, GROUPS, GROUP_SIZE])
        return self.projection(w)

    def select(self, w, training=None):
        """The k-hot sample ``[B, 20, 20]`` of (perturbed, projected) logits, with the method's backward pass."""
        return self.select_layer(w, training=training)

    def sample(self, logits, training=None):
        return self.select(self.project(self.perturb(logits, training=training)), training=training)

    def decode(self, y):
        return self.decoder(tf.reshape(y, [-1, LATENT]))

    def latent(self, x, training=False):
        """The k-hot latent code ``[B, 20, 20]`` of images ``[B, 784]``."""
        return self.sample(self.encode(x), training=training)

    def call(self, x, training=None):
        logits = self.encode(x)
        # batch mean; under tf.distribute Keras scales add_loss terms by 1/replicas, as it does compiled losses. A
        # replica's empty share of a partial last batch (MirroredStrategy) adds 0, not the NaN of an empty mean.
        kl = kl_to_uniform(logits)
        self.add_loss(tf.math.divide_no_nan(tf.reduce_sum(kl), tf.cast(tf.shape(kl)[0], kl.dtype)))
        return self.decode(self.sample(logits, training=training))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        # BCE (compiled loss) + KL (add_loss), each a replica-local batch mean scaled by 1/replicas
        total = super().compute_loss(x, y, y_pred, sample_weight, training=training)
        losses = self.losses  # unscaled
        kl = tf.add_n([tf.cast(v, total.dtype) for v in losses]) if losses else tf.zeros((), total.dtype)
        nelbo = total * tf.cast(_replicas(), total.dtype)  # the replica-local batch mean
        count = tf.shape(y_pred)[0]
        self.nelbo_tracker.update_state(nelbo, sample_weight=count)
        self.kl_tracker.update_state(kl, sample_weight=count)
        self.bce_tracker.update_state(nelbo - kl, sample_weight=count)
        return total

    def reconstruct(self, x, training=False):
        """Reconstructed grey levels ``sigmoid(decoder logits)`` ``[B, 784]``."""
        return tf.sigmoid(self(x, training=training))


# ------------------------------------------------------------------------------------- gradient diagnostics
def gradient_alignment(model: DiscreteVAE, x, training: bool = True) -> dict[str, tf.Tensor]:
    """Compares the update Identity passes back with the update after differentiating through the projection.

    Paper Fig. 7: with ``w`` the (perturbed) logits and ``w_hat = P(w)`` the solver's input, the Identity backward
    pass hands ``g_hat = dl/dw_hat`` (= -dl/dy up to the solver's sense) to the projection, and autodiff turns it
    into the update ``g = P'(w)^T g_hat`` of the logits. Without a projection ``g = g_hat``. Per example (over all
    400 latent entries) this returns the cosine similarity ``<g, g_hat> / (|g| |g_hat|)`` and the norm ratio
    ``|g| / |g_hat|``, averaged over the batch. The loss is the reconstruction part of the N-ELBO (the KL term does
    not pass through the sampler).

    Args:
        model: A :class:`DiscreteVAE` with ``method="identity"``.
        x: Images ``[B, 784]`` in [0, 1].
        training: Draw the noise as in training.

    Returns:
        ``{"cosine": scalar, "norm_ratio": scalar}``.
    """
    if model.method.gradient != "identity":
        raise ValueError(
            f"Gradient alignment is defined for method 'identity'. Received: method.gradient={model.method.gradient!r}"
        )
    x = tf.convert_to_tensor(x, tf.float32)
    w = model.perturb(model.encode(x), training=training)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(w)
        w_hat = model.project(w)
        reconstruction = model.decode(model.select(w_hat, training=training))
        loss = tf.reduce_sum(negative_elbo(x, reconstruction))
    g_hat = tf.reshape(tape.gradient(loss, w_hat), [-1, LATENT])
    g = tf.reshape(tape.gradient(loss, w), [-1, LATENT])
    del tape
    g_norm, g_hat_norm = tf.norm(g, axis=-1), tf.norm(g_hat, axis=-1)
    tiny = tf.constant(1e-30, g.dtype)
    cosine = tf.reduce_sum(g * g_hat, axis=-1) / tf.maximum(g_norm * g_hat_norm, tiny)
    return {"cosine": tf.reduce_mean(cosine), "norm_ratio": tf.reduce_mean(g_norm / tf.maximum(g_hat_norm, tiny))}


def _as_pixels(images) -> np.ndarray:
    """``[N, 28, 28]`` uint8 or ``[N, 784]`` floats -> ``[N, 784]`` float32 in [0, 1]."""
    images = np.asarray(images)
    if images.ndim < 1 or images[:1].size not in (0, PIXELS):
        raise ValueError(f"`images` must be [N, 784] or [N, 28, 28]. Received: shape {images.shape}")
    x = images.reshape(len(images), PIXELS).astype(np.float32)
    return x / 255.0 if images.dtype == np.uint8 else x


def mean_gradient_alignment(model: DiscreteVAE, images, batch_size: int = 100) -> dict[str, float]:
    """:func:`gradient_alignment` averaged over ``images`` (``[N, 28, 28]`` uint8 or ``[N, 784]`` in [0, 1])."""
    x = _as_pixels(images)
    if len(x) == 0:
        raise ValueError("`images` must hold at least one image. Received: 0 images")
    sums = {"cosine": 0.0, "norm_ratio": 0.0}
    for start in range(0, len(x), batch_size):
        batch = x[start : start + batch_size]
        values = gradient_alignment(model, batch)
        for key in sums:
            sums[key] += float(values[key]) * len(batch)
    return {key: value / len(x) for key, value in sums.items()}


class GradientAlignment(keras.callbacks.Callback):
    """Logs :func:`mean_gradient_alignment` on fixed training images at the end of every epoch (paper Fig. 7).

    Adds ``grad_cosine`` and ``grad_norm_ratio`` to the epoch's logs (so ``CSVLogger`` writes them to
    ``history.csv``).

    Args:
        images: ``[N, 784]`` floats in [0, 1] or ``[N, 28, 28]`` uint8 (the trainer passes 1 000 training digits).
        batch_size: Images per gradient computation.
    """

    def __init__(self, images, batch_size: int = 100):
        super().__init__()
        self.x = _as_pixels(images)
        self.batch_size = int(batch_size)
        if len(self.x) == 0:
            raise ValueError("`images` must hold at least one image. Received: 0 images")

    def on_epoch_end(self, epoch, logs=None):
        values = mean_gradient_alignment(self.model, self.x, self.batch_size)
        if logs is not None:
            logs["grad_cosine"] = values["cosine"]
            logs["grad_norm_ratio"] = values["norm_ratio"]


# --------------------------------------------------------------------------------------------------- plots
def plot_reconstructions(model: DiscreteVAE, images, path, n: int = 10) -> pathlib.Path:
    """PNG of ``n`` images (top row) and their reconstructions (bottom row), written with matplotlib.

    Args:
        model: A trained :class:`DiscreteVAE`.
        images: ``[N, 28, 28]`` uint8 or ``[N, 784]`` floats in [0, 1]; the first ``n`` are shown.
        path: Output PNG.
    """
    from matplotlib.figure import Figure  # no pyplot: leaves a notebook's backend alone

    x = _as_pixels(np.asarray(images)[:n])
    recon = np.asarray(model.reconstruct(x, training=False))
    n = len(x)
    fig = Figure(figsize=(1.2 * n, 2.6))
    axes = fig.subplots(2, n, squeeze=False)
    for i in range(n):
        for row, pictures in enumerate((x, recon)):
            axes[row, i].imshow(pictures[i].reshape(28, 28), cmap="gray", vmin=0.0, vmax=1.0)
            axes[row, i].axis("off")
    axes[0, 0].set_title("original", fontsize=8, loc="left")
    axes[1, 0].set_title("reconstruction", fontsize=8, loc="left")
    fig.tight_layout()
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


__all__ = [
    "DVAEConfig",
    "DiscreteVAE",
    "GROUPS",
    "GROUP_SIZE",
    "GradientAlignment",
    "GumbelSoftmaxTopK",
    "LATENT",
    "LEGACY_DEFAULTS",
    "LEGACY_METHOD_KEYS",
    "LOG_EPSILON",
    "METHODS",
    "PIXELS",
    "PROJECTION_SCOPES",
    "gradient_alignment",
    "kl_to_uniform",
    "mean_gradient_alignment",
    "negative_elbo",
    "plot_reconstructions",
]
