"""Discrete VAE on MNIST (paper section 4.1 and B.1): 20 groups of 10-hot latents through a top-k solver.

Model (Niepert et al. 2021, as the paper): encoder Dense 512 relu -> 256 relu -> 400 logits, reshaped to 20 groups
x 20; a k-hot sample per group (TopK(10) along the last axis); decoder Dense 256 relu -> 512 relu -> 784 logits.
The N-ELBO per example is ``sum_pixels BCE(x, sigmoid(decoder logits)) + sum_groups KL(q || uniform(1/20))`` with
``q = softmax(raw encoder logits)`` per group and ``log(q + 1e-20)`` as in the original code.

How the sample is drawn and differentiated (``DVAEConfig.method``):

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
(``eval_noise=True``: the noise of every method is also drawn in ``model.evaluate``/``predict``, so ``val_nelbo``
and the test N-ELBO are comparable with the paper); ``eval_noise=False`` evaluates the noise-free top-k (mode) of the
logits instead.

Losses under ``model.fit``: the model returns the 784 decoder logits. The reconstruction term is the compiled loss
:func:`negative_elbo` (it sees only ``y_true``/``y_pred``); the KL term is added by the model in ``call`` with
``add_loss`` (Keras scales it for ``tf.distribute`` as it scales compiled losses), and :meth:`DiscreteVAE.compute_loss`
records the per-example averages as the metrics ``nelbo`` (= the total loss), ``kl`` and ``bce``. Compile with
``loss=negative_elbo`` (the trainer does).
"""

from __future__ import annotations

import dataclasses
import pathlib

import keras
import numpy as np
import tensorflow as tf

from identity_tf import gradients, layers, solvers
from identity_tf import noise as noise_lib
from identity_tf.tasks.common import SumOfGammaNoise, as_config

GROUPS = 20
GROUP_SIZE = 20
LATENT = GROUPS * GROUP_SIZE
PIXELS = 784
METHODS = ("identity", "imle", "gumbel_st")
PROJECTIONS = ("none", "mean", "norm", "std")
PROJECTION_SCOPES = ("example", "group")
LOG_EPSILON = 1e-20


