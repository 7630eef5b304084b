"""Models saved by release 0.1 (``tests/fixtures/release_0_1_0/``, written at commit 7ffacd7, before the task registry
and the method schema) still load after ``import identity_tf`` and predict exactly what they predicted then."""

import pathlib

import keras
import numpy as np
import pytest

import identity_tf  # noqa: F401  (registers the task models)

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "release_0_1_0"


@pytest.mark.parametrize("name", ["globe_tsp", "warcraft", "dvae", "l2x"])
def test_release_0_1_model_loads_and_predicts_the_same(name):
    model = keras.saving.load_model(FIXTURES / f"{name}.keras")
    saved = np.load(FIXTURES / f"{name}.npz")
    # rtol = atol = 1e-6: the fixtures were written with TF's oneDNN kernels on, the tests run them off (root conftest),
    # and CPUs differ in their float32 kernels (on 2026-12-03 the DVAE probabilities differed by up to 3.3e-7 absolute,
    # 3e-4 relative on tiny values); the discrete outputs (tours, paths: 0/1) must still match exactly
    predicted = keras.ops.convert_to_numpy(model(saved["inputs"], training=False))
    np.testing.assert_allclose(predicted, saved["outputs"], rtol=1e-6, atol=1e-6)


def test_release_0_1_method_settings_are_read_as_they_meant():
    """Old DVAE / L2X files kept the method in the model config; it comes back as the method section."""
    dvae = keras.saving.load_model(FIXTURES / "dvae.keras")
    assert (dvae.method.gradient, dvae.method.projection, dvae.method.noise) == ("identity", "std", "sum_of_gamma")
    assert dvae.method.noise_at_inference is False  # saved with eval_noise: false
    l2x = keras.saving.load_model(FIXTURES / "l2x.keras")
    assert (l2x.method.gradient, l2x.method.projection, l2x.method.noise, l2x.task_config.k) == (
        "imle",
        "none",
        "sum_of_gamma",
        3,
    )
    globe = keras.saving.load_model(FIXTURES / "globe_tsp.keras")
    assert (globe.method.alpha, globe.method.gradient_noise, globe.task_config.distance) == (0.2, 0.5, "arc")
