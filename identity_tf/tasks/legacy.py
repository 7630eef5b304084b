"""Reading configs and models of release 0.1, whose DVAE and L2X kept the method in the model section."""

from __future__ import annotations

import dataclasses
import warnings

import yaml

from identity_tf.method import MethodConfig, split_legacy


def legacy_method(values: dict) -> MethodConfig:
    """The method of release 0.1's renamed DVAE / L2X method keys: they sampled Sum-of-Gamma noise for identity and
    I-MLE, and none for the relaxations."""
    noise = "sum_of_gamma" if values.get("gradient") in ("identity", "imle") else "none"
    return MethodConfig(**values, noise=noise)


def migrate_model_section(task: str, sections: dict, renames: dict, defaults: dict) -> dict:
    """Moves the old method keys of ``sections["model"]`` into ``sections["method"]`` (with a warning).

    The old keys are renamed (``renames``), completed with the old ``defaults`` and read by :func:`legacy_method`,
    so an old config means what it meant. A config with both the old keys and a ``method:`` section is refused.
    """
    model, legacy = split_legacy(sections.get("model") or {}, renames, defaults)
    if legacy is None:
        return sections
    if sections.get("method"):
        old = sorted(set(sections["model"]) & set(renames))
        raise ValueError(
            f"The {task} config has method keys in both `model` ({old}) and `method`; write them in `method` only. "
            f"Received: method={sections['method']}"
        )
    method = dataclasses.asdict(legacy_method(legacy))
    written = set(renames.values()) | {"noise", "noise_at_inference"}
    shown = yaml.safe_dump({"method": {k: v for k, v in method.items() if k in written}}, sort_keys=False)
    warnings.warn(
        f"identity-tf: this {task} config keeps its method in the `model` section (release 0.1). It still runs, "
        f"as it did then; write it as\n{shown}",
        DeprecationWarning,
        stacklevel=3,
    )
    return {**sections, "model": model, "method": method}
