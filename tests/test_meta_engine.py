"""The engine's building blocks: variable N without retracing, inner-step options, the last
partial meta-batch, per-pass support shuffling, meta-test exclusions, algorithm checkpoints."""
import dataclasses

import numpy as np
import tensorflow as tf

from metabert_tf import backbones
from metabert_tf.meta import episodes
from metabert_tf.meta import fomaml
from metabert_tf.meta import job as meta_job
from metabert_tf.meta import learner as learner_lib
from metabert_tf.meta import reptile
from tests import meta_fixtures
from tests import tiny_models
from tests.test_meta_algorithms import _batches
from tests.test_meta_algorithms import _check
from tests.test_meta_algorithms import _setup
from tests.test_meta_algorithms import _sgd_outer
from tests.test_meta_algorithms import _tasks


def test_masked_logits_give_the_loss_and_gradient_of_an_n_class_head():
  logits = tf.constant(np.random.default_rng(0).normal(size=(4, 5)), tf.float32)
  labels = tf.constant([0, 2, 1, 2])
  with tf.GradientTape(persistent=True) as tape:
    tape.watch(logits)
    masked = learner_lib.cross_entropy(labels, learner_lib.mask_logits(logits, 3))
    sliced = learner_lib.cross_entropy(labels, logits[:, :3])
  np.testing.assert_allclose(masked.numpy(), sliced.numpy(), rtol=1e-6)
  grad = tape.gradient(masked, logits).numpy()
  np.testing.assert_allclose(grad, tape.gradient(sliced, logits).numpy(), atol=1e-7)
  assert not grad[:, 3:].any()
  assert (learner_lib.mask_logits(logits, 2).numpy().argmax(-1) < 2).all()


class _VariableN:
  """Episodes of 2, 3 and 5 classes in turn over labels 0..4 (an SMLMT-like task stream)."""

  def __init__(self, labels, n_support=4, n_query=2):
    self.labels, self.n_support, self.n_query = labels, n_support, n_query

  def episode(self, index):
    rng = np.random.default_rng(index)
    classes = rng.permutation(5)[:(2, 3, 5)[index % 3]]
    pool = rng.permutation(np.flatnonzero(np.isin(self.labels, classes)))
    return episodes.Episode("a", pool[:self.n_support],
                            pool[self.n_support:self.n_support + self.n_query], classes)


def _five_label_trainer(tiny_google_dir, tmp_path, **overrides):
  features = meta_fixtures.toy_features(backbones.load_backbone(tiny_google_dir, dropout=False))
  features["label_ids"] = np.arange(len(features["label_ids"])) % 5
  trainer = meta_fixtures.make_trainer(
      tiny_google_dir, tmp_path / "five", _sgd_outer(fomaml), labels=list("vwxyz"),
      features=features, bucket=16, **overrides)
  trainer.train_sampler = trainer.test_sampler = _VariableN(features["label_ids"])
  return trainer


def test_tasks_of_2_3_and_5_classes_share_one_trace(tmp_path, tiny_google_dir):
  trainer = _five_label_trainer(tiny_google_dir, tmp_path, num_train_task=6, num_test_task=3)
  episode = trainer.train_sampler.episode(0)
  tasks = trainer.make_tasks([episode], 1, [(13, 0, 0)], [1.0])
  assert tasks["num_classes"].tolist() == [2]
  # Labels become positions in the task's classes.
  np.testing.assert_array_equal(
      tasks["support"]["label_ids"][0],
      [list(episode.classes).index(y) for y in trainer.features["label_ids"][episode.support]])
  head = [v for v in trainer.meta_vars if "classifier_head/kernel" in v.name][0]
  before = head.numpy().copy()
  trainer.train_step(0)  # tasks 0..1 of the epoch's order: N of 2, 3 or 5
  n_max = max(len(trainer.train_sampler.episode(i).classes) for i in trainer.task_ids(0))
  moved = np.abs(head.numpy() - before).max(0) > 0
  assert moved[:n_max].all() and not moved[n_max:].any()  # masked classes get no gradient
  for step in range(1, 3):
    trainer.train_step(step)
  assert trainer._meta_step.experimental_get_tracing_count() == 1
  assert 0.0 <= trainer.meta_test() <= 1.0
  assert trainer._adapt_and_predict.experimental_get_tracing_count() == 1


def test_inner_step_per_variable_rates_mask_clipping_and_example_weights(tmp_path,
                                                                         tiny_google_dir):
  trainer, ref, theta = _setup(tmp_path, tiny_google_dir, fomaml)
  support, _ = _tasks(trainer)[0]
  batch = {k: v[:2] for k, v in support.items()}
  n = len(theta)
  lrs = [0.01 * (1 + i % 3) for i in range(n)]
  mask = [i % 4 != 0 for i in range(n)]
  trainer.inner.reset(trainer.meta_vars)
  # Weights (1, 0): the loss of the first example alone.
  trainer.inner.step(batch, lrs, mask=mask, clip_norm=0.5, example_weights=[1.0, 0.0])
  grads = ref.grad(theta, {k: v[:1] for k, v in batch.items()})
  norm = np.sqrt(sum((g * g).sum() for g, keep in zip(grads, mask) if keep))
  scale = min(1.0, 0.5 / norm)
  assert scale < 1.0  # the clip is active
  expected = [t - lr * scale * g if keep else t
              for t, g, lr, keep in zip(theta, grads, lrs, mask)]
  _check([v.numpy() for v in trainer.inner.vars], expected, theta)


