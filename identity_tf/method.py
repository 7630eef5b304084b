"""How a solver is differentiated: the ``method:`` section of every run config, and the layers it builds.

One schema for every task (a paper-table row's method). Every default is visible here; nothing is filled in
elsewhere. The layers around a solver are, in this order::

    [margin noise (alpha)] -> [perturbation noise (Identity)] -> [projection] -> solver / relaxation -> [gradient noise]

* ``gradient``: the backward pass. ``"identity"`` (the paper), ``"blackbox"`` (Vlastelica et al. 2020,
  ``lam``), ``"imle"`` (Niepert et al. 2021, ``lam``, its own perturbation ``noise``), ``"perturbed"`` (Berthet
  et al. 2020, ``noise`` of scale ``noise_scale``, ``num_samples``), or a relaxation that replaces the solver for
  top-k problems: ``"gumbel_st"`` (straight-through Gumbel-softmax), ``"l2x"`` (Chen et al. 2018) and
  ``"softsub"`` (Xie & Ermon 2019), each with ``temperature``.
* ``projection``: ``"none" | "mean" | "norm" | "std" | "auto"``, applied to the costs before the solver.
  ``"auto"`` means the same everywhere (:func:`identity_tf.projections.get`): ``std`` when the solver's solutions
  lie on a hyperplane (top-k, TSP, ...), else ``norm``. (Releases before 0.2 let ``auto`` mean "none" for the
  baselines; a run config that pairs ``auto`` with another gradient than identity is refused with a message.)
* ``noise``: ``"none" | "sum_of_gamma" | "gumbel" | "normal"``. For ``identity`` the noise is added to the costs
  before the solver (the DVAE and L2X runs of the paper: Sum-of-Gamma); for ``imle`` and ``perturbed`` it is the
  perturbation the estimator samples. Sum-of-Gamma's k is the solver's k (its ``k`` attribute), its other
  parameters ``noise_tau``, ``noise_s`` and ``noise_variant``; ``gumbel`` and ``normal`` have scale
  ``noise_scale``. ``noise_at_inference`` keeps the noise on at evaluation (the DVAE's original protocol).
* ``alpha``: the noise-induced margin (paper section 3.3), on for the first ``noise_epochs`` epochs (None: all).
* ``gradient_noise``: sigma of Gaussian noise on the gradient arriving at the solver's output (section 4.4),
  relative to each example's gradient (``gradient_noise_scale: per_example``) or the batch-mean's (``batch``).

Example:
>>> import identity_tf as itf
>>> method = MethodConfig(gradient="imle", projection="none", lam=10.0, noise="sum_of_gamma")
>>> [type(layer).__name__ for layer in solver_block(itf.solvers.TopK(k=3), method, seed=0)]
['SolverLayer']
>>> method.gradient_object(itf.solvers.TopK(k=3)).noise.k  # Sum-of-Gamma's k follows the solver's k
3
"""

from __future__ import annotations

import dataclasses

from identity_tf import gradients, layers
from identity_tf import noise as noise_lib
from identity_tf.layers.gradient_noise import GRADIENT_NOISE_SCALES

GRADIENTS = ("identity", "blackbox", "imle", "perturbed", "gumbel_st", "l2x", "softsub")
RELAXATIONS = ("gumbel_st", "l2x", "softsub")
PROJECTIONS = ("none", "mean", "norm", "std", "auto")
NOISES = ("none", "sum_of_gamma", "gumbel", "normal")
NOISE_VARIANTS = noise_lib.SumOfGamma.VARIANTS


