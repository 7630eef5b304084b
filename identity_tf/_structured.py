"""Costs made of several tensors, e.g. graph matching's ``(unary, pairwise, edges1, edges2)``.

A solver's costs are either one tensor or a *tuple* of tensors. In a tuple the floating-point tensors are the
cost parts (what the objective is linear in, what projections, noise and gradient methods act on, jointly) and
the integer tensors are fixed structure (graph edges, node counts) that passes through unchanged and gets no
gradient. The solution of such a solver is a tuple with one tensor per cost part, of the same shape (graph
matching: ``(x, z)`` for ``(unary, pairwise)``), so that the objective is ``sum_p <costs_p, solution_p>``.
A list is never structured here (a nested list of numbers is one array); Keras layers turn lists into tuples.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import tensorflow as tf


def is_structured(costs) -> bool:
    """True for a tuple of tensors (structured costs), False for one tensor or array-like."""
    return isinstance(costs, tuple)


def convert(costs):
    """``tf.convert_to_tensor`` on one tensor, or on every entry of a tuple."""
    if is_structured(costs):
        return tuple(tf.convert_to_tensor(c) for c in costs)
    return tf.convert_to_tensor(costs)


def split(costs) -> tuple[tuple[tf.Tensor, ...], Callable[[Sequence[tf.Tensor]], object]]:
    """Returns the floating-point parts of ``costs`` and a function that puts new parts back in their place.

    Example:
    >>> import tensorflow as tf
    >>> parts, rebuild = split((tf.ones([1, 2]), tf.constant([[0, 1]]), tf.zeros([1, 3])))
    >>> [p.shape.as_list() for p in parts], [t.dtype.name for t in rebuild([2 * p for p in parts])]
    ([[1, 2], [1, 3]], ['float32', 'int32', 'float32'])
    """
    costs = convert(costs)
    if not is_structured(costs):
        return (costs,), lambda parts: parts[0]
    positions = [i for i, c in enumerate(costs) if c.dtype.is_floating]
    if not positions:
        raise TypeError(
            f"Structured costs need at least one floating-point tensor. Received dtypes: {[c.dtype.name for c in costs]}"
        )

    def rebuild(parts):
        out = list(costs)
        for i, part in zip(positions, parts):
            out[i] = part
        return tuple(out)

    return tuple(costs[i] for i in positions), rebuild


def parts_of(solution) -> tuple:
    """The solution as a tuple of parts (one tensor -> a 1-tuple)."""
    return tuple(solution) if isinstance(solution, (tuple, list)) else (solution,)


def like(parts: Sequence, solution):
    """Packs ``parts`` like ``solution`` (one tensor or a tuple)."""
    return tuple(parts) if isinstance(solution, (tuple, list)) else parts[0]


def sample_parts(sample: Callable, parts: Sequence[tf.Tensor], leading=()) -> list[tf.Tensor]:
    """Noise for every part, drawn as *one* sample so that the parts get independent values.

    ``sample(shape)`` draws noise of a shape. One part: ``sample([*leading, *shape(part)])`` exactly. Several
    parts ``[B, ...]``: one ``[*leading, B, D]`` draw (``D`` = the per-example sizes summed) is split and
    reshaped to ``[*leading, *shape(part)]`` each.
    """
    leading = [int(s) if isinstance(s, int) else s for s in leading]
    if len(parts) == 1:
        return [sample(tf.concat([tf.cast(leading, tf.int32), tf.shape(parts[0])], axis=0))]
    shapes = [tf.shape(p) for p in parts]
    sizes = [tf.reduce_prod(s[1:]) for s in shapes]
    batch = shapes[0][:1]
    flat = sample(tf.concat([tf.cast(leading, tf.int32), batch, tf.reshape(tf.add_n(sizes), [1])], axis=0))
    pieces = tf.split(flat, tf.stack(sizes), axis=-1)
    # [*leading, B, D_p] -> [*leading, B, ...]
    return [
        tf.reshape(piece, tf.concat([tf.cast(leading, tf.int32), shape], axis=0))
        for piece, shape in zip(pieces, shapes)
    ]
