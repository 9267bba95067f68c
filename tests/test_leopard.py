"""LEOPARD / SMLMT / Hybrid-SMLMT's meta-learner on a tiny BERT, against hand computations:
the generated class rows, one inner step (per-group rates, clipping, warp layers), and the
first-order meta-gradients (learned rates, generator, encoder) against finite differences of the
objective they differentiate; a meta-step's update of the rates; N = 2, 3, 5 in one trace."""
import os

import numpy as np
import pytest
import tensorflow as tf

from metabert_tf import backbones
from metabert_tf import records
from metabert_tf.errors import ConfigError
from metabert_tf.errors import DataError
from metabert_tf.meta import engine
from metabert_tf.meta import episodes
from metabert_tf.meta import job as meta_job
from metabert_tf.meta import leopard
from metabert_tf.meta import learner as learner_lib
from metabert_tf.meta import sources
from tests import meta_fixtures
from tests import tiny_models
from tests.test_meta_engine import _VariableN

# 6 support examples in 3 batches of 2: batch 0 generates the class rows, 2 inner steps. The
# released head (the original's MLPs) unless a test asks for the prototype start.
_SETTINGS = dict(episodes=episodes.EpisodeConfig(num_support=6, num_query=2), train_lr=0.3,
                 label_emb_size=8, head_init="released")


def _trainer(tmp_path, model_dir, **overrides):
  trainer = meta_fixtures.make_trainer(model_dir, tmp_path, leopard, **{**_SETTINGS, **overrides})
  # Distinct rates per group, so a variable using another group's rate would show.
  rates = trainer.algorithm.rates.rates
  rates.assign(0.05 * (1 + np.arange(rates.shape[0])))
  return trainer


def _task(trainer, index=0):
  task = trainer.make_tasks([trainer.train_sampler.episode(index)], 1, [(13, 0, 0)], [1.0])
  return tf.nest.map_structure(lambda x: tf.constant(x[0]), task)


def _names(trainer):
  return [learner_lib.canonical(v.name) for v in trainer.inner.vars]


def _batch(task, b, size=2):
  idx = task["order"][0, b * size:(b + 1) * size]
  return {k: tf.gather(v, idx) for k, v in task["support"].items()}


def test_generated_class_rows_are_the_class_means_of_the_generator(tmp_path, tiny_google_dir):
  trainer = _trainer(tmp_path, tiny_google_dir)
  task = _task(trainer)
  trainer.inner.reset(trainer.meta_vars)
  trainer.algorithm._generate(trainer.inner, task, training=False)
  batch = _batch(task, 0)
  pooled = trainer.model.encode(batch)[0].numpy()
  (w0, b0), (w1, b1) = [(layer.kernel.numpy(), layer.bias.numpy())
                        for layer in trainer.model.head.generator]
  out = np.tanh(pooled @ w0 + b0) @ w1 + b1
  labels = batch["label_ids"].numpy()
  expected = np.zeros((2, 9), np.float32)
  for c in set(labels):
    expected[c] = out[labels == c].mean(0)
  np.testing.assert_allclose(trainer.inner.vars[-1].numpy(), expected, rtol=1e-5, atol=1e-6)


