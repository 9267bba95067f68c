"""run_meta_train.py end to end: outputs, resume after a kill, labels kept through every stage."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from metabert_tf import finetune_job
from metabert_tf import predict
from metabert_tf import training
from metabert_tf.errors import ConfigError
from metabert_tf.meta import job as meta_job
from metabert_tf.meta import leopard
from metabert_tf.meta import reptile
from tests import meta_fixtures
from tests import programs
from tests import tiny_models
from tests.conftest import REPO_DIR


_ADAM_INNER = dict(inner_optimizer="adam", inner_update_lr=1e-3)
# No meta-test for LEOPARD (it traces a second function; FOMAML and Reptile cover the history).
_LEOPARD = dict(train_lr=0.05, learning_rate=1e-3, label_emb_size=8, warp_layers=True,
                num_test_task=0)


# FOMAML keeps no state the two do not: an outer optimizer (LEOPARD's) and an inner Adam
# (Reptile's).
@pytest.mark.slow
@pytest.mark.parametrize("algorithm,own", [(reptile, _ADAM_INNER), (leopard, _LEOPARD)])
def test_killed_meta_training_resumes_to_the_same_weights(tmp_path, tiny_google_dir, algorithm,
                                                          own):
  settings = {"epochs": 2, "num_test_task": 1, **own}
  full = meta_fixtures.make_trainer(tiny_google_dir, tmp_path / "full", algorithm, **settings)
  full.train()
  killed = meta_fixtures.make_trainer(tiny_google_dir, tmp_path / "killed", algorithm, **settings)
  real_step = killed.train_step

  def dying_step(step):
    if step == 3:
      raise KeyboardInterrupt
    return real_step(step)
  killed.train_step = dying_step
  with pytest.raises(KeyboardInterrupt):
    killed.train(save_every_steps=1)
  assert tf.train.latest_checkpoint(killed.ckpt_dir).endswith("meta.epoch-2.step-3")
  # A new process: fresh model from the backbone, then resume from the checkpoint.
  resumed = meta_fixtures.make_trainer(tiny_google_dir, tmp_path / "killed", algorithm, **settings)
  history = resumed.train(save_every_steps=1)
  assert int(resumed.step.numpy()) == 4
  assert [h["step"] for h in history] == [0, 2, 4]  # one meta-test per epoch end, none lost
  # Epoch ends are kept; mid-epoch saves (steps 1 and 3) only until the next save.
  assert sorted(f for f in os.listdir(resumed.ckpt_dir) if f.endswith(".index")) == [
      "meta.epoch-1.step-2.index", "meta.epoch-2.step-4.index"]
  state = tf.train.get_checkpoint_state(resumed.ckpt_dir)
  assert [os.path.basename(p) for p in state.all_model_checkpoint_paths] == [
      "meta.epoch-1.step-2", "meta.epoch-2.step-4"]
  for a, b in zip(meta_fixtures.meta_values(full), meta_fixtures.meta_values(resumed)):
    np.testing.assert_allclose(a, b, atol=1e-6)
  for a, b in zip(full.outer_vars[len(full.meta_vars):], resumed.outer_vars[len(full.meta_vars):]):
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-7)  # LEOPARD's learned rates


def test_test_domains_are_never_meta_trained():
  domains, ids = ["a", "b", "c"], [0, 0, 0, 1, 1, 2, 2, 2, 2]
  assert meta_job.choose_domains(domains, ids, ["c"], 100, "data.json") == ["a", "b"]
  assert meta_job.choose_domains(domains, ids, ["c"], 1, "data.json") == ["b"]  # the smallest
  with pytest.raises(ConfigError, match="not in data.json"):
    meta_job.choose_domains(domains, ids, ["z"], 100, "data.json")
  with pytest.raises(ConfigError, match="no domain is left"):
    meta_job.choose_domains(domains, ids, ["a", "b", "c"], 100, "data.json")


def _run(*args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  return subprocess.run([sys.executable, *args], cwd=REPO_DIR, env=env, capture_output=True,
                        text=True, timeout=300)


META_FLAGS = ["--num_support=4", "--num_query=2", "--num_train_task=4", "--outer_batch_size=2",
              "--inner_batch_size=2", "--inner_update_step=1", "--inner_update_step_eval=1",
              "--epochs=2", "--max_seq_length=16", "--noprogress", "--inner_update_lr=1e-3",
              "--outer_update_lr=1e-3"]


@pytest.mark.slow
def test_meta_train_cli_then_finetune_zero_shot_and_predict_keep_labels(tmp_path, tiny_google_dir):
  data = tiny_models.write_domain_json(str(tmp_path / "data.json"))
  out = tmp_path / "meta"
  proc = _run("run_meta_train.py", f"--data={data}", "--test_domains=c",
              f"--bert_model={tiny_google_dir}", f"--output_dir={out}", *META_FLAGS)
  assert proc.returncode == 0, proc.stderr[-3000:]
  results = json.load(open(out / "results.json"))
  assert results["train_domains"] == ["a", "b"] and results["test_domains"] == ["c"]
  assert [h["step"] for h in results["meta_test_history"]] == [0, 2, 4]
  assert results["checkpoint"].endswith("ckpt/meta.epoch-2.step-4")
  for name in ("hyparams.txt", "log.txt", "tensorboard", "ckpt/meta.epoch-1.step-2.index"):
    assert (out / name).exists(), name
  assert "--test_domains=c" in (out / "hyparams.txt").read_text()
  assert "meta-test accuracy" in (out / "log.txt").read_text()
  # Same command again: everything is done, it resumes and changes nothing.
  # in this process this time
  status, err = programs.run("run_meta_train.py", f"--data={data}", "--test_domains=c",
                             f"--bert_model={tiny_google_dir}", f"--output_dir={out}", *META_FLAGS)
  assert status == 0, err[-2000:]
  assert "Resumed meta-training" in (out / "log.txt").read_text()
  again_results = json.load(open(out / "results.json"))
  assert again_results["meta_test_history"] == results["meta_test_history"]

  # Fine-tune from the meta-learned weights, with the labels given in the *other* order in the
  # data file order: ids must follow the checkpoint (negative=0, positive=1) at every stage.
  task = tiny_models.write_toy_task(str(tmp_path / "task"))
  job = finetune_job.FinetuneJob(
      output_dir=str(tmp_path / "ft"), train_path=task["train"], eval_path=task["eval"],
      bert_model=results["checkpoint"], max_seq_length=16, export_dir=str(tmp_path / "ft/export"),
      train=training.FinetuneConfig(epochs=1, batch_size=8, progress=False))
  tuned = finetune_job.run_job(job)
  zero = finetune_job.run_job(finetune_job.FinetuneJob(
      output_dir=str(tmp_path / "zero"), eval_path=task["eval"], bert_model=results["checkpoint"],
      max_seq_length=16, train=training.FinetuneConfig(progress=False)))
  assert results["label_list"] == tuned["label_list"] == zero["label_list"] == ["negative", "positive"]
  assert json.load(open(tmp_path / "ft/export/labels.json"))["label_list"] == ["negative", "positive"]
  pred = predict.predict(job.export_dir, [("the movie is very good .", None)], progress=False)[0]
  assert pred["label"] == ["negative", "positive"][int(np.argmax(pred["probabilities"]))]


def test_meta_train_cli_errors(tmp_path, tiny_google_dir):
  data = tiny_models.write_domain_json(str(tmp_path / "data.json"))
  # In this process: each ends before any training (a subprocess costs seconds of imports).
  line = programs.error_line("run_meta_train.py", f"--data={data}", "--test_domains=kitchen",
                             f"--bert_model={tiny_google_dir}", f"--output_dir={tmp_path / 'o'}",
                             *META_FLAGS)
  assert "kitchen" in line
  line = programs.error_line("run_meta_train.py", f"--data={data}", "--num_support=40",
                             f"--bert_model={tiny_google_dir}", f"--output_dir={tmp_path / 'o2'}",
                             "--max_seq_length=16")
  assert "fewer than num_support" in line
  line = programs.error_line("run_meta_train.py", f"--data={data}",
                             f"--bert_model={tiny_google_dir}", f"--output_dir={tmp_path / 'o3'}",
                             *META_FLAGS, "--outer_batch_size=5")
  assert "--outer_batch_size (5) must be at most" in line
  assert not any((tmp_path / o).exists() for o in ("o", "o2", "o3"))


@pytest.mark.slow
def test_hybrid_smlmt_cli_takes_several_sources_and_its_flags(tmp_path, tiny_google_dir):
  from tests.test_leopard import _sources  # pylint: disable=import-outside-toplevel
  specs = _sources(tmp_path)
  common = [f"--bert_model={tiny_google_dir}", "--max_seq_length=16", "--meta_batchsz=9",
            "--num_batches=3", "--num_query=3", "--num_train_task=2", "--outer_batch_size=2",
            "--noprogress"] + [f"--data={s}" for s in specs]
  out = tmp_path / "hs"
  status, err = programs.run("run_meta_train.py", "--algorithm=hybrid_smlmt",  # in-process
                             f"--output_dir={out}", "--average_query_every=2",
                             "--weight_query_loss", *common)
  assert status == 0, err[-3000:]
  results = json.load(open(out / "results.json"))
  assert len(results["train_domains"]) == 5 and "(0.250)" in (out / "log.txt").read_text()
  settings = results["algorithm_config"]  # hybrid_smlmt's presets, and the flags given
  assert settings["warp_layers"] and settings["weight_query_loss"]
  assert settings["average_query_every"] == 2
  line = programs.error_line("run_meta_train.py", "--algorithm=smlmt",
                             f"--output_dir={tmp_path / 's'}", *common, "--num_batches=4")
  assert "must be a multiple of num_batches (4)" in line
  # the task-feature size is the released head's: the prototype start would ignore it
  line = programs.error_line("run_meta_train.py", "--algorithm=smlmt",
                             f"--output_dir={tmp_path / 's'}", *common, "--label_emb_size=8")
  assert "--label_emb_size is read with --head_init released only" in line
  assert not (tmp_path / "s").exists()


def test_benchmark_learners_from_the_cli_and_their_unread_flags(tmp_path, tiny_google_dir):
  """proto_bert from run_meta_train.py in this process (its settings, its curve), and a flag
  only the LEOPARD family reads refused for ProtoMAML-FOMAML before anything is written."""
  specs = [tiny_models.write_domain_json(str(tmp_path / "toy.json"))]  # 3 sources of 2 classes
  common = [f"--bert_model={tiny_google_dir}", "--max_seq_length=16", "--meta_batchsz=9",
            "--num_batches=3", "--num_query=3", "--num_train_task=2", "--outer_batch_size=2",
            "--noprogress"] + [f"--data={s}" for s in specs]
  out = tmp_path / "pb"
  status, err = programs.run("run_meta_train.py", "--algorithm=proto_bert",
                             f"--output_dir={out}", "--learning_rate=3e-5", "--epochs=2", *common)
  assert status == 0, err[-3000:]
  results = json.load(open(out / "results.json"))
  assert results["algorithm_config"]["learning_rate"] == 3e-5 and results["train_seconds"] > 0
  # 2 tasks, 2 per meta-step, 2 epochs: the same tasks twice
  assert [h["step"] for h in json.load(open(out / "query_loss_history.json"))] == [1, 2]
  line = programs.error_line("run_meta_train.py", "--algorithm=proto_fomaml", "--train_lr=0.1",
                             f"--output_dir={tmp_path / 'pf'}", *common)
  assert "--train_lr is not read by --algorithm=proto_fomaml" in line
  assert not (tmp_path / "pf").exists()