@dataclasses.dataclass
class DVAEConfig:
    """Model settings of the DVAE task.

    Attributes:
        method: "identity" (the paper), "imle" (Niepert et al. 2021) or "gumbel_st" (straight-through
            Gumbel-softmax top-k).
        projection: "none", "mean", "norm" or "std", per example over all 400 logits, before the solver.
        noise_variant: Sum-of-Gamma parameterisation: "paper" (eq. 23, Gamma scale k/i) or "dvae_notebook"
            (the paper's notebook, scale i/k: about 6x narrower noise). Used by "identity" and "imle".
        k: Ones per group (1 <= k <= 20).
        tau, s: Sum-of-Gamma temperature and number of terms.
        lam: I-MLE lambda.
        temperature: Gumbel-softmax temperature ("gumbel_st").
        eval_noise: Draw the noise also at evaluation (the original's choice; see the module docstring).
        projection_scope: What one projection acts on: "example" (all 400 logits of an example, the package's
            convention for projections) or "group" (each group of 20 separately, as the paper's DVAE notebook
            did: it reshaped the logits to ``[B * 20, 20]`` before projecting). Both leave every group's top-k
            unchanged (each group's k-hot solutions lie on their own hyperplane ``<1, y_g> = k``).
    """

    method: str = "identity"
    projection: str = "std"
    noise_variant: str = "paper"
    k: int = 10
    tau: float = 10.0
    s: int = 10
    lam: float = 10.0
    temperature: float = 1.0
    eval_noise: bool = True
    projection_scope: str = "example"

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"`model.method` must be one of {METHODS}. Received: method={self.method!r}")
        if self.projection not in PROJECTIONS:
            raise ValueError(
                f"`model.projection` must be one of {PROJECTIONS}. Received: projection={self.projection!r}"
            )
        if self.noise_variant not in noise_lib.SumOfGamma.VARIANTS:
            raise ValueError(
                f"`model.noise_variant` must be one of {noise_lib.SumOfGamma.VARIANTS}. "
                f"Received: noise_variant={self.noise_variant!r}"
            )
        for name, low, high in (("k", 1, GROUP_SIZE), ("s", 1, None)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low or (high and value > high):
                bound = f"an integer in [{low}, {high}]" if high else f"an integer >= {low}"
                raise ValueError(f"`model.{name}` must be {bound}. Received: {name}={value!r}")
        for name in ("tau", "lam", "temperature"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"`model.{name}` must be a positive number. Received: {name}={value!r}")
            setattr(self, name, float(value))
        if self.projection_scope not in PROJECTION_SCOPES:
            raise ValueError(
                f"`model.projection_scope` must be one of {PROJECTION_SCOPES}. "
                f"Received: projection_scope={self.projection_scope!r}"
            )
        if not isinstance(self.eval_noise, bool):
            raise ValueError(f"`model.eval_noise` must be true or false. Received: eval_noise={self.eval_noise!r}")

    def sum_of_gamma(self) -> noise_lib.SumOfGamma:
        return noise_lib.SumOfGamma(k=self.k, tau=self.tau, s=self.s, variant=self.noise_variant)


# ------------------------------------------------------------------------------------------------ layers
@keras.saving.register_keras_serializable(package="identity_tf.dvae")
class GumbelSoftmaxTopK(keras.layers.Layer):
    """Straight-through Gumbel-softmax top-k along the last axis.

    Forward: the k-hot top-k of ``z = logits + G`` (G standard Gumbel). Backward: the gradient of
    ``softmax(z / temperature)`` (the straight-through estimator; the forward value is exactly k-hot). Noise is drawn when training and,
    if ``at_inference``, at inference too (otherwise the forward is the top-k of the logits).
    """

    def __init__(self, k=10, temperature=1.0, at_inference=True, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.k, self.temperature, self.at_inference, self.seed = int(k), float(temperature), bool(at_inference), seed
        self.solver = solvers.TopK(k=self.k)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, logits, training=None):
        z = logits
        if training or self.at_inference:
            z = logits + noise_lib.Gumbel().sample(tf.shape(logits), seed=self.seed_generator, dtype=logits.dtype)
        solver, temperature = self.solver, self.temperature

        @tf.custom_gradient
        def straight_through(z):
            def backward(upstream):  # vector-Jacobian product of softmax(z / T) along the last axis
                soft = tf.nn.softmax(z / temperature, axis=-1)
                return soft * (upstream - tf.reduce_sum(upstream * soft, axis=-1, keepdims=True)) / temperature

            return tf.cast(solver(z), z.dtype), backward  # exactly k-hot (no hard + soft - soft round-off)

        return straight_through(z)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "k": self.k,
            "temperature": self.temperature,
            "at_inference": self.at_inference,
            "seed": self.seed,
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
class DiscreteVAE(keras.Model):
    """Encoder -> 20 x TopK(k) latent through a solver -> decoder (see the module docstring).

    Call arguments:
        x: ``[B, 784]`` grey levels in [0, 1].
        training: Training mode (noise; also at inference when ``config.eval_noise``).

    Returns:
        Decoder logits ``[B, 784]``. The KL term of the batch is added with ``add_loss``.

    Example:
    >>> import numpy as np
    >>> model = DiscreteVAE({"method": "identity", "projection": "std"}, seed=0)
    >>> model(np.zeros([2, 784], "float32")).shape
    TensorShape([2, 784])
    >>> int(model.latent(np.zeros([2, 784], "float32")).numpy().sum(axis=-1).max())
    10
    """

    def __init__(self, config: DVAEConfig | dict | None = None, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.task_config = as_config(DVAEConfig, config)
        self.seed = seed
        c = self.task_config
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
        self.noise_layer = None
        if c.method == "identity":
            self.noise_layer = SumOfGammaNoise(
                c.k, c.tau, c.s, c.noise_variant, at_inference=c.eval_noise, seed=seed, name="sog_noise"
            )
        self.projection = None
        if c.projection != "none":
            self.projection = layers.ProjectionLayer(c.projection, solver=self.solver, name="projection")
        if c.method == "gumbel_st":
            self.select_layer = GumbelSoftmaxTopK(
                c.k, c.temperature, at_inference=c.eval_noise, seed=seed + 1, name="gumbel_topk"
            )
        else:
            gradient = (
                gradients.IMLE(lam=c.lam, noise=c.sum_of_gamma(), sample_at_inference=c.eval_noise)
                if c.method == "imle"
                else gradients.Identity()
            )
            self.select_layer = layers.SolverLayer(self.solver, gradient=gradient, seed=seed + 1, name="solver")
        self.nelbo_tracker = keras.metrics.Mean(name="nelbo")
        self.kl_tracker = keras.metrics.Mean(name="kl")
        self.bce_tracker = keras.metrics.Mean(name="bce")

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
        # batch mean; under tf.distribute Keras scales add_loss terms by 1/replicas, as it does compiled losses
        self.add_loss(tf.reduce_mean(kl_to_uniform(logits)))
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

    def get_config(self):
        return {**super().get_config(), "config": dataclasses.asdict(self.task_config), "seed": self.seed}


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
    if model.task_config.method != "identity":
        raise ValueError(
            f"Gradient alignment is defined for method 'identity'. Received: method={model.task_config.method!r}"
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