def test_a_prototype_head_starts_as_the_nearest_class_mean(tmp_path, tiny_google_dir):
  """head_init="prototypes": rows [2 m_c | b_c - |m_c|^2] of the generator's class means, with
  the generator and task MLP residual and their last layers at zero, so that before any
  meta-step logits_c = |p|^2 - |p - mu_c|^2 (the nearest class mean of the first batch)."""
  trainer = _trainer(tmp_path, tiny_google_dir, head_init="prototypes")
  task = _task(trainer)
  trainer.inner.reset(trainer.meta_vars)
  trainer.algorithm._generate(trainer.inner, task, training=False)
  batch = _batch(task, 0)
  pooled = trainer.model.encode(batch)[0].numpy()
  labels = batch["label_ids"].numpy()
  present = sorted(set(labels.tolist()))  # a class the first batch lacks gets a zero row
  means = np.stack([pooled[labels == c].mean(0) for c in present])
  rows = trainer.inner.vars[-1].numpy()[present]
  np.testing.assert_allclose(rows[:, :-1], 2 * means, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(rows[:, -1], -(means ** 2).sum(1), rtol=1e-5, atol=1e-6)
  query = dict(task["query"])
  p = trainer.model.encode(query)[0].numpy()
  logits = trainer.inner.logits(query, task["num_classes"]).numpy()[:, present]
  expected = (p ** 2).sum(1, keepdims=True) - ((p[:, None] - means[None]) ** 2).sum(-1)
  np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("warp", [False, True])
def test_one_inner_step_per_group_rates_clipping_and_warp_layers(tmp_path, tiny_google_dir, warp):
  trainer = _trainer(tmp_path, tiny_google_dir, warp_layers=warp, min_layer_with_grad=1)
  alg, inner, task = trainer.algorithm, trainer.inner, _task(trainer)
  inner.reset(trainer.meta_vars)
  alg._generate(inner, task, training=False)
  before = [v.numpy() for v in inner.vars]
  batch = _batch(task, 1)
  names = _names(trainer)
  with tf.GradientTape() as tape:
    tape.watch(inner.vars)  # learner copies are not trainable variables
    loss = learner_lib.cross_entropy(batch["label_ids"], inner.logits(batch, 2, training=True))
  grads = [tf.convert_to_tensor(g).numpy() for g in
           tape.gradient(loss, inner.vars, unconnected_gradients="zero")]
  outside = {n for n in names if "generator" in n or "layer_0/" in n}  # min_layer_with_grad=1
  if warp:
    outside |= {n for n in names if leopard.is_feed_forward(n)}
  assert {n for n, a in zip(names, alg.adapted) if not a} == outside
  # The clip's norm: every inner-loop weight, the task MLP included (with warp layers its rate
  # is 0: in the norm, never moved, as in the original).
  norm = np.sqrt(sum((g ** 2).sum() for g, n in zip(grads, names) if n not in outside))
  frozen = outside | ({n for n in names if "task_mlp" in n} if warp else set())
  scale = min(1.0, 1.0 / norm)
  rates = alg.rates.rates.numpy()
  alg._inner_step(inner, task, tf.constant(1), tf.constant(3))
  errors, updates = [], []
  for v, b, g, n, gid in zip(inner.vars, before, grads, names, alg.group_ids):
    if n in frozen:
      np.testing.assert_array_equal(v.numpy(), b, err_msg=n)  # warp / frozen: not moved at all
    else:
      errors.append((v.numpy() - (b - rates[gid] * scale * g)).ravel())
      updates.append((rates[gid] * scale * g).ravel())
  # float32 sums in another order: the update agrees to 1e-4 of its size (relative L2 norm)
  assert np.linalg.norm(np.concatenate(errors)) < 1e-4 * np.linalg.norm(np.concatenate(updates))
  group_of = dict(zip(names, (alg.group_names[g] if g >= 0 else None for g in alg.group_ids)))
  assert group_of["generated_softmax_head/class_rows"] == "class_rows"
  assert group_of["transformer/layer_1/self_attention/query/kernel"] == "layer_1"


def _first_order_objective(trainer, task, thetas, sums, rates, points, weights):
  """sum_s w_s L(phi_s; Q) / W with phi_s = theta - alpha * (sum of the first s applied inner
  gradients), the gradients held fixed: what the first-order meta-gradients differentiate."""
  alg, inner = trainer.algorithm, trainer.inner
  total = 0.0
  for s, w in zip(points, weights):
    for v, theta, g_sum, gid in zip(inner.vars, thetas, sums[s], alg.group_ids):
      v.assign(theta - rates[gid] * g_sum if gid >= 0 else theta)
    total += w * float(inner.loss_and_logits(task["query"], task["num_classes"])[0])
  return total / sum(weights)


@pytest.mark.parametrize("head_init", ["released", "prototypes"])
def test_meta_gradients_equal_finite_differences_of_the_first_order_objective(
    tmp_path, tiny_google_dir, head_init):
  trainer = _trainer(tmp_path, tiny_google_dir, weight_query_loss=True, average_query_loss=True,
                     average_query_every=1, head_init=head_init)
  alg, inner, task = trainer.algorithm, trainer.inner, _task(trainer)
  meta = trainer.meta_vars
  shares, loss = alg.task_step(inner, task, meta)
  rate_grads = shares[-1].numpy()

  names = _names(trainer)
  gen_bias = names.index("generated_softmax_head/generator_1/bias")
  enc_bias = names.index("pooler_transform/bias")

  def objective(rates, gen_delta=(0, 0.0), enc_delta=(0, 0.0)):
    """Regenerates the rows (with perturbed weights), replays the 2 inner steps recording their
    gradient sums, then evaluates the objective at the given rates."""
    inner.reset(meta)
    inner.vars[gen_bias].assign_add(tf.one_hot(gen_delta[0], inner.vars[gen_bias].shape[0])
                                    * gen_delta[1])
    inner.vars[enc_bias].assign_add(tf.one_hot(enc_delta[0], inner.vars[enc_bias].shape[0])
                                    * enc_delta[1])
    alg._generate(inner, task, training=False)
    thetas = [v.numpy() for v in inner.vars]
    for acc in alg.grad_sums:
      if acc is not None:
        acc.assign(tf.zeros_like(acc))
    sums = [[np.zeros_like(t) for t in thetas]]
    for s in (1, 2):
      alg._inner_step(inner, task, tf.constant(s), tf.constant(3), accumulate=alg.grad_sums)
      sums.append([a.numpy() if a is not None else 0.0 for a in alg.grad_sums])
    if gen_delta[1] == enc_delta[1] == 0.0:
      # Inner gradients at the unperturbed weights, held fixed (first order).
      objective.sums = sums
    return _first_order_objective(trainer, task, thetas, objective.sums, rates, (0, 1, 2),
                                  (1 / 8, 1 / 4, 1 / 2))

  rates = alg.rates.rates.numpy().astype(np.float64)
  assert np.isclose(objective(rates), float(loss), rtol=1e-5)
  for k in range(len(rates)):
    eps = 1e-2 * rates[k]
    up, down = rates.copy(), rates.copy()
    up[k] += eps
    down[k] -= eps
    fd = (objective(up) - objective(down)) / (2 * eps)
    # 1% of the largest rate gradient: float32 noise in a group whose gradient is ~0 (the
    # prototype head's task_mlp_0 while the last layer above it starts at zero).
    np.testing.assert_allclose(rate_grads[k], fd, rtol=1e-2,
                               atol=max(1e-6, 1e-2 * np.abs(rate_grads).max()),
                               err_msg=alg.group_names[k])
  assert np.abs(rate_grads).max() > 1e-4
  for index, kwarg in ((gen_bias, "gen_delta"), (enc_bias, "enc_delta")):
    j = int(np.abs(shares[index].numpy()).argmax())  # the entry with the largest gradient
    eps = 1e-2
    up, down = objective(rates, **{kwarg: (j, eps)}), objective(rates, **{kwarg: (j, -eps)})
    fd = (up - down) / (2 * eps)
    got = shares[index].numpy()[j]
    # atol: a float32 loss (~0.7) carries ~1e-7 of rounding per evaluation, ~1e-6 after the
    # division by 2 eps: the finite difference's own noise floor.
    np.testing.assert_allclose(got, fd, rtol=1e-2, atol=2e-6, err_msg=names[index])
    assert abs(got) > 1e-5


def test_a_meta_step_updates_the_rates_by_adamw_on_their_gradient(tmp_path, tiny_google_dir):
  trainer = _trainer(tmp_path, tiny_google_dir, outer_batch_size=1, num_train_task=2,
                     warmup_proportion=0.0, learning_rate=1e-3)
  task = _task(trainer, trainer.task_ids(0)[0])
  shares, _ = trainer.algorithm.task_step(trainer.inner, task, trainer.meta_vars)
  norm = np.sqrt(sum(float(tf.reduce_sum(s ** 2)) for s in shares))
  g = shares[-1].numpy() * min(1.0, 1.0 / norm)  # the meta-gradient is clipped to norm 1
  before = trainer.algorithm.rates.rates.numpy()
  trainer.train_step(0)
  # Adam's first step: m = (1 - b1) g, v = (1 - b2) g^2, bias-corrected; no weight decay.
  expected = np.clip(before - 1e-3 * g / (np.abs(g) + 1e-6 / np.sqrt(1 - 0.999)), 1e-8, 1.0)
  np.testing.assert_allclose(trainer.algorithm.rates.rates.numpy(), expected, rtol=1e-5)
  assert not np.allclose(expected, before)


def test_tasks_of_2_3_and_5_classes_share_one_trace(tmp_path, tiny_google_dir):
  features = meta_fixtures.toy_features(backbones.load_backbone(tiny_google_dir, dropout=False))
  features["label_ids"] = np.arange(len(features["label_ids"])) % 5
  trainer = meta_fixtures.make_trainer(
      tiny_google_dir, tmp_path, leopard, labels=list("vwxyz"), features=features, bucket=16,
      num_train_task=6, num_test_task=3, **_SETTINGS)
  trainer.train_sampler = trainer.test_sampler = _VariableN(features["label_ids"], n_support=6)
  before = trainer.algorithm.rates.rates.numpy()
  for step in range(3):
    assert np.isfinite(trainer.train_step(step))
  assert trainer._meta_step.experimental_get_tracing_count() == 1
  assert not np.allclose(trainer.algorithm.rates.rates.numpy(), before)
  assert 0.0 <= trainer.meta_test() <= 1.0
  assert trainer._adapt_and_predict.experimental_get_tracing_count() == 1


# ---- task sources and the job ---------------------------------------------------------------

def _sources(tmp_path):
  """A labeled file with 3 domains (3 sources of 2 classes) and SMLMT files of N = 3 and 4
  (tasks of 12 records: 9 support + 3 query)."""
  from tests.test_smlmt import _generate, _write_corpus  # pylint: disable=import-outside-toplevel
  labeled = tiny_models.write_domain_json(str(tmp_path / "toy.json"))
  inputs, _ = _write_corpus(tmp_path)
  metas = _generate(inputs, tmp_path / "smlmt", num_classes=[3, 4], max_seq_length=16)
  return [labeled] + [m["path"] for m in metas]


def test_task_sources_labels_and_sampling(tmp_path, tiny_google_dir):
  specs = _sources(tmp_path)
  encoder = backbones.describe_backbone(tiny_google_dir).input_encoder(16)
  features, label_list, found = sources.load_task_sources(specs, encoder)
  names = [s.name for s in found]
  stem = os.path.basename(str(tmp_path))
  assert names == [f"{stem}/toy:a", f"{stem}/toy:b", f"{stem}/toy:c", "smlmt/meta_pretrain_3",
                   "smlmt/meta_pretrain_4"]
  assert [len(s.classes) for s in found] == [2, 2, 2, 3, 4]
  assert label_list[:2] == [f"{stem}/toy:a:negative", f"{stem}/toy:a:positive"]
  assert label_list[-4:] == [f"smlmt/meta_pretrain_4:{i}" for i in range(4)]
  smlmt4, _ = records.load(specs[2], 16)
  np.testing.assert_array_equal(features["label_ids"][found[4].members] - found[4].classes[0],
                                smlmt4["label_ids"])
  config = episodes.EpisodeConfig(num_support=9, num_query=3)
  sampler = sources.SourceSampler(found, features["label_ids"], config, 0, 0.5)
  sizes = np.sqrt([12, 12, 12, 48, 48])
  np.testing.assert_allclose(sampler.probs, np.r_[sizes[:3] / sizes[:3].sum(),
                                                  sizes[3:] / sizes[3:].sum()] * 0.5)
  for i in range(20):
    episode = sampler.episode(i)
    source = found[names.index(episode.domain)]
    assert set(features["label_ids"][np.r_[episode.support, episode.query]]) <= set(
        episode.classes) and list(episode.classes) == list(source.classes)
    if source.is_smlmt:  # a whole block: support then query, in record order
      block = np.r_[episode.support, episode.query]
      assert (np.diff(block) == 1).all() and (block[0] - source.members[0]) % 12 == 0
  with pytest.raises(ConfigError, match="never be sampled"):
    sources.SourceSampler(found, features["label_ids"], config, 0, 0.0)
  with pytest.raises(ConfigError, match="no labeled source"):
    sources.SourceSampler(found[3:], features["label_ids"], config, 0, 0.5)
  with pytest.raises(DataError, match="tasks of 12 records"):
    sources.SourceSampler(found, features["label_ids"],
                          episodes.EpisodeConfig(num_support=8, num_query=3), 0, 0.5)
  # An SMLMT file whose task list is missing would read as one labeled source of N classes.
  os.remove(specs[2][:-len(".tf_record")] + ".json")
  with pytest.raises(DataError, match=f"{specs[2]}: an SMLMT task file without its "
                     "meta_pretrain_4.json"):
    sources.load_task_sources(specs, encoder)


def test_hybrid_smlmt_job_trains_checkpoints_and_resumes(tmp_path, tiny_google_dir):
  job = meta_job.MetaJob(
      output_dir=str(tmp_path / "out"), data=_sources(tmp_path), algorithm="hybrid_smlmt",
      bert_model=tiny_google_dir, max_seq_length=16,
      meta=engine.MetaConfig(
          episodes=episodes.EpisodeConfig(num_support=9, num_query=3), num_train_task=4,
          num_test_task=0, outer_batch_size=2, inner_batch_size=3, inner_update_step=1,
          epochs=1, dropout=False, progress=False,
          algorithm=leopard.HybridSMLMTConfig(label_emb_size=8, learning_rate=1e-3)))
  results = meta_job.run_meta_job(job)
  names = dict(tf.train.list_variables(results["checkpoint"]))
  assert any(n.startswith("inner_rates/rates") for n in names)
  assert {"head/generator/1/kernel/.ATTRIBUTES/VARIABLE_VALUE",
          "head/task_mlp/1/kernel/.ATTRIBUTES/VARIABLE_VALUE"} <= set(names)
  assert len(results["train_domains"]) == 5
  again = meta_job.run_meta_job(job)  # finished: resumes at the end, trains nothing more
  assert again["checkpoint"] == results["checkpoint"]


def test_a_capped_source_keeps_its_full_size_for_sampling(tmp_path, tiny_google_dir):
  labeled = tiny_models.write_domain_json(str(tmp_path / "toy.json"))  # 3 domains x 12
  encoder = backbones.describe_backbone(tiny_google_dir).input_encoder(16)
  _, _, found = sources.load_task_sources([labeled], encoder, max_examples_per_source=24)
  assert sum(len(s.members) for s in found) == 24 and [s.size for s in found] == [12, 12, 12]
