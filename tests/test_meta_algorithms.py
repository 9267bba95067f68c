"""FOMAML and Reptile meta-updates of the engine against updates computed by hand.

The reference recomputes every step with a plain (non-distributed) copy of the tiny model:
inner SGD/Adam over the support batches, then the algorithm's meta update, in numpy.
"""
import types

import numpy as np
import tensorflow as tf
import tf_keras

from metabert_tf import backbones
from metabert_tf import classifier
from metabert_tf.meta import fomaml
from metabert_tf.meta import learner as learner_lib
from metabert_tf.meta import reptile
from tests import meta_fixtures


class Reference:
  """Loss gradients of the tiny classifier at given weights, on a plain copy of the model."""

  def __init__(self, trainer, bert_config):
    self.model = classifier.Classifier(backbones.build_encoder(bert_config, dropout=False), 2,
                                       dropout_rate=0.0, pooling="pooler").build_all()
    _, self.vars = learner_lib.pair_variables(trainer.model, self.model)

  def grad(self, values, batch):
    for var, value in zip(self.vars, values):
      var.assign(value)
    with tf.GradientTape() as tape:
      logits = self.model(batch, training=False)
      loss = tf.reduce_mean(
          tf.nn.sparse_softmax_cross_entropy_with_logits(batch["label_ids"], logits))
    grads = tape.gradient(loss, self.vars, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return [tf.convert_to_tensor(g).numpy() for g in grads]


def _tasks(trainer, step=0):
  out = []
  for episode in (trainer.train_sampler.episode(i) for i in trainer.task_ids(step)):
    support = {k: v[0] for k, v in trainer._gather([episode.support]).items()}
    query = {k: v[0] for k, v in trainer._gather([episode.query]).items()}
    out.append((support, query))
  return out


def _batches(support, size):
  n = len(support["label_ids"])
  return [{k: v[i:i + size] for k, v in support.items()} for i in range(0, n, size)]


def _inner_sgd(ref, theta, support, lr, size):
  phi = [t.copy() for t in theta]
  for batch in _batches(support, size):
    phi = [p - lr * g for p, g in zip(phi, ref.grad(phi, batch))]
  return phi


# The absolute rounding noise of a computed gradient, relative to the largest gradient entry of
# its tensor: float32's 1.2e-7 (the LayerNorms stay float32) times a few accumulated roundings.
GRAD_NOISE = 1e-6


def _inner_adam(ref, theta, support, lr, size, passes, amplified=None):
  """torch.optim.Adam (Meta-BERT's inner optimiser), written out.

  With `amplified` (a list), also appends per weight what Adam can make of gradient noise: a
  step moves by lr x m_hat / (sqrt(v_hat) + eps), whose sensitivity to its gradient is
  ~ 1 / (sqrt(v_hat) + eps), and never by more than ~2 lr when the noise flips its sign; so
  |error| <= sum over steps of lr x min(2, 2 noise / (sqrt(v_hat) + eps))."""
  phi = [t.copy() for t in theta]
  m = [np.zeros_like(t) for t in theta]
  v = [np.zeros_like(t) for t in theta]
  bound = [np.zeros_like(t) for t in theta]
  step = 0
  for _ in range(passes):
    for batch in _batches(support, size):
      step += 1
      grads = ref.grad(phi, batch)
      m = [0.9 * a + 0.1 * g for a, g in zip(m, grads)]
      v = [0.999 * b + 0.001 * g * g for b, g in zip(v, grads)]
      scale = [np.sqrt(b / (1 - 0.999 ** step)) + 1e-8 for b in v]
      phi = [p - lr / (1 - 0.9 ** step) * a / d for p, a, d in zip(phi, m, scale)]
      bound = [e + lr * np.minimum(2.0, 2 * GRAD_NOISE * np.abs(g).max() / d)
               for e, g, d in zip(bound, grads, scale)]
  if amplified is not None:
    amplified.append(bound)
  return phi


def _check(actual, expected, theta, atol=2e-6, rtol=None):
  """Every weight within `atol` of the reference; with `rtol`, also the whole update
  (actual - theta) within `rtol` of the reference update in relative L2 norm."""
  assert len(actual) == len(expected) == len(theta) > 30
  worst = max(np.abs(a - e).max() for a, e in zip(actual, expected))
  assert worst < atol, worst
  if rtol is not None:
    delta = np.concatenate([(e - t).ravel() for e, t in zip(expected, theta)])
    error = np.concatenate([(a - e).ravel() for a, e in zip(actual, expected)])
    assert np.linalg.norm(error) < rtol * np.linalg.norm(delta), (
        np.linalg.norm(error) / np.linalg.norm(delta))


def _sgd_outer(algorithm):
  class WithSGD(algorithm.Algorithm):
    def outer_optimizer(self, num_steps):
      return tf_keras.optimizers.legacy.SGD(self.config.outer_update_lr)
  return types.SimpleNamespace(NAME=algorithm.NAME, Config=algorithm.Config, Algorithm=WithSGD)


def _setup(tmp_path, tiny_google_dir, algorithm, **overrides):
  # The references visit the support set in its drawn order on every pass.
  overrides.setdefault("shuffle_support", False)
  trainer = meta_fixtures.make_trainer(tiny_google_dir, tmp_path, algorithm, **overrides)
  reference = Reference(trainer, backbones.describe_backbone(tiny_google_dir).config)
  return trainer, reference, meta_fixtures.meta_values(trainer)


def test_fomaml_meta_gradient_is_query_gradient_at_adapted_weights(tmp_path, tiny_google_dir):
  trainer, ref, theta = _setup(tmp_path, tiny_google_dir, _sgd_outer(fomaml))
  grads = []
  for support, query in _tasks(trainer):
    phi = _inner_sgd(ref, theta, support, 0.05, 2)
    grads.append(ref.grad(phi, query))
  expected = [t - 0.01 * np.mean(gs, axis=0) for t, gs in zip(theta, zip(*grads))]
  trainer.train_step(0)
  _check(meta_fixtures.meta_values(trainer), expected, theta)


def test_fomaml_outer_adam_and_inner_adam(tmp_path, tiny_google_dir):
  trainer, ref, theta = _setup(tmp_path, tiny_google_dir, fomaml, inner_optimizer="adam",
                               inner_update_lr=1e-3, inner_update_step=2)
  grads = [ref.grad(_inner_adam(ref, theta, s, 1e-3, 2, passes=2), q) for s, q in _tasks(trainer)]
  g = [np.mean(gs, axis=0) for gs in zip(*grads)]
  # Keras Adam, first step: m = 0.1 g, v = 0.001 g^2, lr_t = lr sqrt(0.001) / 0.1, eps 1e-7.
  expected = [t - 0.01 * np.sqrt(0.001) / 0.1 * (0.1 * d) / (np.sqrt(0.001 * d * d) + 1e-7)
              for t, d in zip(theta, g)]
  trainer.train_step(0)
  _check(meta_fixtures.meta_values(trainer), expected, theta, atol=1e-4, rtol=1e-3)


def test_reptile_classic_moves_towards_adapted_weights(tmp_path, tiny_google_dir):
  trainer, ref, theta = _setup(tmp_path, tiny_google_dir, reptile, reptile_epsilon=0.5)
  phis = [_inner_sgd(ref, theta, s, 0.05, 2) for s, _ in _tasks(trainer)]
  expected = [t + 0.5 * np.mean([p - t for p in ps], axis=0) for t, ps in zip(theta, zip(*phis))]
  trainer.train_step(0)
  _check(meta_fixtures.meta_values(trainer), expected, theta)


def test_reptile_mailong25_variant_feeds_difference_to_adam(tmp_path, tiny_google_dir):
  trainer, ref, theta = _setup(tmp_path, tiny_google_dir, reptile, variant="adam")
  phis = [_inner_sgd(ref, theta, s, 0.05, 2) for s, _ in _tasks(trainer)]
  g = [np.mean([t - p for p in ps], axis=0) for t, ps in zip(theta, zip(*phis))]
  expected = [t - 0.01 * np.sqrt(0.001) / 0.1 * (0.1 * d) / (np.sqrt(0.001 * d * d) + 1e-7)
              for t, d in zip(theta, g)]
  trainer.train_step(0)
  _check(meta_fixtures.meta_values(trainer), expected, theta, atol=1e-4, rtol=1e-3)


def test_inner_adam_matches_torch_adam_exactly(tmp_path, tiny_google_dir):
  # Reptile with epsilon 1 sets the meta-weights to the mean of the adapted weights, so every
  # inner Adam step (its size, the bias corrections) shows in the result, not just its sign as
  # through an outer Adam's first step.
  #
  # The tolerance is what Adam can make of rounding noise, per weight (_inner_adam), not one
  # CPU's luck: Adam divides each gradient by its own running scale, so a weight whose gradient
  # is noise (the attention key biases: 0 in exact arithmetic, since softmax ignores a shift
  # shared by every key) moves by ~lr in a direction the noise picks, and oneDNN's kernels (AMX,
  # AVX-512, AVX2) round differently. Both sides run in float64 (Model Garden keeps its
  # LayerNorms in float32 under any policy), so the noise is small and weights with a real
  # gradient must match to ~1e-9 of their update.
  tf_keras.mixed_precision.set_global_policy("float64")
  try:
    trainer, ref, theta = _setup(tmp_path, tiny_google_dir, reptile, reptile_epsilon=1.0,
                                 inner_optimizer="adam", inner_update_lr=1e-3,
                                 inner_update_step=2)
    assert all(v.dtype == tf.float64 for v in trainer.meta_vars if "layer_norm" not in v.name)
    amplified = []
    phis = [_inner_adam(ref, theta, s, 1e-3, 2, passes=2, amplified=amplified)
            for s, _ in _tasks(trainer)]
    expected = [np.mean(ps, axis=0) for ps in zip(*phis)]
    bounds = [np.mean(bs, axis=0) for bs in zip(*amplified)]
    trainer.train_step(0)
    actual = meta_fixtures.meta_values(trainer)
    for a, e, bound, var in zip(actual, expected, bounds, trainer.meta_vars):
      # float32 weights (the LayerNorms) also round their value once per inner step.
      bound = bound + 1e-12 + (4 * np.finfo(np.float32).eps * np.abs(e)
                               if a.dtype == np.float32 else 0)
      assert np.all(np.abs(a - e) <= bound), (var.name, np.abs(a - e).max(), bound.max())
    _check(actual, expected, theta, atol=1e-6, rtol=1e-5)
  finally:
    tf_keras.mixed_precision.set_global_policy("float32")
