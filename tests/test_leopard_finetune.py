"""Fine-tuning a LEOPARD-family checkpoint: the class rows generated from the first batch, SGD
with the learned per-group rates, resume, export / predict, and zero-shot reloading."""
import numpy as np
import pytest
import tensorflow as tf

from metabert_tf import backbones
from metabert_tf import datasets
from metabert_tf import finetune_job
from metabert_tf import leopard_finetune
from metabert_tf import predict
from metabert_tf import records
from metabert_tf import training
from metabert_tf.errors import DataError
from metabert_tf.meta import engine
from metabert_tf.meta import episodes
from metabert_tf.meta import job as meta_job
from metabert_tf.meta import leopard
from tests import tiny_models
from tests.test_harness import run_harness
from tests.test_harness import write_leopard_task


def _meta_train(out, model_dir, warp_layers=False, **config):
  data = tiny_models.write_domain_json(str(out / "toy.json"))
  job = meta_job.MetaJob(
      output_dir=str(out / "meta"), data=[data], algorithm="leopard", bert_model=model_dir,
      max_seq_length=16,
      meta=engine.MetaConfig(
          episodes=episodes.EpisodeConfig(num_support=6, num_query=2), num_train_task=2,
          num_test_task=0, outer_batch_size=2, inner_batch_size=2, inner_update_step=1,
          epochs=1, dropout=False, progress=False,
          algorithm=leopard.Config(label_emb_size=8, train_lr=0.02, learning_rate=1e-3,
                                   warp_layers=warp_layers, **config)))
  return meta_job.run_meta_job(job)["checkpoint"]


@pytest.fixture(scope="module")
def leopard_ckpt(tmp_path_factory, tiny_google_dir):
  return _meta_train(tmp_path_factory.mktemp("leopard"), tiny_google_dir)


def test_rows_from_the_first_batch_then_sgd_with_the_learned_rates(leopard_ckpt, tmp_path):
  backbone = backbones.load_backbone(leopard_ckpt, dropout=False)
  strategy = tf.distribute.get_strategy()
  model, rates, variables = leopard_finetune.build(strategy, backbone, 2, "pooler",
                                                   dropout=False)
  assert variables == model.trainable_variables  # LEOPARD: no warp layers
  learned = tf.train.load_checkpoint(leopard_ckpt).get_tensor(
      "inner_rates/rates/.ATTRIBUTES/VARIABLE_VALUE")
  assert not np.allclose(learned, 0.02)  # meta-training moved them
  paths = tiny_models.write_toy_task(str(tmp_path / "task"), n_per_label=4)
  features = records.encode(datasets.read(paths["train"]),
                            backbone.input_encoder(16), ["negative", "positive"])
  leopard_finetune.generate_class_rows(model, features, 4, seed=0)
  idx = np.sort(np.random.default_rng([0, 5]).permutation(8)[:4])
  pooled = model.encode({k: v[idx] for k, v in features.items()})[0]
  out = model.head.generate(pooled, features["label_ids"][idx]).numpy()
  np.testing.assert_allclose(model.head.class_rows.numpy(), out, rtol=1e-6)
  # One step: w <- w - schedule(0) x rate(group of w) x grad (no warm-up: schedule(0) = 1).
  variables = model.trainable_variables
  before = [v.numpy() for v in variables]
  with tf.GradientTape() as tape:
    logits = model(features)
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
        features["label_ids"], logits))
  grads = tape.gradient(loss, variables)
  optimizer = leopard_finetune.optimizer(rates, 10, warmup_proportion=0.0)
  optimizer.apply_gradients([(g, v) for g, v in zip(grads, variables) if g is not None])
  names = {n: float(r) for n, r in zip(leopard.ordered_groups(
      leopard.rate_group(v.name.split("/", 1)[1].split(":")[0]) for v in variables), learned)}
  for v, b, g in zip(variables, before, grads):
    group = leopard.rate_group(v.name.split("/", 1)[1].split(":")[0])
    if g is None:  # the generator: not on the loss path, never updated
      assert "generator" in v.name
      np.testing.assert_array_equal(v.numpy(), b)
    else:
      np.testing.assert_allclose(v.numpy(), b - names[group] * tf.convert_to_tensor(g).numpy(),
                                 atol=1e-7, err_msg=v.name)


