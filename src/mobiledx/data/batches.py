"""Batches of the cached images for Keras: a ``tf.data`` pipeline over row indices, shared by training and inference."""

from __future__ import annotations

import numpy as np


def make_dataset(
    images,
    rows: np.ndarray,
    targets: np.ndarray,
    sample_weights: np.ndarray | None,
    batch_size: int,
    shuffle_seed: int | None = None,
    augmenter=None,
    metadata: np.ndarray | None = None,
):
    """A batched ``tf.data`` pipeline over ``images[rows]``: gather → (augment) → float32, prefetched.

    Only row indices go through the graph; each batch's pixels are gathered from ``images`` (an
    array, or the memory-mapped image cache: :class:`mobiledx.data.cache.MappedImages` or
    ``ImageStack``) when the batch is made, so memory is bounded by the batches in flight, not by
    the dataset. With ``metadata`` (one row per entry of ``rows``) the inputs are
    ``{"image": pixels, "metadata": features}``.
    """
    import tensorflow as tf

    size = images.shape[1:]
    columns = [rows.astype(np.int64), targets.astype(np.float32)]
    if sample_weights is not None:
        columns.append(sample_weights.astype(np.float32))
    if metadata is not None:
        columns.append(metadata.astype(np.float32))
    dataset = tf.data.Dataset.from_tensor_slices(tuple(columns))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(rows), seed=shuffle_seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)

    def gather(batch_rows):
        pixels = tf.numpy_function(lambda r: images[r], [batch_rows], tf.uint8, stateful=False)
        pixels = tf.cast(tf.ensure_shape(pixels, (None, *size)), tf.float32)
        if augmenter is not None:
            pixels = augmenter(pixels, training=True)
        return pixels

    def to_inputs(batch_rows, *rest):
        if metadata is None:
            return (gather(batch_rows), *rest)
        *rest, features = rest
        return ({"image": gather(batch_rows), "metadata": features}, *rest)

    dataset = dataset.map(to_inputs, num_parallel_calls=tf.data.AUTOTUNE)
    # Under tf.distribute the pipeline is sharded by element (batch), the only policy that works for
    # an in-memory source: every worker runs the same seeded pipeline and keeps its share of each batch.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)
