"""Learning curves: panels in a grid (not one long row), a run title, best-epoch and noise-off markers."""

import matplotlib.image

from identity_tf import plots


def _history(path, names, epochs=4):
    header = ["epoch", *names, *(f"val_{n}" for n in names if n != "grad_cosine"), "learning_rate"]
    rows = [",".join(header)]
    for e in range(epochs):
        rows.append(",".join([str(e)] + [f"{1.0 / (e + 1 + i):.4f}" for i in range(len(header) - 1)]))
    path.write_text("\n".join(rows) + "\n")
    return path


def test_six_dvae_panels_wrap_into_two_rows_with_title_and_markers(tmp_path):
    names = ["bce", "grad_cosine", "grad_norm_ratio", "kl", "loss", "nelbo"]
    history = _history(tmp_path / "history.csv", names)
    fig = plots.learning_curves_figure(history, title="dvae run", best_epoch=2, noise_off_epoch=1)
    visible = [ax for ax in fig.axes if ax.axison]
    assert [ax.get_title() for ax in visible] == names
    assert {ax.get_subplotspec().rowspan.start for ax in visible} == {0, 1}  # 2 rows of 3 panels
    assert {ax.get_subplotspec().colspan.start for ax in visible} == {0, 1, 2}
    assert fig._suptitle.get_text() == "dvae run"
    for ax in visible:
        lines = {line.get_label(): line.get_xdata() for line in ax.get_lines()}
        assert list(lines["tested (epoch 3)"]) == [3, 3]  # best_epoch is 0-based, the axis 1-based
        assert list(lines["margin noise off"]) == [1.5, 1.5]  # between the last noisy and the first clean epoch
    assert "validation" not in {line.get_label() for line in visible[1].get_lines()}  # no val_grad_cosine column
    out = plots.learning_curves(history, tmp_path / "curves.png", title="dvae run", best_epoch=2)
    height, width, _ = matplotlib.image.imread(out).shape
    assert width == round(3 * 4.2 * 110) and height == round(2 * 3.2 * 110)  # was 6 * 4.2 * 110 = 2772 px wide


def test_compare_curves_wraps_columns(tmp_path):
    history = _history(tmp_path / "history.csv", ["a", "b", "c", "d"])
    out = plots.compare_curves({"run": history}, ["a", "b", "c", "d"], tmp_path / "cmp.png", title="t")
    height, width, _ = matplotlib.image.imread(out).shape
    assert width == round(3 * 6.5 * 110) and height == round(2 * 4.0 * 110)


def test_compare_curves_shades_the_noise_epochs_and_marks_each_tested_epoch(tmp_path):
    a = _history(tmp_path / "a.csv", ["loss"], epochs=5)  # loss of epoch e (0-based): 1 / (e + 1)
    b = _history(tmp_path / "b.csv", ["loss"], epochs=5)
    fig = plots.compare_curves_figure({"A": a, "B": b}, "loss", best_epochs={"A": 3}, noise_epochs=2)
    (ax,) = [ax for ax in fig.axes if ax.axison]
    (band,) = ax.patches
    x0, x1 = band.get_x(), band.get_x() + band.get_width()
    assert (x0, x1) == (0.5, 2.5) and band.get_label() == "margin noise on"  # noisy epochs 1 and 2 of the axis
    markers = [line for line in ax.get_lines() if line.get_linestyle() == "None"]
    (marker,) = markers  # B has no tested epoch given: no marker
    assert list(marker.get_xdata()) == [4] and list(marker.get_ydata()) == [0.25]  # 0-based epoch 3 -> axis 4
    assert marker.get_color() == ax.get_lines()[0].get_color()  # A's colour
    assert ax.get_yscale() == "linear"
    (log_ax,) = [ax for ax in plots.compare_curves_figure({"A": a}, "loss", log_y=True).axes if ax.axison]
    assert log_ax.get_yscale() == "log"