@pytest.mark.slow
def test_run_finetune_from_a_leopard_checkpoint_exports_and_reloads(leopard_ckpt, tmp_path):
  paths = tiny_models.write_toy_task(str(tmp_path / "task"))
  job = finetune_job.FinetuneJob(
      output_dir=str(tmp_path / "ft"), train_path=paths["train"], eval_path=paths["eval"],
      bert_model=leopard_ckpt, max_seq_length=16, export_dir=str(tmp_path / "export"),
      train=training.FinetuneConfig(epochs=3, batch_size=4, progress=False), dropout=False)
  results = finetune_job.run_job(job)
  assert 0.0 <= results["accuracy"] <= 1.0
  predicted = predict.predict(str(tmp_path / "export"), [("the movie is very good .", None)],
                              progress=False)
  assert predicted[0]["label"] in ("negative", "positive")
  again = finetune_job.run_job(job)  # finished: reuses the final checkpoint, same model
  assert again["accuracy"] == results["accuracy"]
  zero_shot = finetune_job.run_job(finetune_job.FinetuneJob(
      output_dir=str(tmp_path / "zs"), eval_path=paths["eval"], bert_model=results["checkpoint"],
      max_seq_length=16, dropout=False, train=training.FinetuneConfig(progress=False)))
  assert zero_shot["accuracy"] == results["accuracy"]  # the trained class rows come back
  with pytest.raises(DataError, match="no learned rates"):
    finetune_job.run_job(finetune_job.FinetuneJob(
        output_dir=str(tmp_path / "again"), train_path=paths["train"],
        bert_model=results["checkpoint"], max_seq_length=16,
        train=training.FinetuneConfig(epochs=1, progress=False)))
  # The meta-trained checkpoint has no classifier of its own: zero-shot would score chance.
  with pytest.raises(DataError, match="generates its classifier from labeled examples"):
    finetune_job.run_job(finetune_job.FinetuneJob(
        output_dir=str(tmp_path / "zs_meta"), eval_path=paths["eval"], bert_model=leopard_ckpt,
        max_seq_length=16, train=training.FinetuneConfig(progress=False)))


def test_plain_fine_tuning_of_a_leopard_checkpoint_encoder(leopard_ckpt, tmp_path):
  paths = tiny_models.write_toy_task(str(tmp_path / "task"), n_per_label=4)
  results = finetune_job.run_job(finetune_job.FinetuneJob(
      output_dir=str(tmp_path / "plain"), train_path=paths["train"], eval_path=paths["eval"],
      bert_model=leopard_ckpt, max_seq_length=16, leopard_head=False, dropout=False,
      train=training.FinetuneConfig(epochs=2, batch_size=4, progress=False)))
  names = dict(tf.train.list_variables(results["checkpoint"]))
  assert "head/kernel/.ATTRIBUTES/VARIABLE_VALUE" in names  # a dense head, not the generator's
  assert not any("generator" in n for n in names)


@pytest.mark.slow
def test_harness_fine_tunes_a_leopard_checkpoint_either_way(leopard_ckpt, tmp_path):
  write_leopard_task(tmp_path / "data", "toy", ks=(2,), splits=1)
  heads = {}
  for name, extra in (("generated", ()), ("plain", ("--noleopard_head",))):
    out = tmp_path / name
    proc = run_harness(tmp_path / "data", out, leopard_ckpt, "--ks=2", "--splits=1",
                       "--keep_checkpoints", *extra)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = tf.train.latest_checkpoint(out / "toy_k2_s0" / "ckpt")
    heads[name] = {n.split("/.ATTRIBUTES")[0] for n, _ in tf.train.list_variables(ckpt)
                   if n.startswith("head/") and "OPTIMIZER" not in n}
  assert "head/class_rows" in heads["generated"] and "head/kernel" not in heads["generated"]
  assert "head/kernel" in heads["plain"] and not any("class_rows" in n for n in heads["plain"])


