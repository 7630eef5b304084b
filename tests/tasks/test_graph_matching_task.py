"""Graph-matching task: the model's pieces against hand-computed values, its gradients, padding, metrics, errors."""

import keras
import numpy as np
import pytest
import scipy.ndimage
import tensorflow as tf

from identity_tf.datasets.graph_matching import format as fmt
from identity_tf.datasets.graph_matching.pipeline import make_dataset
from identity_tf.tasks.graph_matching import model as gm
from identity_tf.tasks.graph_matching.task import GraphMatchingData


def test_sample_features_is_bilinear_interpolation_at_pixel_centres():
    rng = np.random.default_rng(0)
    fmap = rng.normal(size=(1, 5, 7, 2)).astype(np.float32)
    points = rng.uniform(0.1, 0.9, size=(1, 6, 2)).astype(np.float32)  # image units
    out = gm.sample_features(fmap, points).numpy()[0]
    rows, cols = points[0, :, 1] * 5 - 0.5, points[0, :, 0] * 7 - 0.5
    for c in range(2):
        expected = scipy.ndimage.map_coordinates(fmap[0, :, :, c].astype(np.float64), [rows, cols], order=1)
        np.testing.assert_allclose(out[:, c], expected, rtol=1e-5, atol=1e-6)


def test_cartesian_attributes_by_hand():
    points = np.array([[[0.0, 0.0], [0.4, 0.0], [0.0, 0.2]]], np.float32)
    edges = np.array([[[0, 1], [1, 0], [2, 0], [-1, -1]]], np.int32)
    # deltas source - target: (-0.4, 0), (0.4, 0), (0, 0.2); max |.| = 0.4 -> delta / 0.8 + 0.5
    expected = [[0.0, 0.5], [1.0, 0.5], [0.5, 0.75], [0.5, 0.5]]
    np.testing.assert_allclose(gm.cartesian_attributes(points, edges).numpy()[0], expected, atol=1e-6)


def test_spline_graph_conv_by_hand():
    """kernel_size 3: kernels at (i, j) / 2. Node 2 gets messages from 0 (attribute (0.25, 0): half kernel 0,
    half kernel 1) and from 1 (attribute (1, 1): kernel 8); max aggregation; node 0 gets none; padding ignored."""
    layer = gm.SplineGraphConv(1, kernel_size=3)
    x = np.array([[[1.0], [2.0], [3.0]]], np.float32)
    edges = np.array([[[0, 2], [1, 2], [-1, -1]]], np.int32)
    attributes = np.array([[[0.25, 0.0], [1.0, 1.0], [0.7, 0.7]]], np.float32)
    layer((x, edges, attributes))
    kernel = np.zeros((9, 1, 1), np.float32)
    kernel[0], kernel[1], kernel[8] = 4.0, 2.0, -1.0
    layer.set_weights([kernel, np.array([[10.0]], np.float32), np.array([0.5], np.float32)])
    out = layer((x, edges, attributes)).numpy()[0, :, 0]
    message_from_0 = 1.0 * (0.5 * 4.0 + 0.5 * 2.0)  # 3
    message_from_1 = 2.0 * -1.0  # -2
    expected = [10 * 1 + 0.5, 10 * 2 + 0.5, max(message_from_0, message_from_1) + 10 * 3 + 0.5]
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    basis = layer.basis(np.array([[[0.25, 0.75]]], np.float32)).numpy()[0, 0]
    # v = (0.5, 1.5): x between kernels 0 and 1 (half each), y between rows 1 and 2 (half each)
    expected_basis = np.zeros(9)
    expected_basis[[0 + 3, 1 + 3, 0 + 6, 1 + 6]] = 0.25
    np.testing.assert_allclose(basis, expected_basis, atol=1e-7)


def test_affinity_is_softplus_of_the_weighted_inner_product_minus_a_half():
    rng = np.random.default_rng(1)
    X, Y, g = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 5, 4)), rng.normal(size=(2, 6))
    layer = gm.WeightedInnerProductAffinity(4)
    out = layer((X.astype("float32"), Y.astype("float32"), g.astype("float32"))).numpy()
    A, b = (w.astype(np.float64) for w in layer.dense.get_weights())
    w = np.tanh(g @ A + b)
    expected = np.log1p(np.exp(np.einsum("bnd,bd,bmd->bnm", X, w, Y))) - 0.5
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)


