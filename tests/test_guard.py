"""The guard for users (issue 18): every fine-tuning run records whether its training loss fell
and whether it predicts one class for everything; the LEOPARD table marks such runs. And the
prototype start of a dense head."""
import json
import os

import numpy as np
import tensorflow as tf

from metabert_tf import backbones
from metabert_tf import datasets
from metabert_tf import evaluation
from metabert_tf import finetune_job
from metabert_tf import records
from metabert_tf import training
from metabert_tf.experiments import grid
from metabert_tf.experiments import leopard_kshot
from tests import tiny_models


def test_one_class_predictions_are_named():
  one = evaluation.classification_metrics([0, 1, 1, 0], [1, 1, 1, 1])
  assert one["predicts_one_class"] and one["predicted_class_counts"] == {1: 4}
  both = evaluation.classification_metrics([0, 1, 1, 0], [0, 1, 1, 1])
  assert not both["predicts_one_class"] and both["predicted_class_counts"] == {0: 1, 1: 3}


def test_a_run_that_does_not_learn_says_so(tmp_path, tiny_google_dir):
  # One batch holds the whole training set, so every step sees the same loss; at a learning
  # rate of ~0 it cannot fall.
  paths = tiny_models.write_toy_task(str(tmp_path / "task"), n_per_label=4)
  results = finetune_job.run_job(finetune_job.FinetuneJob(
      output_dir=str(tmp_path / "still"), train_path=paths["train"], eval_path=paths["eval"],
      bert_model=tiny_google_dir, max_seq_length=16, dropout=False,
      train=training.FinetuneConfig(epochs=5, batch_size=8, learning_rate=1e-12,
                                    warmup_proportion=0.0, progress=False)))
  assert results["train_loss_fell"] is False
  assert abs(results["train_loss_first"] - results["train_loss_last"]) < 1e-5
  assert evaluation.did_not_learn(results)
  # A finished run, re-run, reports the same (the first window was saved beside it).
  again = finetune_job.run_job(finetune_job.FinetuneJob(
      output_dir=str(tmp_path / "still"), train_path=paths["train"], eval_path=paths["eval"],
      bert_model=tiny_google_dir, max_seq_length=16, dropout=False,
      train=training.FinetuneConfig(epochs=5, batch_size=8, learning_rate=1e-12,
                                    warmup_proportion=0.0, progress=False)))
  assert again["train_loss_first"] == results["train_loss_first"]


def test_the_loss_trend_keeps_only_the_steps_a_resumed_run_does_not_redo(tmp_path):
  """train_loss.json of an earlier attempt: a run started over ignores it; a run resumed at step
  s keeps the losses of steps <= s and computes the others again."""
  training.LossTrend(str(tmp_path), 10, 2, write=True).add(1, 5.0)  # window 2: not yet written
  assert not os.path.exists(tmp_path / "train_loss.json")
  with open(tmp_path / "train_loss.json", "w") as f:
    json.dump({"first": [5.0, 4.0], "last": [2.0, 1.0]}, f)  # steps 1-2 and 9-10
  assert training.LossTrend(str(tmp_path), 10, 2, write=False).first == []
  resumed = training.LossTrend(str(tmp_path), 10, 2, write=False, start_step=1)
  assert (resumed.first, resumed.last) == ([5.0], [])
  resumed = training.LossTrend(str(tmp_path), 10, 2, write=False, start_step=9)
  assert (resumed.first, resumed.last) == ([5.0, 4.0], [2.0])
  resumed.add(10, 0.5)
  assert resumed.summary()["train_loss_last"] == 1.25


def test_the_leopard_table_marks_runs_that_did_not_learn(tmp_path):
  config = leopard_kshot.Config(data_dir=str(tmp_path), output_dir=str(tmp_path / "out"),
                                tasks=["t"], ks=[4], splits=3, label="m")
  runs = [dict(accuracy=0.5, train_loss_fell=False), dict(accuracy=0.7, train_loss_fell=True),
          dict(accuracy=0.5, train_loss_fell=True, predicts_one_class=True)]
  for split, results in enumerate(runs):
    run_dir = tmp_path / "out" / f"t_k4_s{split}"
    os.makedirs(run_dir)
    (run_dir / "results.json").write_text(json.dumps(results))
  table = leopard_kshot.report(config, [grid.Cell("t, K=4", ("fine-tuning", "t", 4))])
  assert "| t | m | 56.7 +- 9.4 (2/3 did not learn) |" in table
  assert json.load(open(tmp_path / "out/summary.json"))["t"]["4"]["not_learned"] == 2


def test_a_prototype_head_starts_as_the_nearest_class_mean(tmp_path, tiny_google_dir):
  """--head_init prototypes: W_c = 2 mu_c, b_c = -|mu_c|^2, so before any learning the model
  predicts the class whose mean training feature is nearest (checked against numpy)."""
  paths = tiny_models.write_toy_task(str(tmp_path / "task"), n_per_label=6)
  results = finetune_job.run_job(finetune_job.FinetuneJob(
      output_dir=str(tmp_path / "proto"), train_path=paths["train"], eval_path=paths["eval"],
      bert_model=tiny_google_dir, max_seq_length=16, dropout=False, head_init="prototypes",
      train=training.FinetuneConfig(epochs=1, batch_size=4, learning_rate=1e-12,
                                    warmup_proportion=0.0, progress=False)))
  backbone = backbones.load_backbone(tiny_google_dir, dropout=False)
  model = finetune_job.build_classifier(tf.distribute.get_strategy(), backbone,
                                        results["label_list"], results["pooling"], dropout=False)
  encoder = backbone.input_encoder(16)
  feats = {p: records.encode(datasets.read(paths[p]), encoder, results["label_list"])
           for p in ("train", "eval")}
  pooled = {p: np.asarray(model.encode(
      {k: tf.constant(v) for k, v in f.items() if k in records.MODEL_INPUTS})[0])
      for p, f in feats.items()}
  means = np.stack([pooled["train"][feats["train"]["label_ids"] == c].mean(0) for c in (0, 1)])
  nearest = np.argmin(((pooled["eval"][:, None] - means[None]) ** 2).sum(-1), axis=1)
  assert results["head_init"] == "prototypes"
  assert results["accuracy"] == np.mean(nearest == feats["eval"]["label_ids"])
