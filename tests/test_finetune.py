"""Fine-tuning end to end on a tiny BERT: learning, resume after a kill, export, zero-shot."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_text  # noqa: F401

from metabert_tf import backbones
from metabert_tf import finetune_job
from metabert_tf import predict
from metabert_tf import training
from metabert_tf.errors import DataError
from tests import killable


def _job(tmp_path, name, bert_model, toy_task, **overrides):
  train = overrides.pop("train", training.FinetuneConfig(
      epochs=16, batch_size=8, learning_rate=2e-3, warmup_proportion=0.0, seed=3, progress=False))
  fields = dict(output_dir=str(tmp_path / name), train_path=toy_task["train"],
                eval_path=toy_task["eval"], bert_model=bert_model, max_seq_length=16,
                train=train, dropout=False)
  fields.update(overrides)
  return finetune_job.FinetuneJob(**fields)


def _weights(prefix):
  reader = tf.train.load_checkpoint(prefix)
  return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
          if k.startswith(("encoder/", "head/")) and "OPTIMIZER_SLOT" not in k}


def test_finetune_learns_and_writes_outputs(tmp_path, tiny_google_dir, toy_task, monkeypatch):
  job = _job(tmp_path, "run", tiny_google_dir, toy_task, export_dir=str(tmp_path / "run/export"))
  results = finetune_job.run_job(job)
  assert results["accuracy"] >= 0.9, results
  assert results["label_list"] == ["negative", "positive"]
  assert results["train_steps"] == 16 * 3
  # The guard's record: the training loss fell, and the model predicts both classes.
  assert results["train_loss_fell"] and results["train_loss_last"] < results["train_loss_first"]
  assert not results["predicts_one_class"] and len(results["predicted_class_counts"]) == 2
  saved = json.load(open(tmp_path / "run/results.json"))
  assert saved["accuracy"] == results["accuracy"]
  assert tf.train.latest_checkpoint(str(tmp_path / "run/ckpt")).endswith("finetune-48")
  # The finished model alone remains, without the optimizer's slots (2/3 of a resume checkpoint).
  assert sorted(os.listdir(tmp_path / "run/ckpt")) == [
      "checkpoint", "finetune-48.data-00000-of-00001", "finetune-48.index"]
  keys = tf.train.load_checkpoint(results["checkpoint"]).get_variable_to_shape_map()
  assert not any("optimizer" in k.lower() for k in keys) and _weights(results["checkpoint"])
  assert os.listdir(tmp_path / "run/tensorboard")
  # The export takes raw strings and agrees with the trained model.
  rows = [("the movie is very good .", None), ("the book is very boring .", None)]
  preds = predict.predict(job.export_dir, rows, progress=False)
  assert [p["label"] for p in preds] == ["positive", "negative"]
  assert all(abs(sum(p["probabilities"]) - 1) < 1e-5 for p in preds)
  # The same job again: a finished run is evaluated and exported again, not trained again.
  monkeypatch.setattr(training, "_make_train_step",
                      lambda *args: lambda batch: pytest.fail("trained again"))
  again = finetune_job.run_job(job)
  assert again["accuracy"] == results["accuracy"] and again["checkpoint"] == results["checkpoint"]
  assert predict.predict(job.export_dir, rows, progress=False) == preds


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_result(tmp_path, tiny_google_dir, toy_task, monkeypatch):
  config = training.FinetuneConfig(epochs=3, batch_size=8, learning_rate=1e-3,
                                   save_every_steps=2, seed=5, progress=False)
  full = finetune_job.run_job(_job(tmp_path, "full", tiny_google_dir, toy_task, train=config))

  # Killed during step 6; the checkpoint of step 4 is on disk.
  real_make = killable.die_during_step(monkeypatch, 6)
  job = _job(tmp_path, "resumed", tiny_google_dir, toy_task, train=config)
  with pytest.raises(KeyboardInterrupt):
    finetune_job.run_job(job)
  ckpt_dir = job.output_dir + "/ckpt"
  assert tf.train.latest_checkpoint(ckpt_dir).endswith("finetune-4")
  # What SIGKILLs leave: a checkpoint save cut short (TF's <prefix>_temp/), an atomic write's
  # and an export's temp entries (the latter two named as io_utils makes them).
  killable.kill_mid_save(ckpt_dir + "/finetune-6")
  leftovers = [ckpt_dir + "/finetune-6_temp", job.output_dir + "/.results.json.a1b2c3d4.tmp",
               job.output_dir + "/.export.a1b2c3d4.tmp"]
  open(leftovers[1], "w").close()
  os.makedirs(leftovers[2])
  monkeypatch.setattr(training, "_make_train_step", real_make)
  # Killed again after the final weights were written, before the state file names them: the
  # run is still one to resume (from step 8, whose checkpoint has the optimizer).
  real_record = training.checkpoints.record_checkpoint

  def dying_record(directory, prefix, **kwargs):
    raise KeyboardInterrupt
  monkeypatch.setattr(training.checkpoints, "record_checkpoint", dying_record)
  with pytest.raises(KeyboardInterrupt):
    finetune_job.run_job(job)
  assert not any(os.path.exists(p) for p in leftovers)
  assert tf.train.latest_checkpoint(ckpt_dir).endswith("finetune-8")
  monkeypatch.setattr(training.checkpoints, "record_checkpoint", real_record)
  resumed = finetune_job.run_job(job)
  assert resumed["accuracy"] == full["accuracy"]
  # its seconds are those after the resume, and it says from which step
  assert (full["resumed_from_step"], resumed["resumed_from_step"]) == (0, 8)
  assert sorted(os.listdir(ckpt_dir)) == [
      "checkpoint", "finetune-9.data-00000-of-00001", "finetune-9.index"]
  a, b = _weights(full["checkpoint"]), _weights(resumed["checkpoint"])
  assert a.keys() == b.keys() and a
  for name in a:
    np.testing.assert_allclose(a[name], b[name], atol=1e-5, err_msg=name)


def test_zero_shot_from_own_checkpoint_keeps_labels(tmp_path, tiny_google_dir, toy_task):
  trained = finetune_job.run_job(_job(tmp_path, "trained", tiny_google_dir, toy_task))
  ckpt_dir = str(tmp_path / "trained/ckpt")
  backbone = backbones.load_backbone(ckpt_dir)
  assert backbone.label_list == ["negative", "positive"]
  zero = finetune_job.run_job(_job(tmp_path, "zero", ckpt_dir, toy_task, train_path=None))
  assert zero["label_list"] == trained["label_list"]
  assert zero["accuracy"] == pytest.approx(trained["accuracy"])
  # A --label_list in another order maps by name onto the checkpoint's head: same result.
  rev = finetune_job.run_job(_job(tmp_path, "rev", ckpt_dir, toy_task,
                                  label_list=["positive", "negative"], train_path=None))
  assert rev["label_list"] == trained["label_list"]
  assert rev["accuracy"] == pytest.approx(trained["accuracy"])
  # Never a random head scored as the checkpoint's result.
  with pytest.raises(DataError, match=r"names \['neutral'\], which the checkpoint's classifier"):
    finetune_job.run_job(_job(tmp_path, "new", ckpt_dir, toy_task,
                              label_list=["negative", "neutral"], train_path=None))
  with pytest.raises(DataError, match="needs a trained classifier"):
    finetune_job.run_job(_job(tmp_path, "plain", tiny_google_dir, toy_task, train_path=None))
  assert not (tmp_path / "new/results.json").exists()


@pytest.mark.slow
def test_minilm_short_sequences_finetune_and_export(tmp_path, minilm_dir, shared_dir):
  """Integration: the real MiniLM on a LEOPARD k-shot split, short sequences."""
  task_dir = shared_dir / "data/leopard/json/sentiment_books"
  evals = json.load(open(task_dir / "sentiment_books_eval.json"))
  small_eval = tmp_path / "eval.json"
  small_eval.write_text(json.dumps(evals[:16] + evals[-16:]))
  job = finetune_job.FinetuneJob(
      output_dir=str(tmp_path / "minilm"), train_path=str(task_dir / "sentiment_books_train_0_4.json"),
      eval_path=str(small_eval), bert_model="minilm-l6", max_seq_length=32,
      train=training.FinetuneConfig(epochs=2, batch_size=8, progress=False),
      export_dir=str(tmp_path / "minilm/export"))
  results = finetune_job.run_job(job)
  assert results["num_examples"] == 32 and results["num_train_examples"] == 8
  assert results["label_list"] == ["negative", "positive"]
  preds = predict.predict(job.export_dir, [("Naïve café: a GREAT read!", None)], progress=False)
  assert preds[0]["label"] in ("negative", "positive")
