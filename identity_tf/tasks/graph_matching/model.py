"""Deep graph matching (paper 4.2 / B.2, BB-GM of Rolinek et al. 2020): keypoint features -> graph net -> costs.

The architecture of BB-GM: backbone features sampled bilinearly at the keypoints (VGG16's relu4_2 map for the
node part, relu5_1 for the edge part, each L2-normalised), concatenated; two spline graph convolutions on the
directed Delaunay graph with Cartesian edge attributes (``x + 0.1 * SConv(x)``, shared by both images); a global
feature of each image (max-pooled last backbone stage) concatenated into ``g``; affinities
``softplus(X diag(tanh(A g)) Y^T) - 0.5`` for nodes (node features) and for edges (edge features
``x_source - x_target``), with separate ``A``; unary costs ``-node affinity``, pairwise ``-0.5 * edge affinity``;
graph matching through the method's gradient; Hamming loss on the node matching.

Example:
>>> import numpy as np
>>> x = np.zeros([1, 2, 3, 1], "float32"); x[0, :, :, 0] = [[0, 1, 2], [3, 4, 5]]
>>> sample_features(x, np.array([[[0.5, 0.5], [0.0, 0.0]]], "float32")).numpy()[..., 0]  # image units
array([[2.5, 0. ]], dtype=float32)
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from identity_tf import noise as noise_lib
from identity_tf import solvers
from identity_tf.method import MethodConfig, margin_layer, projection_layer, selection_layer
from identity_tf.tasks.model_base import TaskModel

BACKBONES = ("small", "vgg16")
MARGINS = ("noise", "informed")
#: Variable paths of the backbones' layers: the small CNN's (``backbone_...``) and Keras' VGG16 (``block...``).
BACKBONE_PREFIXES = ("backbone_", "block")


@dataclasses.dataclass
class GraphMatchingConfig:
    """Model settings of the graph-matching task.

    Attributes:
        backbone: "small" (a 5-stage CNN that trains on a CPU; default) or "vgg16" (``keras.applications.VGG16``,
            relu4_2 = ``block4_conv2``, relu5_1 = ``block5_conv1``; BB-GM used VGG16 with batch norm, which Keras
            does not ship).
        backbone_weights: For "vgg16": None (random initialisation, offline) or the path of a local ImageNet
            weights file Keras' ``VGG16(weights=path)`` accepts (``..._notop.h5``).
        width: Channels of the first stage of the "small" backbone (doubled at stages 2 and 4).
        kernel_size: B-spline kernel size per dimension of the graph convolutions (SplineConv's 5).
        margin: "noise" (the noise-induced margin, paper 3.6) or "informed" (Rolinek et al.: the true
            matching's unary costs raised by ``method.alpha``, i.e. ``unary + alpha (x* - 1/2)``), both of size
            ``method.alpha`` and only while training.
        partial: Let keypoints stay unmatched at cost 0 (the LPMP setting); default perfect matching.
        solver_kicks: Random kicks of the graph-matching local search.
        backbone_lr_factor: Learning-rate factor of the backbone's weights (the paper: 0.01).
    """

    backbone: str = "small"
    backbone_weights: str | None = None
    width: int = 32
    kernel_size: int = 5
    margin: str = "noise"
    partial: bool = False
    solver_kicks: int = 20
    backbone_lr_factor: float = 0.01

    def __post_init__(self):
        if self.backbone not in BACKBONES:
            raise ValueError(f"`model.backbone` must be one of {BACKBONES}. Received: backbone={self.backbone!r}")
        if self.margin not in MARGINS:
            raise ValueError(f"`model.margin` must be one of {MARGINS}. Received: margin={self.margin!r}")
        for name, low in (("width", 1), ("kernel_size", 2), ("solver_kicks", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"`model.{name}` must be an integer >= {low}. Received: {name}={value!r}")
        if not self.backbone_lr_factor > 0:
            raise ValueError(
                f"`model.backbone_lr_factor` must be > 0. Received: backbone_lr_factor={self.backbone_lr_factor!r}"
            )
        if self.backbone_weights is not None and self.backbone != "vgg16":
            raise ValueError(
                "`model.backbone_weights` is for backbone vgg16. "
                f"Received: backbone={self.backbone!r}, backbone_weights={self.backbone_weights!r}"
            )


# ---------------------------------------------------------------------------------------------- pieces
def sample_features(feature_map, points):
    """Bilinear samples ``[B, n, C]`` of ``feature_map [B, h, w, C]`` at ``points [B, n, 2]`` in image units.

    A point ``(x, y)`` in image units (pixels / image side, pixel centres aligned) is at feature coordinates
    ``(x w - 0.5, y h - 0.5)``, clamped to the map (edge values repeated), so a 0/1-padded point is harmless.
    """
    feature_map = tf.convert_to_tensor(feature_map)
    points = tf.cast(points, feature_map.dtype)
    shape = tf.shape(feature_map)
    h, w = shape[1], shape[2]
    u = tf.clip_by_value(points[..., 0] * tf.cast(w, points.dtype) - 0.5, 0.0, tf.cast(w - 1, points.dtype))
    v = tf.clip_by_value(points[..., 1] * tf.cast(h, points.dtype) - 0.5, 0.0, tf.cast(h - 1, points.dtype))
    u0 = tf.minimum(tf.cast(tf.floor(u), tf.int32), w - 2)
    v0 = tf.minimum(tf.cast(tf.floor(v), tf.int32), h - 2)
    u0, v0 = tf.maximum(u0, 0), tf.maximum(v0, 0)
    fu, fv = u - tf.cast(u0, u.dtype), v - tf.cast(v0, v.dtype)

    def at(rows, cols):
        rows, cols = tf.minimum(rows, h - 1), tf.minimum(cols, w - 1)
        return tf.gather_nd(feature_map, tf.stack([rows, cols], axis=-1), batch_dims=1)

    top = at(v0, u0) * (1 - fu)[..., None] + at(v0, u0 + 1) * fu[..., None]
    bottom = at(v0 + 1, u0) * (1 - fu)[..., None] + at(v0 + 1, u0 + 1) * fu[..., None]
    return top * (1 - fv)[..., None] + bottom * fv[..., None]


def cartesian_attributes(points, edges):
    """Edge attributes ``[B, E, 2]`` in [0, 1]: ``(p_source - p_target) / (2 max |.|) + 1/2`` per graph (PyG's
    normalised ``Cartesian``; the max over the graph's real edges); 0.5 on padding rows."""
    points = tf.convert_to_tensor(points)
    edges = tf.cast(edges, tf.int32)
    valid = edges[..., 0] >= 0
    safe = tf.maximum(edges, 0)
    source = tf.gather(points, safe[..., 0], batch_dims=1)
    target = tf.gather(points, safe[..., 1], batch_dims=1)
    delta = tf.where(valid[..., None], source - target, tf.zeros_like(source))
    scale = tf.reduce_max(tf.abs(delta), axis=[1, 2], keepdims=True)
    return delta / (2.0 * tf.maximum(scale, 1e-12)) + 0.5


@keras.saving.register_keras_serializable(package="identity_tf.graph_matching")
class SplineGraphConv(keras.layers.Layer):
    """Spline-based graph convolution (SplineConv, Fey et al. 2018; open B-splines of degree 1), max aggregation.

    ``out_t = max_{(s, t) in E} sum_k b_k(e_st) x_s W_k  +  x_t W_root + bias``: each directed edge ``(s, t)``
    carries a message from ``s`` to ``t``; its attribute ``e_st`` in ``[0, 1]^2`` selects a bilinear blend of the
    ``kernel_size^2`` weight matrices ``W_k`` (kernel ``k = i + kernel_size * j`` sits at
    ``(i, j) / (kernel_size - 1)``). A node without incoming edges aggregates 0 (PyG's convention). Padded edge
    rows (-1) carry nothing.

    Args:
        units: Output features.
        kernel_size: B-spline kernel size per dimension (>= 2).

    Call arguments:
        inputs: ``(x [B, N, C], edges [B, E, 2] int, attributes [B, E, 2])``.

    Example:
    >>> layer = SplineGraphConv(1, kernel_size=2)
    >>> x = np.array([[[1.0], [2.0]]], "float32"); edges = np.array([[[0, 1]]], "int32")
    >>> out = layer((x, edges, np.array([[[0.0, 0.0]]], "float32")))  # builds the weights
    >>> layer.set_weights([np.array([[[3.0]], [[0.0]], [[0.0]], [[0.0]]]), np.array([[10.0]]), np.zeros(1)])
    >>> layer((x, edges, np.array([[[0.0, 0.0]]], "float32"))).numpy()[..., 0]  # node 1: 3 * x_0 + 10 * x_1
    array([[10., 23.]], dtype=float32)
    """

    def __init__(self, units: int, kernel_size: int = 5, **kwargs):
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, int) or units < 1:
            raise ValueError(f"Argument `units` must be a positive integer. Received: units={units!r}")
        if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 2:
            raise ValueError(f"Argument `kernel_size` must be an integer >= 2. Received: kernel_size={kernel_size!r}")
        self.units, self.kernel_size = units, kernel_size

    def build(self, input_shape):
        channels = int(input_shape[0][-1])
        k2 = self.kernel_size**2
        self.kernel = self.add_weight(name="kernel", shape=(k2, channels, self.units), initializer="glorot_uniform")
        self.root = self.add_weight(name="root", shape=(channels, self.units), initializer="glorot_uniform")
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")

    def basis(self, attributes):
        """``[B, E, kernel_size^2]`` B-spline weights of the edge attributes (4 non-zero, summing to 1)."""
        K = self.kernel_size
        v = tf.clip_by_value(tf.cast(attributes, self.compute_dtype), 0.0, 1.0) * (K - 1)
        low = tf.minimum(tf.floor(v), K - 2)
        frac = v - low
        low = tf.cast(low, tf.int32)
        out = 0.0
        for a in (0, 1):
            for b in (0, 1):
                weight = (frac[..., 0] if a else 1 - frac[..., 0]) * (frac[..., 1] if b else 1 - frac[..., 1])
                index = (low[..., 0] + a) + K * (low[..., 1] + b)
                out += weight[..., None] * tf.one_hot(index, K * K, dtype=weight.dtype)
        return out

    def call(self, inputs):
        x, edges, attributes = inputs
        x = tf.convert_to_tensor(x)
        edges = tf.cast(edges, tf.int32)
        batch, nodes = tf.shape(x)[0], tf.shape(x)[1]
        valid = edges[..., 0] >= 0
        safe = tf.maximum(edges, 0)
        source = tf.gather(x, safe[..., 0], batch_dims=1)  # [B, E, C]
        blend = tf.einsum("bek,bec->bekc", self.basis(attributes), source)
        channels = self.kernel.shape[1]
        messages = tf.reshape(blend, [batch, -1, self.kernel.shape[0] * channels]) @ tf.reshape(
            self.kernel, [-1, self.units]
        )  # [B, E, units]
        segments = tf.range(batch)[:, None] * nodes + safe[..., 1]
        segments = tf.where(valid, segments, batch * nodes)  # padding rows: a dummy segment
        pooled = tf.math.unsorted_segment_max(
            tf.reshape(messages, [-1, self.units]), tf.reshape(segments, [-1]), batch * nodes + 1
        )[:-1]
        has_message = tf.math.unsorted_segment_max(
            tf.reshape(tf.cast(valid, x.dtype), [-1]), tf.reshape(segments, [-1]), batch * nodes + 1
        )[:-1]
        pooled = tf.where(has_message[:, None] > 0, pooled, tf.zeros_like(pooled))
        pooled = tf.reshape(pooled, [batch, nodes, self.units])
        return pooled + x @ self.root + self.bias

    def compute_output_shape(self, input_shape):
        return (*tuple(input_shape[0])[:-1], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "kernel_size": self.kernel_size}


@keras.saving.register_keras_serializable(package="identity_tf.graph_matching")
class WeightedInnerProductAffinity(keras.layers.Layer):
    """BB-GM's affinity ``softplus(X diag(tanh(A g)) Y^T) - 0.5`` (``A``: a dense layer on the global feature).

    Call arguments:
        inputs: ``(X [B, n, D], Y [B, m, D], g [B, G])``. Returns ``[B, n, m]``.
    """

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.dense = keras.layers.Dense(units, name="A")

    def build(self, input_shape):
        self.dense.build(input_shape[2])

    def call(self, inputs):
        X, Y, g = inputs
        weights = tf.tanh(self.dense(g))  # [B, D]
        return tf.nn.softplus(tf.einsum("bnd,bd,bmd->bnm", X, weights, Y)) - 0.5

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def small_backbone(width: int) -> keras.Model:
    """A 5-stage CNN with VGG's strides: ``(node map at stride 8, edge map at stride 16, global [B, 4 width])``.

    Batch norm is synchronized across replicas (one replica: plain batch norm), so that every worker of a
    multi-worker run keeps the same moving statistics (unsynchronized, they diverged between workers).
    """
    inputs = keras.Input((None, None, 3))
    x = inputs
    outputs = []
    for stage, (filters, pool) in enumerate(
        ((width, 1), (2 * width, 1), (2 * width, 1), (4 * width, 0), (4 * width, 0))
    ):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"backbone_conv{stage + 1}")(x)
        x = keras.layers.BatchNormalization(synchronized=True, name=f"backbone_bn{stage + 1}")(
            x
        )  # same stats on every replica
        x = keras.layers.ReLU(name=f"backbone_relu{stage + 1}")(x)
        if stage >= 3:
            outputs.append(x)
        if pool or stage == 3:
            x = keras.layers.MaxPooling2D(2, name=f"backbone_pool{stage + 1}")(x)
    final = keras.layers.Conv2D(4 * width, 3, padding="same", activation="relu", name="backbone_final_conv")(outputs[1])
    outputs.append(keras.layers.GlobalMaxPooling2D(name="backbone_global")(final))
    return keras.Model(inputs, outputs, name="backbone")


def vgg16_backbone(weights: str | None) -> keras.Model:
    """``keras.applications.VGG16`` (``weights`` None or a local file): relu4_2, relu5_1 and the max-pooled end."""
    vgg = keras.applications.VGG16(include_top=False, weights=weights, input_shape=(None, None, 3))
    outputs = [vgg.get_layer("block4_conv2").output, vgg.get_layer("block5_conv1").output]
    outputs.append(keras.layers.GlobalMaxPooling2D(name="global")(vgg.output))
    return keras.Model(vgg.input, outputs, name="backbone")


def _l2_normalise(x):
    return x / tf.maximum(tf.norm(x, axis=-1, keepdims=True), 1e-12)


def _edge_features(x, edges):
    safe = tf.maximum(tf.cast(edges, tf.int32), 0)
    features = tf.gather(x, safe[..., 0], batch_dims=1) - tf.gather(x, safe[..., 1], batch_dims=1)
    return tf.where((edges[..., 0] >= 0)[..., None], features, tf.zeros_like(features))


# ---------------------------------------------------------------------------------------------- model
@keras.saving.register_keras_serializable(package="identity_tf")
class GraphMatchingNet(TaskModel):
    """BB-GM's network (see the module): image pair + keypoints + graphs -> costs -> GraphMatching -> ``x``.

    Call arguments:
        inputs: The dict of :data:`identity_tf.datasets.graph_matching.INPUT_KEYS` (``perm``, the true matching,
            is optional and only read by the informed margin while training).

    Returns:
        The node matching ``x [B, n, m]`` (0/1; padded rows and columns 0).
    """

    config_class = GraphMatchingConfig

    def __init__(
        self,
        config: GraphMatchingConfig | dict | None = None,
        method: MethodConfig | dict | None = None,
        seed=0,
        **kwargs,
    ):
        super().__init__(config, method, seed, **kwargs)
        c = self.task_config
        self.backbone = small_backbone(c.width) if c.backbone == "small" else vgg16_backbone(c.backbone_weights)
        dim = 8 * c.width if c.backbone == "small" else 1024
        self.convs = [SplineGraphConv(dim, c.kernel_size, name=f"spline_conv{i + 1}") for i in range(2)]
        self.vertex_affinity = WeightedInnerProductAffinity(dim, name="vertex_affinity")
        self.edge_affinity = WeightedInnerProductAffinity(dim, name="edge_affinity")
        self.solver = solvers.GraphMatching(method="ils", partial=c.partial, num_kicks=c.solver_kicks, seed=seed)
        m = self.method
        self.margin = margin_layer(m, seed) if c.margin == "noise" else None
        self.projection = projection_layer(m, self.solver)
        self.solver_layer = selection_layer(m, self.solver, seed + 1)

    def node_features(self, maps, points, edges):
        """Keypoint features after the graph convolutions ``[B, n, D]`` from the backbone's two feature maps."""
        node_map, edge_map = maps
        x = tf.concat(
            [_l2_normalise(sample_features(node_map, points)), _l2_normalise(sample_features(edge_map, points))], -1
        )
        attributes = cartesian_attributes(points, edges)
        h = tf.nn.relu(self.convs[0]((x, edges, attributes)))
        h = self.convs[1]((h, edges, attributes))
        return x + 0.1 * h

    def costs(self, inputs, training=None):
        """``(unary [B, n, m], pairwise [B, E1, E2])``: 0 on padding."""
        inputs = self._structure(inputs)
        batch = tf.shape(inputs["images1"])[0]
        images = tf.concat([inputs["images1"], inputs["images2"]], axis=0)  # one backbone pass for both sides
        node_map, edge_map, global_feature = self.backbone(images, training=training)
        first, second = (node_map[:batch], edge_map[:batch]), (node_map[batch:], edge_map[batch:])
        x1 = self.node_features(first, inputs["points1"], inputs["edges1"])
        x2 = self.node_features(second, inputs["points2"], inputs["edges2"])
        g = tf.concat([global_feature[:batch], global_feature[batch:]], axis=-1)
        unary = -self.vertex_affinity((x1, x2, g))
        e1, e2 = _edge_features(x1, inputs["edges1"]), _edge_features(x2, inputs["edges2"])
        pairwise = -0.5 * self.edge_affinity((e1, e2, g))
        return self._mask(unary, pairwise, inputs)

    @staticmethod
    def _mask(unary, pairwise, inputs):
        n, m = tf.shape(unary)[1], tf.shape(unary)[2]
        rows = tf.sequence_mask(inputs["num_nodes1"], n, unary.dtype)
        cols = tf.sequence_mask(inputs["num_nodes2"], m, unary.dtype)
        valid1 = tf.cast(inputs["edges1"][..., 0] >= 0, unary.dtype)
        valid2 = tf.cast(inputs["edges2"][..., 0] >= 0, unary.dtype)
        return unary * rows[:, :, None] * cols[:, None, :], pairwise * valid1[:, :, None] * valid2[:, None, :]

    @staticmethod
    def _structure(inputs) -> dict:
        """``inputs`` with the graph structure as int32 (Keras' symbolic build passes every input as float)."""
        ints = ("edges1", "edges2", "num_nodes1", "num_nodes2")
        return {key: tf.cast(value, tf.int32) if key in ints else value for key, value in inputs.items()}

    def call(self, inputs, training=None):
        inputs = self._structure(inputs)
        unary, pairwise = self.costs(inputs, training=training)
        alpha = self.method.alpha
        if alpha > 0 and self.task_config.margin == "informed" and training and "perm" in inputs:
            unary = noise_lib.informed_margin(unary, inputs["perm"], alpha)
        structure = tuple(inputs[k] for k in ("edges1", "edges2", "num_nodes1", "num_nodes2"))
        if self.margin is not None:
            unary, pairwise = self.margin((unary, pairwise), training=training)
        unary, pairwise = self._mask(unary, pairwise, inputs)
        costs = (unary, pairwise, *structure)
        if self.projection is not None:
            costs = self.projection(costs)
        x, _ = self.solver_layer(costs, training=training)
        return x

    def default_loss(self):
        """:func:`hamming_loss` of the node matching."""
        return hamming_loss

    def default_metrics(self):
        return [matching_accuracy]


@keras.saving.register_keras_serializable(package="identity_tf.graph_matching")
def hamming_loss(y_true, y_pred):
    """``sum |x - x*|`` over the node matching, per pair (BB-GM's Hamming loss: summed entries, batch mean)."""
    y_pred = tf.convert_to_tensor(y_pred)
    return tf.reduce_sum(tf.abs(y_pred - tf.cast(y_true, y_pred.dtype)), axis=[1, 2])


@keras.saving.register_keras_serializable(package="identity_tf.graph_matching")
def matching_accuracy(y_true, y_pred):
    """Matched true keypoints / true keypoints, per pair: ``<x, x*> / <x*, x*>``."""
    y_pred = tf.convert_to_tensor(y_pred)
    y_true = tf.cast(y_true, y_pred.dtype)
    return tf.reduce_sum(y_pred * y_true, axis=[1, 2]) / tf.maximum(tf.reduce_sum(y_true, axis=[1, 2]), 1.0)


def accuracy_per_class(x, x_true, classes, num_classes: int) -> np.ndarray:
    """Mean per-pair matching accuracy of each class ``[num_classes]`` (NaN for a class without pairs)."""
    x, x_true = np.asarray(x, np.float64), np.asarray(x_true, np.float64)
    per_pair = (x * x_true).sum(axis=(1, 2)) / np.maximum(x_true.sum(axis=(1, 2)), 1.0)
    classes = np.asarray(classes)
    return np.array([per_pair[classes == c].mean() if (classes == c).any() else np.nan for c in range(num_classes)])


def predict_matchings(model, split, pairs, batch_size: int, limit: int | None = None):
    """``(x, x*)`` ``[P, n, m]`` of the first ``limit`` pairs (all: None), the model called batch by batch."""
    from identity_tf.datasets import graph_matching as data_lib

    predicted, truths = [], []
    seen = 0
    for inputs, truth in data_lib.make_dataset(split, pairs, batch_size):
        predicted.append(keras.ops.convert_to_numpy(model(inputs, training=False)))
        truths.append(truth.numpy())
        seen += len(truth)
        if limit is not None and seen >= limit:
            break
    return np.concatenate(predicted)[:limit], np.concatenate(truths)[:limit]


@keras.saving.register_keras_serializable(package="identity_tf.graph_matching")
class BackboneScaledAdam(keras.optimizers.Adam):
    """Adam whose learning rate is multiplied by ``backbone_factor`` for the variables whose path starts with one
    of ``prefixes`` (the backbone's layers: the paper fine-tunes the VGG weights at 0.01 times the learning rate).

    Example:
    >>> import keras
    >>> a, b = keras.Variable([1.0], name="a"), keras.Variable([1.0], name="b")
    >>> opt = BackboneScaledAdam(learning_rate=0.1, backbone_factor=0.01, prefixes=("a",))
    >>> opt.apply([np.ones(1, "float32"), np.ones(1, "float32")], [a, b])
    >>> round(1 - float(a.numpy()[0]), 5), round(1 - float(b.numpy()[0]), 5)  # Adam's first step: the lr
    (0.001, 0.1)
    """

    def __init__(self, learning_rate=0.001, backbone_factor: float = 0.01, prefixes=BACKBONE_PREFIXES, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        if not backbone_factor > 0:
            raise ValueError(f"Argument `backbone_factor` must be > 0. Received: backbone_factor={backbone_factor!r}")
        self.backbone_factor = float(backbone_factor)
        self.prefixes = tuple(prefixes)

    def build(self, variables):
        super().build(variables)
        self._scaled = [any(v.path.startswith(p) for p in self.prefixes) for v in variables]

    def update_step(self, gradient, variable, learning_rate):
        if self._scaled[self._get_variable_index(variable)]:
            learning_rate = learning_rate * self.backbone_factor
        return super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        return {**super().get_config(), "backbone_factor": self.backbone_factor, "prefixes": list(self.prefixes)}