def test_a_warp_layers_model_is_fine_tuned_with_them(tmp_path, tiny_google_dir):
  """SMLMT / Hybrid-SMLMT (the release's run_finetune.sh): feed-forward blocks not trained,
  the task MLP at rate 0, everything else at its learned rate."""
  ckpt = _meta_train(tmp_path, tiny_google_dir, warp_layers=True)
  backbone = backbones.load_backbone(ckpt, dropout=False)
  model, rates, variables = leopard_finetune.build(tf.distribute.get_strategy(), backbone, 3,
                                                   "pooler", dropout=False)
  trained = {v.name for v in variables}
  for v in model.trainable_variables:
    name = v.name.split("/", 1)[1]
    feed_forward = leopard.is_feed_forward(name.split(":")[0])
    assert (v.name in trained) != feed_forward, v.name
    if "task_mlp" in name or "generator" in name:
      assert rates[v.name.split(":")[0]] == 0.0
    elif not feed_forward:
      assert rates[v.name.split(":")[0]] > 0.0
  assert any(leopard.is_feed_forward(v.name.split("/", 1)[1]) for v in model.trainable_variables)


def test_fine_tuning_trains_exactly_the_weights_the_inner_loop_adapted(tmp_path, tiny_google_dir):
  """Meta-trained with min_layer_with_grad=1 and no embedding adaptation, a checkpoint is
  fine-tuned with the same groups: layer 0 and the embeddings stay as meta-trained."""
  ckpt = _meta_train(tmp_path, tiny_google_dir, min_layer_with_grad=1,
                     train_word_embeddings=False)
  paths = tiny_models.write_toy_task(str(tmp_path / "task"), n_per_label=4)
  results = finetune_job.run_job(finetune_job.FinetuneJob(
      output_dir=str(tmp_path / "ft"), train_path=paths["train"], bert_model=ckpt,
      max_seq_length=16, dropout=False, train=training.FinetuneConfig(
          epochs=2, batch_size=4, warmup_proportion=0.0, progress=False)))
  before, after = tf.train.load_checkpoint(ckpt), tf.train.load_checkpoint(results["checkpoint"])
  moved = {}
  for name in before.get_variable_to_shape_map():
    if name.startswith("encoder/") and "OPTIMIZER" not in name:
      moved[name] = not np.array_equal(before.get_tensor(name), after.get_tensor(name))
  frozen = {n: m for n, m in moved.items() if "embedding" in n or "_transformer_layers/0/" in n}
  adapted = {n: m for n, m in moved.items() if "_transformer_layers/1/" in n}
  assert frozen and not any(frozen.values()), frozen
  # Layer 1 trains (a weight may not move: the key biases have no gradient, tiny rates round).
  assert adapted and sum(adapted.values()) > len(adapted) / 2, adapted


def test_leopard_fine_tuning_epochs_are_chosen_as_shares_of_the_release_table(
    leopard_ckpt, tmp_path, shared_dir):
  """finetune_rule with a per-K table: each share s of its epochs one run (generated head,
  learned rates), on the meta-training sources' splits, the best share chosen."""
  import json  # pylint: disable=import-outside-toplevel
  import os  # pylint: disable=import-outside-toplevel
  from metabert_tf.experiments import finetune_rule, grid  # pylint: disable=import-outside-toplevel
  per_k = tmp_path / "per_k.json"
  per_k.write_text(json.dumps({"leopard": {"2": [4, 1]}}))
  config = finetune_rule.Config(
      output_dir=str(tmp_path / "out"), meta_train_dir=os.path.join(shared_dir, "data",
                                                                    "meta_train"),
      sources=["sst2"], ks=[2], splits=1, pool_examples=30, bert_model=leopard_ckpt,
      max_seq_length=16, precision="fp32", process_per_cell=False,
      leopard_per_k_config=str(per_k), epochs_scales=[1.0, 0.5, 0.3])
  table = grid.run(finetune_rule, config)
  runs = tmp_path / "out" / "runs"
  # 4 and 2 (0.3 x 4 rounded up) epochs per class, x N = 2; batch 1 per class
  assert sorted(p.name for p in runs.iterdir()) == ["sst2_k2_s0_epochs4_batch2",
                                                    "sst2_k2_s0_epochs8_batch2"]
  run = json.load(open(runs / "sst2_k2_s0_epochs8_batch2" / "results.json"))
  assert run["train_steps"] == 8 * 2 and run["train_config"]["batch_size"] == 2
  summary = json.load(open(tmp_path / "out" / "summary.json"))
  assert summary["chosen_epochs_scale"] in (0.3, 1.0)  # 0.5 and 0.3 tie; the cheaper wins
  assert f"chosen: --leopard_epochs_scale {summary['chosen_epochs_scale']}" in table
