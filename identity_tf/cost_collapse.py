"""Cost collapse (paper section 3.6): a run's solver inputs shrank towards zero while its solutions stay varied.

Pure Python (no TensorFlow), so that :mod:`identity_tf.report` can apply it to a committed ``history.csv`` and
:class:`identity_tf.run_health.RunHealth` to a live run.
"""

from __future__ import annotations

import math

COST_COLLAPSE_RATIO = 0.1  # solver_input_std below this share of its running peak counts as shrunk


def cost_collapse(stds, patience: int = 3, ratio: float = COST_COLLAPSE_RATIO) -> dict | None:
    """Whether a run's costs collapsed: its last ``patience`` (or more) epochs' ``stds`` below ``ratio`` x the peak.

    Args:
        stds: ``solver_input_std`` of each epoch, in order (``history.csv``'s column).
        patience: Minimum length of the final run of shrunk epochs (0 = never flag).
        ratio: An epoch is shrunk when its std is below ``ratio`` times the largest std up to that epoch.

    Returns:
        ``None``, or ``{"epoch": first shrunk epoch of the final run (1-based), "peak_epoch" (1-based), "peak",
        "final", "ratio"}``.

    >>> cost_collapse([0.5, 1.0, 0.5, 0.09, 0.05, 0.04])
    {'epoch': 4, 'peak_epoch': 2, 'peak': 1.0, 'final': 0.04, 'ratio': 0.1}
    >>> cost_collapse([0.5, 1.0, 0.05, 0.04, 0.2]) is None  # recovered in the last epoch
    True
    """
    stds = [float(s) for s in stds]
    peak, peak_epoch, shrunk = -math.inf, None, []
    for epoch, std in enumerate(stds):
        if std > peak:
            peak, peak_epoch = std, epoch
        shrunk.append(std < ratio * peak)
    tail = len(stds)
    while tail and shrunk[tail - 1]:
        tail -= 1
    if not patience or len(stds) - tail < patience:
        return None
    return {"epoch": tail + 1, "peak_epoch": peak_epoch + 1, "peak": peak, "final": stds[-1], "ratio": ratio}
