"""Metric-learning losses on L2-normalised embeddings, with cosine distance ``d = 1 - cos`` everywhere.

- :func:`batch_hard_triplet`: for each anchor, its hardest positive and hardest negative in the batch.
- :func:`semi_hard_triplet`: for each (anchor, positive), the closest negative farther than the positive
  (FaceNet's semi-hard mining), falling back to the hardest negative when none is semi-hard.
- :func:`contrastive`: the classic pairwise Siamese loss over all pairs of the batch.
- :func:`distillation`: cosine to the teacher's embedding, and :func:`relational` (match the teacher's pairwise
  similarity matrix).
"""
from __future__ import annotations

import tensorflow as tf


def cosine_distance_matrix(emb):
    return 1.0 - tf.matmul(emb, emb, transpose_b=True)


def _masks(labels):
    labels = tf.reshape(labels, [-1])
    same = tf.equal(labels[:, None], labels[None, :])
    eye = tf.eye(tf.shape(labels)[0], dtype=tf.bool)
    pos = tf.logical_and(same, tf.logical_not(eye))
    neg = tf.logical_not(same)
    return pos, neg


def batch_hard_triplet(emb, labels, margin=0.2):
    """Mean over anchors that have a positive of ``relu(max_p d(a,p) - min_n d(a,n) + margin)``."""
    d = cosine_distance_matrix(emb)
    pos, neg = _masks(labels)
    hardest_pos = tf.reduce_max(tf.where(pos, d, tf.fill(tf.shape(d), -1.0)), axis=1)
    hardest_neg = tf.reduce_min(tf.where(neg, d, tf.fill(tf.shape(d), 3.0)), axis=1)
    valid = tf.logical_and(tf.reduce_any(pos, 1), tf.reduce_any(neg, 1))
    losses = tf.nn.relu(hardest_pos - hardest_neg + margin)
    n = tf.maximum(tf.reduce_sum(tf.cast(valid, tf.float32)), 1.0)
    return tf.reduce_sum(tf.where(valid, losses, 0.0)) / n


def semi_hard_triplet(emb, labels, margin=0.2):
    """Mean over all (anchor, positive) pairs of ``relu(d(a,p) - d(a,n*) + margin)`` with semi-hard ``n*``."""
    d = cosine_distance_matrix(emb)
    pos, neg = _masks(labels)
    d_ap = d[:, :, None]                        # (a, p, 1)
    d_an = d[:, None, :]                        # (a, 1, n)
    neg3 = neg[:, None, :]
    semi = tf.logical_and(neg3, tf.logical_and(d_an > d_ap, d_an < d_ap + margin))
    big = tf.fill(tf.shape(semi), 3.0)
    semi_min = tf.reduce_min(tf.where(semi, tf.broadcast_to(d_an, tf.shape(semi)), big), axis=2)
    hardest = tf.reduce_min(tf.where(neg, d, tf.fill(tf.shape(d), 3.0)), axis=1)[:, None]
    has_semi = tf.reduce_any(semi, axis=2)
    chosen = tf.where(has_semi, semi_min, tf.broadcast_to(hardest, tf.shape(semi_min)))
    losses = tf.nn.relu(d - chosen + margin)
    valid = tf.logical_and(pos, tf.reduce_any(neg, 1, keepdims=True))
    n = tf.maximum(tf.reduce_sum(tf.cast(valid, tf.float32)), 1.0)
    return tf.reduce_sum(tf.where(valid, losses, 0.0)) / n


def contrastive(emb, labels, margin=0.5):
    """Pairwise Siamese loss: ``d^2`` for matched pairs, ``relu(margin - d)^2`` for mismatched, each class averaged."""
    d = cosine_distance_matrix(emb)
    pos, neg = _masks(labels)
    posf, negf = tf.cast(pos, tf.float32), tf.cast(neg, tf.float32)
    lp = tf.reduce_sum(posf * tf.square(d)) / tf.maximum(tf.reduce_sum(posf), 1.0)
    ln = tf.reduce_sum(negf * tf.square(tf.nn.relu(margin - d))) / tf.maximum(tf.reduce_sum(negf), 1.0)
    return lp + ln


def distillation(emb, teacher):
    """Mean ``1 - cos(student, teacher)``; the teacher embedding need not be normalised."""
    t = tf.math.l2_normalize(teacher, axis=1)
    return tf.reduce_mean(1.0 - tf.reduce_sum(emb * t, axis=1))


def relational(emb, teacher):
    """Mean squared difference between the student's and the teacher's cosine-similarity matrices."""
    t = tf.math.l2_normalize(teacher, axis=1)
    return tf.reduce_mean(tf.square(tf.matmul(emb, emb, transpose_b=True) - tf.matmul(t, t, transpose_b=True)))


METRIC_LOSSES = {"batch_hard": batch_hard_triplet, "semi_hard": semi_hard_triplet, "contrastive": contrastive}