def test_matching_accuracy_hamming_and_class_mean_by_hand():
    truth = np.zeros((2, 3, 4), np.float32)
    truth[0, [0, 1, 2], [1, 0, 3]] = 1
    truth[1, [0, 1], [0, 1]] = 1  # a pair with 2 keypoints (padded row 2)
    pred = np.zeros_like(truth)
    pred[0, [0, 1, 2], [1, 3, 0]] = 1  # 1 of 3 right
    pred[1, [0, 1], [0, 1]] = 1  # 2 of 2 right
    np.testing.assert_allclose(gm.matching_accuracy(truth, pred).numpy(), [1 / 3, 1.0], rtol=1e-6)
    np.testing.assert_array_equal(gm.hamming_loss(truth, pred).numpy(), [4.0, 0.0])
    per_class = gm.accuracy_per_class(np.concatenate([pred, pred]), np.concatenate([truth, truth]), [0, 1, 1, 1], 3)
    np.testing.assert_allclose(per_class[:2], [1 / 3, (1 + 1 / 3 + 1) / 3])
    assert np.isnan(per_class[2])


# ------------------------------------------------------------------------------------------------- model
def _tiny_split(rng, num_pairs=2, size=16, keypoints=(5, 7)):
    n_img = 2 * num_pairs
    k = max(keypoints)
    points = np.full((n_img, k, 2), np.nan, np.float32)
    for i in range(n_img):
        count = keypoints[i // 2 % 2]
        points[i, :count] = rng.uniform(1, size - 2, size=(count, 2))
    return fmt.KeypointImages(
        images=rng.integers(0, 255, size=(n_img, size, size, 3)).astype(np.uint8),
        points=points,
        outliers=np.full((n_img, 1, 2), 5.0, np.float32),
        classes=np.zeros(n_img, np.int32),
        pairs=np.arange(n_img, dtype=np.int32).reshape(-1, 2),
        class_names=["c"],
    )


def _batch(split, pairs):
    return next(iter(make_dataset(split, pairs, batch_size=len(pairs))))


def test_a_pairs_matching_does_not_depend_on_the_padding():
    split = _tiny_split(np.random.default_rng(2))
    model = gm.GraphMatchingNet({"width": 2, "kernel_size": 2, "solver_kicks": 0}, {"gradient": "identity"})
    small = fmt.assemble(split, seed=0)
    large = fmt.assemble(split, seed=0, max_nodes1=small.points1.shape[1] + 3, max_nodes2=small.points2.shape[1] + 2)
    x_small = model(_batch(split, small)[0]).numpy()
    x_large = model(_batch(split, large)[0]).numpy()
    n, m = small.points1.shape[1], small.points2.shape[1]
    np.testing.assert_array_equal(x_large[:, :n, :m], x_small)
    assert not x_large[:, n:].any() and not x_large[:, :, m:].any()
    for i in range(len(small)):  # a perfect matching of the real keypoints (n <= m: every source keypoint)
        rows = x_small[i, : small.num_nodes1[i], : small.num_nodes2[i]]
        assert rows.sum(axis=1).tolist() == [1.0] * int(small.num_nodes1[i]) and rows.sum(axis=0).max() <= 1


@pytest.mark.parametrize("gradient", ["identity", "blackbox"])
def test_identity_leaves_the_edge_affinity_untrained_and_bb_trains_it(gradient):
    """With the Hamming loss on x only, Identity passes no gradient to the pairwise costs (the paper's setup),
    so the edge affinity's weights get exactly zero gradient; BB (lambda = 80) re-solves with both parts."""
    split = _tiny_split(np.random.default_rng(3))
    pairs = fmt.assemble(split, seed=0)
    inputs, truth = _batch(split, pairs)
    model = gm.GraphMatchingNet({"width": 2, "kernel_size": 2}, {"gradient": gradient, "lam": 80.0})
    model(inputs)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(gm.hamming_loss(truth, model(inputs, training=True)))
    variables = model.edge_affinity.trainable_variables + model.vertex_affinity.trainable_variables
    grads = tape.gradient(loss, variables, unconnected_gradients="zero")
    edge_norm = sum(float(tf.reduce_sum(tf.abs(g))) for g in grads[:2])
    vertex_norm = sum(float(tf.reduce_sum(tf.abs(g))) for g in grads[2:])
    assert vertex_norm > 0
    assert (edge_norm == 0.0) if gradient == "identity" else (edge_norm > 0.0)


def test_informed_margin_raises_the_true_matchings_unary_costs_while_training():
    split = _tiny_split(np.random.default_rng(4))
    inputs, truth = _batch(split, fmt.assemble(split, seed=0))
    model = gm.GraphMatchingNet({"width": 2, "kernel_size": 2, "margin": "informed"}, {"alpha": 0.5})
    model(inputs)
    reference = model.costs(inputs)[0]
    seen = []
    solver_call = model.solver_layer.call
    model.solver_layer.call = lambda costs, training=None: seen.append(costs[0]) or solver_call(costs, training)
    try:
        model(inputs, training=False)  # before any training call: BatchNorm's moving statistics unchanged
        model(inputs, training=True)
    finally:
        model.solver_layer.__dict__.pop("call", None)
    unary, _ = model.costs(inputs, training=True)  # batch statistics, as in the training call
    rows = tf.sequence_mask(inputs["num_nodes1"], unary.shape[1], tf.float32)[:, :, None]
    cols = tf.sequence_mask(inputs["num_nodes2"], unary.shape[2], tf.float32)[:, None, :]
    expected = (unary.numpy() + 0.5 * (truth.numpy() - 0.5)) * (rows * cols).numpy()
    np.testing.assert_allclose(seen[1].numpy(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(seen[0].numpy(), reference.numpy(), rtol=1e-5, atol=1e-6)


def test_backbone_scaled_adam_scales_only_the_backbone():
    model = gm.GraphMatchingNet({"width": 2, "kernel_size": 2}, {"gradient": "identity"})
    split = _tiny_split(np.random.default_rng(5))
    inputs, _ = _batch(split, fmt.assemble(split, seed=0))
    model(inputs)
    backbone = {id(v) for v in model.backbone.trainable_variables}
    optimizer = gm.BackboneScaledAdam(learning_rate=0.1, backbone_factor=0.01)
    variables = model.trainable_variables
    before = [v.numpy().copy() for v in variables]
    optimizer.apply([tf.ones_like(v) for v in variables], variables)
    for v, old in zip(variables, before):
        step = float(np.abs(v.numpy() - old).max())
        assert step == pytest.approx(0.001 if id(v) in backbone else 0.1, rel=1e-3), v.path
    assert any(id(v) in backbone for v in variables) and any(id(v) not in backbone for v in variables)


def test_model_round_trips_through_keras_saving(tmp_path):
    split = _tiny_split(np.random.default_rng(6))
    inputs, _ = _batch(split, fmt.assemble(split, seed=0))
    model = gm.GraphMatchingNet({"width": 2, "kernel_size": 2}, {"gradient": "blackbox", "lam": 80.0})
    model.compile(gm.BackboneScaledAdam(1e-3))
    expected = model(inputs).numpy()
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(loaded(inputs).numpy(), expected)
    assert loaded.method.lam == 80.0 and loaded.task_config.width == 2


def test_bad_settings_name_the_argument():
    with pytest.raises(ValueError, match="`model.backbone` must be one of .* Received: backbone='resnet'"):
        gm.GraphMatchingConfig(backbone="resnet")
    with pytest.raises(ValueError, match="`model.margin` must be one of .* Received: margin='hard'"):
        gm.GraphMatchingConfig(margin="hard")
    with pytest.raises(ValueError, match="`model.backbone_weights` is for backbone vgg16"):
        gm.GraphMatchingConfig(backbone_weights="/x.h5")
    with pytest.raises(ValueError, match="`model.kernel_size` must be an integer >= 2. Received: kernel_size=1"):
        gm.GraphMatchingConfig(kernel_size=1)
    with pytest.raises(ValueError, match="`data.source` must be one of .* Received: source='coco'"):
        GraphMatchingData(source="coco")
    with pytest.raises(ValueError, match="`units` must be a positive integer. Received: units=0"):
        gm.SplineGraphConv(0)