@dataclasses.dataclass
class MethodConfig:
    """The ``method:`` section: how the solver is differentiated (one row of a paper table); see the module.

    Attributes:
        gradient: "identity", "blackbox", "imle", "perturbed", "gumbel_st", "l2x" or "softsub".
        projection: "none", "mean", "norm", "std" or "auto" (std on a hyperplane, else norm).
        lam: lambda of BB / I-MLE.
        alpha: Noise-induced margin alpha (0 = off).
        noise_epochs: Epochs during which the margin noise is on; None = the whole training.
        noise: Perturbation noise: "none", "sum_of_gamma", "gumbel" or "normal".
        noise_scale: Scale of "gumbel" / "normal" noise (the perturbed optimizer's sigma).
        noise_tau, noise_s, noise_variant: Sum-of-Gamma temperature, number of terms and parameterisation
            ("paper": eq. 23; "dvae_notebook": the paper's DVAE notebook, about 6x narrower).
        noise_at_inference: Draw the noise also at evaluation / prediction.
        num_samples: Noise samples per example (I-MLE, perturbed).
        temperature: Temperature of the relaxations (gumbel_st, l2x, softsub).
        gradient_noise: sigma of Gaussian noise added to dl/dy (the paper's robustness study); 0 = off.
        gradient_noise_scale: "per_example" (sigma on each example's own dl_i/dy_i; default) or "batch" (on the
            gradient of the batch-mean loss as Keras backpropagates it).
    """

    gradient: str = "identity"
    projection: str = "none"
    lam: float = 20.0
    alpha: float = 0.0
    noise_epochs: int | None = None
    noise: str = "none"
    noise_scale: float = 1.0
    noise_tau: float = 10.0
    noise_s: int = 10
    noise_variant: str = "paper"
    noise_at_inference: bool = False
    num_samples: int = 1
    temperature: float = 1.0
    gradient_noise: float = 0.0
    gradient_noise_scale: str = "per_example"

    def __post_init__(self):
        for name, choices in (
            ("gradient", GRADIENTS),
            ("projection", PROJECTIONS),
            ("noise", NOISES),
            ("noise_variant", NOISE_VARIANTS),
            ("gradient_noise_scale", GRADIENT_NOISE_SCALES),
        ):
            if getattr(self, name) not in choices:
                raise ValueError(f"`method.{name}` must be one of {choices}. Received: {name}={getattr(self, name)!r}")
        for name in ("lam", "noise_scale", "noise_tau", "temperature"):
            if not getattr(self, name) > 0:
                raise ValueError(f"`method.{name}` must be > 0. Received: {name}={getattr(self, name)!r}")
        for name in ("alpha", "gradient_noise"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"`method.{name}` must be >= 0. Received: {name}={getattr(self, name)!r}")
        for name in ("noise_s", "num_samples"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`method.{name}` must be an integer >= 1. Received: {name}={value!r}")
        if self.gradient in ("imle", "perturbed") and self.noise == "none":
            raise ValueError(
                f"`method.gradient: {self.gradient}` samples perturbations: set `method.noise` to "
                f"{'sum_of_gamma (the paper), gumbel or normal' if self.gradient == 'imle' else 'normal or gumbel'}. "
                "Received: noise='none'"
            )
        if self.gradient == "perturbed" and self.noise == "sum_of_gamma":
            raise ValueError(
                "`method.gradient: perturbed` takes noise normal or gumbel. Received: noise='sum_of_gamma'"
            )
        if self.gradient == "identity" and self.noise not in ("none", "sum_of_gamma"):
            raise ValueError(
                "`method.gradient: identity` adds noise none or sum_of_gamma before the solver (for a Gaussian margin "
                f"use `method.alpha`). Received: noise={self.noise!r}"
            )
        if self.gradient in ("blackbox",) + RELAXATIONS and self.noise != "none":
            raise ValueError(
                f"`method.gradient: {self.gradient}` takes no perturbation noise (`method.noise: none`). "
                f"Received: noise={self.noise!r}"
            )

    def noise_object(self, solver):
        """The perturbation noise (:mod:`identity_tf.noise`) for ``solver``; None for ``noise: none``."""
        if self.noise == "none":
            return None
        if self.noise == "sum_of_gamma":
            k = getattr(solver, "k", None)
            if not isinstance(k, int):
                raise ValueError(
                    "Sum-of-Gamma noise is parameterised by the number of ones k of the solver's solutions, and solver "
                    f"{type(solver).__name__} has no `k`. Use method.noise gumbel or normal. Received: noise='sum_of_gamma'"
                )
            return noise_lib.SumOfGamma(k=k, tau=self.noise_tau, s=self.noise_s, variant=self.noise_variant)
        return noise_lib.Gumbel(self.noise_scale) if self.noise == "gumbel" else noise_lib.Normal(self.noise_scale)

    def gradient_object(self, solver) -> gradients.GradientMethod:
        """The :mod:`identity_tf.gradients` method of ``gradient`` (not for the relaxations)."""
        if self.gradient in RELAXATIONS:
            raise ValueError(f"`{self.gradient}` is a relaxation layer, not a gradient method of a SolverLayer.")
        if self.gradient == "blackbox":
            return gradients.Blackbox(lam=self.lam)
        if self.gradient == "imle":
            return gradients.IMLE(
                lam=self.lam,
                noise=self.noise_object(solver),
                num_samples=self.num_samples,
                sample_at_inference=self.noise_at_inference,
            )
        if self.gradient == "perturbed":
            return gradients.Perturbed(
                sigma=self.noise_scale,
                num_samples=self.num_samples,
                noise=self.noise,
                sample_at_inference=self.noise_at_inference,
            )
        return gradients.Identity()


def as_method(value) -> MethodConfig:
    """``None`` -> defaults, a dict -> ``MethodConfig(**dict)``, an instance -> itself."""
    if value is None:
        return MethodConfig()
    if isinstance(value, MethodConfig):
        return value
    return MethodConfig(**value)


# ------------------------------------------------------------------------------------------------- layers
def margin_layer(method: MethodConfig, seed: int, symmetric: bool = False, name: str = "margin"):
    """The noise-induced margin (None when ``alpha == 0``)."""
    if method.alpha <= 0:
        return None
    return layers.NoiseMarginLayer(method.alpha, seed=seed, symmetric=symmetric, name=name)


def perturbation_layer(method: MethodConfig, solver, seed: int, name: str = "sog_noise"):
    """Identity's noise before the solver (None unless ``gradient: identity`` with ``noise: sum_of_gamma``)."""
    if method.gradient != "identity" or method.noise == "none":
        return None
    sog = method.noise_object(solver)
    return layers.SumOfGammaNoise(
        sog.k, sog.tau, sog.s, sog.variant, at_inference=method.noise_at_inference, seed=seed, name=name
    )


def projection_layer(method: MethodConfig, solver, name: str = "projection"):
    """The projection before the solver (None for ``projection: none``)."""
    if method.projection == "none":
        return None
    return layers.ProjectionLayer(method.projection, solver=solver, name=name)


def selection_layer(method: MethodConfig, solver, seed: int, name: str | None = None):
    """The solver with the method's backward pass, or the relaxation that replaces it."""
    if method.gradient == "gumbel_st":
        return layers.GumbelSoftmaxTopK(
            solver.k, method.temperature, at_inference=method.noise_at_inference, seed=seed, name=name or "gumbel_topk"
        )
    if method.gradient in ("l2x", "softsub"):
        return layers.RelaxedSubset(
            solver.k, method.gradient, method.temperature, seed=seed, name=name or "relaxed_subset"
        )
    return layers.SolverLayer(solver, gradient=method.gradient_object(solver), seed=seed, name=name or "solver")


def gradient_noise_layer(method: MethodConfig, seed: int, name: str = "gradient_noise"):
    """Gaussian noise on the incoming gradient (None when ``gradient_noise == 0``)."""
    if method.gradient_noise <= 0:
        return None
    return layers.GradientNoiseLayer(method.gradient_noise, seed=seed, scale=method.gradient_noise_scale, name=name)


def solver_block(solver, method: MethodConfig, seed: int, symmetric_noise: bool = False) -> list:
    """The layers ``[margin] -> [perturbation] -> [projection] -> solver -> [gradient noise]`` of a method.

    Seeds: the margin and the perturbation use ``seed``, the solver ``seed + 1``, the gradient noise ``seed + 2``.
    """
    blocks = [
        margin_layer(method, seed, symmetric=symmetric_noise),
        perturbation_layer(method, solver, seed),
        projection_layer(method, solver),
        selection_layer(method, solver, seed + 1),
        gradient_noise_layer(method, seed + 2),
    ]
    return [block for block in blocks if block is not None]


# ------------------------------------------------------------------------------------------- old schemas
def split_legacy(values: dict, renames: dict[str, str], legacy_defaults: dict) -> tuple[dict, dict | None]:
    """Moves method keys of an old ``model`` section into a ``method`` section.

    Releases before 0.2 kept the DVAE's and L2X's method settings in ``model`` (``model.method``, ``model.lam``,
    ...). Returns ``(model values without them, method values)``; the method values are None when ``values`` holds
    none of the old keys. ``renames`` maps old names to :class:`MethodConfig` fields, ``legacy_defaults`` are the
    old defaults of the keys a config left out (so an old config means what it meant).
    """
    if not any(key in values for key in renames):
        return dict(values), None
    old = {**legacy_defaults, **{key: values[key] for key in renames if key in values}}
    rest = {key: value for key, value in values.items() if key not in renames}
    return rest, {renames[key]: value for key, value in old.items() if key in renames}


def upgrade_release_0_1(values: dict) -> dict:
    """A method dict saved by release 0.1 (``GlobeTSP`` / ``WarcraftShortestPath`` ``.keras`` files), as it meant then.

    There, ``projection: auto`` meant no projection for the baselines, the perturbed optimizer sampled normal noise
    of scale 0.1 ten times, and I-MLE sampled Sum-of-Gamma noise.
    """
    values = dict(values)
    gradient = values.get("gradient", "identity")
    if values.get("projection", "auto") == "auto":
        values["projection"] = "auto" if gradient == "identity" else "none"
    if gradient == "perturbed":
        values.setdefault("noise", "normal")
        values.setdefault("noise_scale", 0.1)
        values.setdefault("num_samples", 10)
    if gradient == "imle":
        values.setdefault("noise", "sum_of_gamma")
    return values
