"""Reading run configs of release 0.1, whose DVAE and L2X sections kept the method under ``model:``."""

from __future__ import annotations

import dataclasses
import warnings

import yaml

from identity_tf.method import split_legacy


def migrate_model_section(task: str, sections: dict, renames: dict, defaults: dict, to_method) -> dict:
    """Moves the old method keys of ``sections["model"]`` into ``sections["method"]`` (with a warning).

    ``to_method(values) -> MethodConfig`` completes the renamed values as the old release meant them (e.g. the
    DVAE's Sum-of-Gamma noise). A config that has both the old keys and a ``method:`` section is refused.
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
    method = {k: v for k, v in dataclasses.asdict(to_method(legacy)).items()}
    shown = yaml.safe_dump(
        {"method": {k: v for k, v in method.items() if k in set(renames.values()) | {"noise", "noise_at_inference"}}},
        sort_keys=False,
    )
    warnings.warn(
        f"identity-tf: this {task} config keeps its method in the `model` section (release 0.1). It still runs, "
        f"as it did then; write it as\n{shown}",
        DeprecationWarning,
        stacklevel=3,
    )
    return {**sections, "model": model, "method": method}
