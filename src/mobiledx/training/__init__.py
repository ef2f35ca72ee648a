"""Training a classifier: the loop (:mod:`.loop`), its losses and learning-rate schedules, BatchNorm
recalibration, crash-safe resume, ``tf.distribute`` and the memory check that runs before it all.

Inference (loading a model, predicting) lives in :mod:`mobiledx.models.inference`, so that evaluation and
export never depend on training code.
"""
