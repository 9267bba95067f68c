"""MFT on a tiny BERT: the corruption labels, where the corruption loss sends gradient, the
step against plain fine-tuning, typicality reuse, resume after a kill, 2 replicas = 1 device."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from metabert_tf import backbones
from metabert_tf import classifier
from metabert_tf import mft
from metabert_tf import multidomain_job
from metabert_tf import objectives
from metabert_tf import training
from metabert_tf.errors import ConfigError
from tests import killable
from tests import meta_fixtures
from tests import tiny_models
from tests.conftest import REPO_DIR


def _batch(backbone, n=6):
  features = meta_fixtures.toy_features(backbone)
  batch = {k: tf.constant(v[:n]) for k, v in features.items()}
  batch["domain_ids"] = tf.constant([0, 0, 1, 2, 2, 1][:n], tf.int32)
  return batch


def _model(backbone, objective):
  model = classifier.Classifier(backbone.encoder, 2, dropout_rate=0.0).build_all()
  objective.build(model)
  return model


def test_default_layers_are_three_evenly_spaced_ending_at_the_top():
  assert mft.default_layers(6) == [2, 4, 6] and mft.default_layers(12) == [4, 8, 12]
  assert mft.default_layers(2) == [1, 2]


def test_corruption_labels_are_a_permutation_of_the_batch_domains(tiny_google_dir):
  objective = mft.MFTObjective(mft.MFTConfig(corruption_layers=[1, 2]), 3, 2)
  domains = tf.constant([0, 0, 1, 2, 2, 1, 0, 2], tf.int32)
  corrupt = objective.prepare_batch({"domain_ids": domains}, 5)["corrupt_domain_ids"].numpy()
  assert corrupt.shape == (8, 2)
  for column in corrupt.T:
    assert sorted(column) == sorted(domains.numpy())
  assert (corrupt[:, 0] != corrupt[:, 1]).any()  # a shuffle of its own per layer ...
  again = objective.prepare_batch({"domain_ids": domains}, 5)["corrupt_domain_ids"].numpy()
  other = objective.prepare_batch({"domain_ids": domains}, 6)["corrupt_domain_ids"].numpy()
  np.testing.assert_array_equal(corrupt, again)  # ... and step: replayed on resume
  assert (corrupt != other).any()


def test_corruption_loss_reaches_the_named_layers_and_none_above(tiny_google_dir):
  backbone = backbones.load_backbone(tiny_google_dir, dropout=False)
  objective = mft.MFTObjective(mft.MFTConfig(corruption_layers=[1]), 3, 2)
  model = _model(backbone, objective)
  batch = objective.prepare_batch(_batch(backbone), 0)
  with tf.GradientTape() as tape:
    _, outputs = model.encode(batch, training=True)
    loss = tf.reduce_mean(objective.corruption_loss(batch, outputs))
  extras = objective.trainable_variables()  # domain embedding, classifier kernel and bias
  variables = model.encoder.trainable_variables + extras
  grads = tape.gradient(loss, variables)
  names = [v.name for v in model.encoder.trainable_variables] + ["extra"] * len(extras)

  def moved(fragment):
    return [n for n, g in zip(names, grads) if fragment in n and g is not None
            and float(tf.reduce_max(tf.abs(g))) > 0]
  assert moved("layer_0/") and moved("word_embeddings")
  assert len(extras) == 3 and len(moved("extra")) == 3
  assert not moved("layer_1/") and not moved("pooler")  # above the highest named layer


def test_mft_without_corruption_and_with_unit_weights_is_plain_fine_tuning(tmp_path,
                                                                             tiny_google_dir):
  def train(name, objective, weights):
    backbone = backbones.load_backbone(tiny_google_dir, dropout=False)
    model = classifier.Classifier(backbone.encoder, 2, dropout_rate=0.0).build_all()
    model.head.set_weights([np.full([32, 2], 0.01, np.float32), np.zeros([2], np.float32)])
    features = meta_fixtures.toy_features(backbone)
    if weights:
      features["example_weights"] = np.ones(len(features["label_ids"]), np.float32)
    config = training.FinetuneConfig(epochs=1, batch_size=8, learning_rate=1e-3, progress=False)
    metadata = tf.Variable("{}", dtype=tf.string)
    training.finetune(tf.distribute.get_strategy(), model, features, str(tmp_path / name), config,
                      metadata, objective)
    return [v.numpy() for v in model.trainable_variables]

  plain = train("plain", objectives.CrossEntropy(), weights=False)
  no_corruption = mft.MFTObjective(mft.MFTConfig(corruption_weight=0.0), 3, 2)
  for a, b in zip(plain, train("mft", no_corruption, weights=True)):
    np.testing.assert_array_equal(a, b)
  # ... and the corruption loss does change the step.
  full = mft.MFTObjective(mft.MFTConfig(corruption_weight=1.0), 3, 2)
  assert any(not np.array_equal(a, b) for a, b in zip(plain, train("full", full, weights=True)))


def _job(tmp_path, name, data, model, **overrides):
  fields = dict(output_dir=str(tmp_path / name), data=data, eval_data=data, method="mft",
                bert_model=model, max_seq_length=16, dropout=False,
                train=training.FinetuneConfig(epochs=2, batch_size=8, learning_rate=1e-3, seed=2,
                                              save_every_steps=2, progress=False))
  fields.update(overrides)
  return multidomain_job.MultiDomainJob(**fields)


def _final_weights(prefix):
  reader = tf.train.load_checkpoint(prefix)
  return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
          if k.startswith(("encoder/", "head/", "mft_"))}


def test_killed_mft_run_resumes_to_the_same_weights(tmp_path, tiny_google_dir, monkeypatch):
  data = tiny_models.write_domain_json(str(tmp_path / "data.json"))
  full = multidomain_job.run_multidomain_job(_job(tmp_path, "full", data, tiny_google_dir))
  assert full["corruption_layers"] == [1, 2] and set(full["eval"]["by_domain"]) == {"a", "b", "c"}
  # Killed during step 4; the checkpoint of step 2 is on disk.
  real_make = killable.die_during_step(monkeypatch, 4)
  job = _job(tmp_path, "resumed", data, tiny_google_dir)
  with pytest.raises(KeyboardInterrupt):
    multidomain_job.run_multidomain_job(job)
  scores = os.path.join(job.output_dir, "typicality.json")
  os.utime(scores, (0, 0))
  monkeypatch.setattr(training, "_make_train_step", real_make)
  resumed = multidomain_job.run_multidomain_job(job)
  assert os.stat(scores).st_mtime == 0  # the scores were reused, not recomputed
  a, b = _final_weights(full["checkpoint"]), _final_weights(resumed["checkpoint"])
  assert a.keys() == b.keys() and any(k.startswith("mft_domain_embedding") for k in a)
  for name in a:
    np.testing.assert_allclose(a[name], b[name], atol=1e-5, err_msg=name)
  # Scores are never reused under other settings.
  other = _job(tmp_path, "resumed", data, tiny_google_dir)
  other.mft = mft.MFTConfig(alpha=0.9)
  with pytest.raises(ConfigError, match="typicality scores of other data"):
    multidomain_job.run_multidomain_job(other)


def test_bad_corruption_layers_are_refused():
  with pytest.raises(ConfigError, match=r"corruption_layers \[7\] are not layers") as info:
    mft.MFTObjective(mft.MFTConfig(corruption_layers=[2, 7]), 3, 6)
  assert info.value.field == "corruption_layers"  # a CLI shows it as --corruption_layers


def test_multitask_scores_each_example_with_its_domain_head(tiny_google_dir):
  backbone = backbones.load_backbone(tiny_google_dir, dropout=False)
  objective = objectives.MultiTask(num_domains=3, num_labels=2)
  model = _model(backbone, objective)
  bias = np.arange(6, dtype=np.float32) * 10  # domain d's head: biases 20d, 20d + 10
  objective.heads.set_weights([np.zeros([32, 6], np.float32), bias])
  logits = objective.logits(model, _batch(backbone)).numpy()
  np.testing.assert_allclose(logits, [[0, 10], [0, 10], [20, 30], [40, 50], [40, 50], [20, 30]])


def test_adversarial_domain_loss_reaches_the_encoder_reversed(tiny_google_dir):
  x = tf.constant([1.0, -2.0])
  with tf.GradientTape() as tape:
    tape.watch(x)
    y = tf.reduce_sum(3.0 * objectives.reverse_gradient(x))
  np.testing.assert_array_equal(tape.gradient(y, x).numpy(), [-3.0, -3.0])
  backbone = backbones.load_backbone(tiny_google_dir, dropout=False)
  batch = _batch(backbone)
  objective = objectives.Adversarial(num_domains=3, weight=1.0)
  model = _model(backbone, objective)
  # The domain term alone: its gradient on the encoder is minus that of a plain domain loss.
  with tf.GradientTape(persistent=True) as tape:
    pooled, _ = model.encode(batch, training=True)
    reversed_loss = tf.reduce_mean(objectives.cross_entropy(
        batch["domain_ids"], objective.domain_classifier(objectives.reverse_gradient(pooled))))
    plain_loss = tf.reduce_mean(objectives.cross_entropy(
        batch["domain_ids"], objective.domain_classifier(pooled)))
  kernel = [v for v in model.encoder.trainable_variables if "layer_1/output/kernel" in v.name][0]
  reversed_grad = tape.gradient(reversed_loss, kernel).numpy()
  assert np.abs(reversed_grad).max() > 0
  np.testing.assert_allclose(reversed_grad, -tape.gradient(plain_loss, kernel).numpy(),
                             rtol=1e-6, atol=1e-9)


_TWO_DEVICES = textwrap.dedent("""
    import sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from metabert_tf import multidomain_job, training
    strategy = (tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]) if sys.argv[1] == "mirrored"
                else tf.distribute.OneDeviceStrategy("/cpu:0"))
    job = multidomain_job.MultiDomainJob(
        output_dir=sys.argv[2], data=sys.argv[3], method="mft", bert_model=sys.argv[4],
        max_seq_length=16, dropout=False, train=training.FinetuneConfig(
            epochs=2, batch_size=8, learning_rate=1e-3, seed=1, progress=False))
    multidomain_job.run_multidomain_job(job, strategy)
    print(strategy.num_replicas_in_sync)
""")


@pytest.mark.slow
def test_mft_on_two_replicas_matches_one_device(tmp_path, tiny_google_dir):
  data = tiny_models.write_domain_json(str(tmp_path / "data.json"), per_domain=16)
  for kind in ("one_device", "mirrored"):
    proc = subprocess.run([sys.executable, "-c", _TWO_DEVICES, kind, str(tmp_path / kind), data,
                           tiny_google_dir], cwd=REPO_DIR, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
  one = _final_weights(tf.train.latest_checkpoint(str(tmp_path / "one_device/ckpt")))
  two = _final_weights(tf.train.latest_checkpoint(str(tmp_path / "mirrored/ckpt")))
  assert one.keys() == two.keys() and len(one) > 30
  for name in one:
    np.testing.assert_allclose(one[name], two[name], atol=1e-5, err_msg=name)
