"""Proto-BERT, MT-BERT and ProtoMAML (FOMAML and Reptile with a per-task prototype head) on a
tiny BERT, against updates computed by hand on a plain copy of the model."""
import numpy as np
import pytest
import tensorflow as tf

from metabert_tf import backbones
from metabert_tf import classifier
from metabert_tf.errors import ConfigError
from metabert_tf.meta import algorithms
from metabert_tf.meta import base
from metabert_tf.meta import episodes
from metabert_tf.meta import fomaml
from metabert_tf.meta import learner as learner_lib
from metabert_tf.meta import mt_bert
from metabert_tf.meta import protonet
from metabert_tf.meta import reptile
from tests import meta_fixtures
from tests.test_meta_algorithms import _batches
from tests.test_meta_algorithms import _check
from tests.test_meta_algorithms import _sgd_outer
from tests.test_meta_algorithms import _tasks

_SHAPE = dict(episodes=episodes.EpisodeConfig(num_support=4, num_query=2), shuffle_support=False)


class ProtoReference:
  """The tiny classifier with a prototype head, as plain variables: rows from a support set,
  and loss gradients at given (encoder weights, rows)."""

  def __init__(self, trainer, model_dir):
    config = backbones.describe_backbone(model_dir).config
    self.model = base.prototype_model(backbones.build_encoder(config, dropout=False), 2,
                                      "pooler", 0.0)
    _, self.vars = learner_lib.pair_variables(trainer.model, self.model)
    self.rows = self.model.head.class_rows

  def _set(self, theta, rows=None):
    for var, value in zip(self.vars, theta):
      var.assign(value)
    if rows is not None:
      self.rows.assign(rows)

  def class_means(self, theta, support):
    self._set(theta)
    pooled = self.model.encode(support)[0].numpy()
    return np.stack([pooled[support["label_ids"] == c].mean(0) for c in range(2)])

  def rows_from(self, theta, support, rows_grad=None):
    """Rows [2 mu | -|mu|^2] (written out), and J_rows(theta)^T rows_grad."""
    self._set(theta)
    with tf.GradientTape() as tape:
      pooled = self.model.encode(support)[0]
      labels = support["label_ids"]
      means = tf.stack([tf.reduce_mean(tf.boolean_mask(pooled, labels == c), 0)
                        for c in range(2)])
      rows = tf.concat([2 * means, -tf.reduce_sum(means * means, 1, keepdims=True)], 1)
    if rows_grad is None:
      return rows.numpy(), None
    back = tape.gradient(rows, self.vars, output_gradients=tf.constant(rows_grad),
                         unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return rows.numpy(), [tf.convert_to_tensor(g).numpy() for g in back]

  def grad(self, theta, rows, batch):
    """(grads of the encoder weights, grad of the rows) of the cross-entropy on `batch`."""
    self._set(theta, rows)
    with tf.GradientTape() as tape:
      tape.watch(self.rows)
      logits = self.model(batch, training=False)
      loss = tf.reduce_mean(
          tf.nn.sparse_softmax_cross_entropy_with_logits(batch["label_ids"], logits))
    grads = tape.gradient(loss, self.vars + [self.rows],
                          unconnected_gradients=tf.UnconnectedGradients.ZERO)
    grads = [tf.convert_to_tensor(g).numpy() for g in grads]
    return grads[:-1], grads[-1]


def _setup(tmp_path, model_dir, algorithm, **overrides):
  trainer = meta_fixtures.make_trainer(model_dir, tmp_path, algorithm, **{**_SHAPE, **overrides})
  return trainer, ProtoReference(trainer, model_dir), meta_fixtures.meta_values(trainer)


def _adapt(ref, theta, rows, support, lr, size):
  """Inner SGD over the support batches, on the encoder and the rows alike."""
  phi = [t.copy() for t in theta]
  for batch in _batches(support, size):
    grads, rows_grad = ref.grad(phi, rows, batch)
    phi = [p - lr * g for p, g in zip(phi, grads)]
    rows = rows - lr * rows_grad
  return phi, rows


def test_the_prototype_head_is_the_nearest_class_mean(tmp_path, tiny_google_dir):
  trainer, ref, theta = _setup(tmp_path, tiny_google_dir, protonet)
  support, query = _tasks(trainer)[0]
  means = ref.class_means(theta, support)
  ref._set(theta, ref.rows_from(theta, support)[0])
  logits = ref.model(query).numpy()
  pooled = ref.model.encode(query)[0].numpy()
  distances = ((pooled[:, None, :] - means[None]) ** 2).sum(-1)
  # logits_c = |p|^2 - |p - mu_c|^2: the same softmax as minus the squared distances
  np.testing.assert_allclose(logits - (pooled ** 2).sum(1, keepdims=True), -distances,
                             atol=1e-4)


def test_proto_bert_gradient_differentiates_through_the_prototypes(tmp_path, tiny_google_dir):
  trainer, ref, theta = _setup(tmp_path, tiny_google_dir, protonet)
  support, query = _tasks(trainer)[0]
  task = tf.nest.map_structure(tf.constant, dict(
      support=support, query=query, num_classes=np.int32(2)))
  shares, loss = trainer.algorithm.task_step(trainer.inner, task, trainer.meta_vars)
  # By hand: L(theta) = CE of -|p(q) - mu(theta)|^2, the prototypes a function of theta.
  ref._set(theta)
  with tf.GradientTape() as tape:
    pooled = ref.model.encode(support)[0]
    means = tf.stack([tf.reduce_mean(tf.boolean_mask(pooled, support["label_ids"] == c), 0)
                      for c in range(2)])
    q = ref.model.encode(query)[0]
    logits = -tf.reduce_sum((q[:, None, :] - means[None]) ** 2, -1)
    expected_loss = tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(query["label_ids"], logits))
  expected = tape.gradient(expected_loss, ref.vars,
                           unconnected_gradients=tf.UnconnectedGradients.ZERO)
  assert np.isclose(float(loss), float(expected_loss), rtol=1e-5)
  _check([s.numpy() for s in shares], [tf.convert_to_tensor(g).numpy() for g in expected],
         [np.zeros_like(t) for t in theta], atol=1e-5)
  assert max(np.abs(s.numpy()).max() for s in shares) > 1e-4
  # The meta-test classifies the query by the support set's nearest class mean.
  predicted = trainer.algorithm.adapt_for_test(trainer.inner, task, trainer.meta_vars)
  np.testing.assert_array_equal(predicted.numpy().argmax(-1), logits.numpy().argmax(-1))