def test_last_partial_meta_batch_has_its_real_size(tmp_path, tiny_google_dir):
  trainer, ref, _ = _setup(tmp_path, tiny_google_dir, _sgd_outer(fomaml), num_train_task=5)
  assert trainer.steps_per_epoch == 3
  ids = [trainer.task_ids(s) for s in range(3)]
  assert [len(i) for i in ids] == [2, 2, 1] and sorted(sum(ids, [])) == list(range(5))
  trainer.train_step(0)
  trainer.train_step(1)
  theta = meta_fixtures.meta_values(trainer)
  (support, query), = _tasks(trainer, 2)
  phi = theta
  for batch in _batches(support, 2):
    phi = [p - 0.05 * g for p, g in zip(phi, ref.grad(phi, batch))]
  expected = [t - 0.01 * g for t, g in zip(theta, ref.grad(phi, query))]  # weight 1, not 1/2
  trainer.train_step(2)
  _check(meta_fixtures.meta_values(trainer), expected, theta)


def test_support_is_reshuffled_on_every_inner_pass(tmp_path, tiny_google_dir):
  trainer, ref, theta = _setup(tmp_path, tiny_google_dir, reptile, reptile_epsilon=1.0,
                               inner_update_step=3, shuffle_support=True)
  orders = [trainer.support_order((13, 0, j), 3, 4) for j in range(2)]
  for order in orders:
    assert all(sorted(row) == [0, 1, 2, 3] for row in order)
  assert len({tuple(row) for order in orders for row in order}) > 2
  phis = []
  for (support, _), order in zip(_tasks(trainer), orders):
    phi = theta
    for row in order:
      for batch in _batches({k: v[row] for k, v in support.items()}, 2):
        phi = [p - 0.05 * g for p, g in zip(phi, ref.grad(phi, batch))]
    phis.append(phi)
  trainer.train_step(0)
  _check(meta_fixtures.meta_values(trainer), [np.mean(ps, axis=0) for ps in zip(*phis)], theta)


def test_meta_test_never_draws_excluded_examples(tmp_path, tiny_google_dir):
  held_out = tiny_models.write_domain_json(str(tmp_path / "test.json"), domains=("c",),
                                           per_domain=3, seed=5)
  trainer = meta_fixtures.make_trainer(tiny_google_dir, tmp_path / "m", fomaml)
  examples = tiny_models.toy_domain_examples(meta_fixtures.DOMAINS)
  banned = {e.text_a for e in tiny_models.toy_domain_examples(("c",), per_domain=3, seed=5)}
  encoder = backbones.describe_backbone(tiny_google_dir).input_encoder(16)
  exclude = meta_job.excluded_examples(trainer.features, held_out, encoder, meta_fixtures.LABELS)
  assert exclude.tolist() == [e.text_a in banned for e in examples] and exclude.any()
  trainer = meta_fixtures.make_trainer(tiny_google_dir, tmp_path / "t", fomaml, num_test_task=2,
                                       test_exclude=exclude)
  drawn = np.concatenate([np.r_[e.support, e.query]
                          for e in map(trainer.test_sampler.episode, range(30))])
  assert not exclude[drawn].any()
  assert set(drawn) == set(np.flatnonzero((trainer.features["domain_ids"] == 2) & ~exclude))
  assert 0.0 <= trainer.meta_test() <= 1.0


@dataclasses.dataclass
class _RateConfig(fomaml.Config):
  initial_rate: float = 0.25


class _WithLearnedRate(fomaml.Algorithm):
  """FOMAML plus a meta-model trackable (as LEOPARD's learned rates), given a zero gradient."""

  def build(self, model, inner):
    self.rates = tf.Module()
    self.rates.value = tf.Variable(self.config.initial_rate, name="rate")
    return {"learned_rates": self.rates}

  def task_step(self, inner, task, meta_vars):
    grads, loss = super().task_step(inner, task, meta_vars)
    return grads + [tf.zeros([])], loss


def test_algorithm_trackables_are_checkpointed_and_restored(tmp_path, tiny_google_dir):
  algorithm = type("M", (), dict(NAME="rated", Config=_RateConfig, Algorithm=_WithLearnedRate))
  trainer = meta_fixtures.make_trainer(tiny_google_dir, tmp_path, algorithm, epochs=1)
  assert trainer.outer_vars[-1] is trainer.extras["learned_rates"].value
  trainer.train()
  trainer.extras["learned_rates"].value.assign(0.75)
  trainer.save(1, int(trainer.step.numpy()))
  names = [name for name, _ in tf.train.list_variables(tf.train.latest_checkpoint(trainer.ckpt_dir))]
  assert any(name.startswith("learned_rates/value") for name in names)
  resumed = meta_fixtures.make_trainer(tiny_google_dir, tmp_path, algorithm, epochs=1)
  assert resumed.extras["learned_rates"].value.numpy() == 0.25
  resumed.restore()
  assert resumed.extras["learned_rates"].value.numpy() == 0.75
