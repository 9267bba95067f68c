"""The LEOPARD evaluation harness, end to end at toy scale (tiny model, LEOPARD-layout toy task)."""
import json
import os
import subprocess
import sys

import pytest

from tests import tiny_models
from tests.conftest import REPO_DIR


def write_leopard_task(data_dir, task, ks, splits):
  """<task>/<task>_train_<F>_<K>.json (K per label) and <task>_eval.json, in LEOPARD's JSON."""
  examples = tiny_models.toy_domain_examples(domains=("x",), per_domain=40)
  rows = [{"sentence1": e.text_a, "label": e.label} for e in examples]
  task_dir = os.path.join(data_dir, task)
  os.makedirs(task_dir)
  by_label = {label: [r for r in rows[:24] if r["label"] == label]
              for label in ("negative", "positive")}
  for k in ks:
    for split in range(splits):
      train = [r for label_rows in by_label.values() for r in label_rows[split * k:(split + 1) * k]]
      with open(os.path.join(task_dir, f"{task}_train_{split}_{k}.json"), "w") as f:
        json.dump(train, f)
  with open(os.path.join(task_dir, f"{task}_eval.json"), "w") as f:
    json.dump(rows[24:], f)


def run_harness(data_dir, out, model, *extra):
  args = [sys.executable, "-m", "metabert_tf.harness", f"--data_dir={data_dir}",
          f"--output_dir={out}", "--tasks=toy", f"--bert_model={model}", "--max_seq_length=16",
          "--steps=2", "--batch_size=2", *extra]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  return subprocess.run(args, cwd=REPO_DIR, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_harness_runs_each_task_and_k_in_a_child_and_resumes(tmp_path, tiny_google_dir):
  write_leopard_task(tmp_path / "data", "toy", ks=(2, 3), splits=1)
  out = tmp_path / "out"
  # two cells, each in a child (the mean and std over splits: the summary test below)
  proc = run_harness(tmp_path / "data", out, tiny_google_dir, "--ks=2,3", "--splits=1")
  assert proc.returncode == 0, proc.stderr[-3000:]
  # Progress goes to stderr: stdout carries results only.
  assert "[1/2] toy, K=2" in proc.stderr and "[2/2] toy, K=3" in proc.stderr
  summary = json.load(open(out / "summary.json"))
  assert set(summary) == {"toy"} and set(summary["toy"]) == {"2", "3"}
  for k in ("2", "3"):
    accuracy = json.load(open(out / f"toy_k{k}_s0" / "results.json"))["accuracy"]
    assert summary["toy"][k]["n"] == 1 and abs(summary["toy"][k]["mean"] - accuracy) < 1e-9
  assert "| toy | fine-tuning |" in (out / "results.md").read_text()
  assert (out / "results.png").stat().st_size > 0
  assert not (out / "toy_k2_s0" / "ckpt").exists()  # dropped unless --keep_checkpoints
  # A second run (in one process this time) reuses every finished run and reports the same table.
  for run in out.glob("toy_k*_s*"):
    os.utime(run / "results.json", (0, 0))
  again = run_harness(tmp_path / "data", out, tiny_google_dir, "--ks=2,3", "--splits=1",
                      "--noprocess_per_cell")
  assert again.returncode == 0, again.stderr[-3000:]
  assert "[1/2] toy, K=2: finished" in again.stderr  # passed by, not run again
  assert json.load(open(out / "summary.json")) == summary
  assert all((run / "results.json").stat().st_mtime == 0 for run in out.glob("toy_k*_s*"))


def test_harness_names_a_missing_split_file_before_running_anything(tmp_path, tiny_google_dir):
  write_leopard_task(tmp_path / "data", "toy", ks=(2,), splits=1)
  out = tmp_path / "out"
  proc = run_harness(tmp_path / "data", out, tiny_google_dir, "--ks=2", "--splits=2")
  assert proc.returncode == 1
  assert "toy_train_1_2.json" in proc.stderr and "no such split file" in proc.stderr
  assert not any(out.glob("toy_k*"))


def test_per_k_config_gives_epochs_and_batch_per_class(tmp_path):
  import pytest  # pylint: disable=import-outside-toplevel
  from metabert_tf.errors import DataError  # pylint: disable=import-outside-toplevel
  from metabert_tf.experiments import recipes  # pylint: disable=import-outside-toplevel
  shipped = os.path.join(REPO_DIR, "configs", "leopard_per_k.json")
  assert recipes.read_per_k_config(shipped, "leopard", [4, 8, 16, 32])["4"] == [150, 2]
  assert recipes.read_per_k_config(shipped, "hybrid_smlmt", [8])["8"] == [175, 8]
  assert recipes.read_per_k_config(None, "leopard", [4]) is None
  with pytest.raises(DataError, match="no settings for --per_k_method 'maml'"):
    recipes.read_per_k_config(shipped, "maml", [4])
  with pytest.raises(DataError, match=r"K = \[64\]"):
    recipes.read_per_k_config(shipped, "leopard", [64])


def test_per_k_settings_are_multiples_of_the_task_classes():
  from metabert_tf.data.examples import LabeledExample  # pylint: disable=import-outside-toplevel
  from metabert_tf.experiments import recipes  # pylint: disable=import-outside-toplevel
  examples = [LabeledExample("a", label) for label in ("x", "y", "z", "x")]
  assert recipes.epochs_and_batch([150, 2], examples) == (450, 6)


def test_frozen_encoder_baselines_beside_fine_tuning(tmp_path, tiny_google_dir):
  """methods: the frozen-encoder baselines run in the same grid, a row each; the nearest class
  mean is the numpy one of the same features."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  from metabert_tf import frozen  # pylint: disable=import-outside-toplevel
  from metabert_tf.experiments import grid, leopard_kshot  # pylint: disable=import-outside-toplevel
  write_leopard_task(tmp_path / "data", "toy", ks=(3,), splits=1)
  config = leopard_kshot.Config(
      data_dir=str(tmp_path / "data"), output_dir=str(tmp_path / "out"), tasks=["toy"], ks=[3],
      splits=1, bert_model=tiny_google_dir, max_seq_length=16, steps=2, batch_size=2,
      methods=["fine-tuning", "frozen-prototypes", "frozen-lr"], process_per_cell=False)
  table = grid.run(leopard_kshot, config)
  for label in ("fine-tuning", "frozen encoder + nearest class mean",
                "frozen encoder + logistic regression"):
    assert f"| toy | {label} |" in table
  summary = json.load(open(tmp_path / "out/summary.json"))
  assert set(summary["methods"]) == {"fine-tuning", "frozen encoder + nearest class mean",
                                     "frozen encoder + logistic regression"}
  lr = json.load(open(tmp_path / "out/frozen-lr/toy_k3_s0/results.json"))
  assert lr["method"] == "frozen-lr" and lr["train_accuracy"] == 1.0  # 6 points, 32 dims
  x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
  prototypes = frozen.fit_prototypes(x, np.array([0, 0, 1]), 2)
  assert list(frozen.predict_prototypes(prototypes, np.array([[0.2, 1.0], [1.0, 0.3]]))) == [1, 0]


def test_frozen_splits_of_a_cell_reuse_the_model_and_eval_features(tmp_path, tiny_google_dir):
  """The splits of a cell score the same eval file with the same frozen encoder: built and
  encoded once per process, with the results of a fresh process."""
  from metabert_tf import frozen  # pylint: disable=import-outside-toplevel
  write_leopard_task(tmp_path / "data", "toy", ks=(3,), splits=2)
  task = tmp_path / "data" / "toy"

  def job(split, name):
    return frozen.FrozenJob(output_dir=str(tmp_path / name), bert_model=tiny_google_dir,
                            train_path=str(task / f"toy_train_{split}_3.json"),
                            eval_path=str(task / "toy_eval.json"), max_seq_length=16)
  frozen._LAST.clear()  # pylint: disable=protected-access
  frozen.run_job(job(0, "a"))
  model = frozen._LAST["model"][1][2]  # pylint: disable=protected-access
  second = frozen.run_job(job(1, "b"))
  assert frozen._LAST["model"][1][2] is model  # pylint: disable=protected-access
  frozen._LAST.clear()  # pylint: disable=protected-access
  fresh = frozen.run_job(job(1, "c"))
  assert second["accuracy"] == fresh["accuracy"]
  assert second["predicted_class_counts"] == fresh["predicted_class_counts"]


def test_summary_is_the_mean_and_population_std_over_splits():
  from metabert_tf import evaluation  # pylint: disable=import-outside-toplevel
  summary = evaluation.mean_std_summary({("toy", "fine-tuning"): {2: [0.5, 0.7, 0.9]}})
  stats = summary[("toy", "fine-tuning")]["2"]  # columns are strings, as in summary.json
  assert stats["n"] == 3 and abs(stats["mean"] - 0.7) < 1e-12
  assert abs(stats["std"] - (0.08 / 3) ** 0.5) < 1e-12  # population std: divided by n, not n - 1
  assert stats["accuracies"] == [0.5, 0.7, 0.9]