def test_proto_fomaml_meta_gradient_reaches_theta_through_the_head(tmp_path, tiny_google_dir):
  trainer, ref, theta = _setup(tmp_path, tiny_google_dir, _sgd_outer(fomaml), head="prototypes")
  grads = []
  for support, query in _tasks(trainer):
    rows, _ = ref.rows_from(theta, support)
    phi, adapted_rows = _adapt(ref, theta, rows, support, 0.05, 2)
    g_theta, g_rows = ref.grad(phi, adapted_rows, query)
    _, back = ref.rows_from(theta, support, g_rows)  # first order: dphi/drows_0 = I
    grads.append([a + b for a, b in zip(g_theta, back)])
  expected = [t - 0.01 * np.mean(gs, axis=0) for t, gs in zip(theta, zip(*grads))]
  trainer.train_step(0)
  _check(meta_fixtures.meta_values(trainer), expected, theta)
  # without the path through the rows the update differs
  assert max(np.abs(b).max() for b in back) > 1e-5


def test_proto_reptile_moves_the_encoder_towards_its_adapted_weights(tmp_path, tiny_google_dir):
  trainer, ref, theta = _setup(tmp_path, tiny_google_dir, reptile, head="prototypes",
                               reptile_epsilon=0.5)
  phis = [_adapt(ref, theta, ref.rows_from(theta, s)[0], s, 0.05, 2)[0]
          for s, _ in _tasks(trainer)]
  expected = [t + 0.5 * np.mean([p - t for p in ps], axis=0) for t, ps in zip(theta, zip(*phis))]
  trainer.train_step(0)
  _check(meta_fixtures.meta_values(trainer), expected, theta)


def test_mt_bert_trains_each_source_on_its_own_rows(tmp_path, tiny_google_dir):
  trainer = meta_fixtures.make_trainer(tiny_google_dir, tmp_path, mt_bert, **_SHAPE)
  ep = trainer.train_sampler.episode(0)
  # The task's classes are run labels [1, 0]: task class 0 is the run's label 1.
  task = trainer.make_tasks([episodes.Episode(ep.domain, ep.support, ep.query, np.array([1, 0]))],
                            1, [(13, 0, 0)], [1.0])
  task = tf.nest.map_structure(lambda x: tf.constant(x[0]), task)
  shares, loss = trainer.algorithm.task_step(trainer.inner, task, trainer.meta_vars)
  reference = meta_fixtures.make_trainer(tiny_google_dir, tmp_path / "ref", mt_bert, **_SHAPE)
  model = reference.model  # the same initial weights (seeded), a plain forward
  with tf.GradientTape() as tape:
    logits, labels = [], []
    for ids in (ep.support, ep.query):
      batch = {k: tf.constant(v[0]) for k, v in reference._gather([ids]).items()}
      logits.append(model(batch, training=False))
      labels.append(batch["label_ids"])  # run-wide labels, over every run label's logit
    expected_loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
        tf.concat(labels, 0), tf.concat(logits, 0)))
  expected = tape.gradient(expected_loss, reference.meta_vars)
  assert np.isclose(float(loss), float(expected_loss), rtol=1e-5)
  _check([s.numpy() for s in shares], [tf.convert_to_tensor(g).numpy() for g in expected],
         meta_fixtures.meta_values(trainer), atol=1e-5)
  assert trainer.model.head.kernel.shape[-1] == len(meta_fixtures.LABELS)


def test_registry_of_the_benchmark_learners():
  for name in ("proto_fomaml", "proto_reptile", "proto_bert", "mt_bert"):
    entry = algorithms.get(name)
    assert entry.by_sources and entry.engine_defaults["num_query"] == 10
  assert algorithms.make_config("proto_fomaml").head == "prototypes"
  assert algorithms.make_config("fomaml").head == "dense"
  assert set(algorithms.reading("learning_rate")) == {
      "leopard", "smlmt", "hybrid_smlmt", "proto_bert", "mt_bert"}
  with pytest.raises(ConfigError, match="head"):
    fomaml.Algorithm(fomaml.Config(head="cosine"))


def test_prototype_rows_helper():
  means = tf.constant([[1.0, 2.0], [0.0, -1.0]])
  np.testing.assert_allclose(classifier.prototype_rows(means).numpy(),
                             [[2.0, 4.0, -5.0], [0.0, -2.0, -1.0]])
