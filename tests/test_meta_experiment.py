"""The leave-one-domain-out experiment driver, end to end at toy scale."""
import json
import os
import subprocess
import sys

from tests import tiny_models
from tests.conftest import REPO_DIR


def test_experiment_runs_every_method_and_setting_and_resumes(tmp_path, tiny_google_dir):
  data = tiny_models.write_domain_json(str(tmp_path / "data.json"))
  out = tmp_path / "exp"
  args = [sys.executable, "-m", "metabert_tf.meta.experiment", f"--data={data}",
          f"--output_dir={out}", "--held_out=b,c", "--seeds=0", "--test_size=4", "--shots=4",
          "--ks=2", f"--bert_model={tiny_google_dir}", "--max_seq_length=16", "--num_support=4",
          "--num_query=2", "--num_train_task=2", "--inner_batch_size=2", "--steps=2",
          "--batch_size=2"]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  proc = subprocess.run(args, cwd=REPO_DIR, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  # Two cells, each in its own process (TensorFlow keeps the memory of every model built).
  assert "[1/2] held-out b, seed 0" in proc.stderr
  assert "[2/2] held-out c, seed 0" in proc.stderr
  summary = json.load(open(out / "summary.json"))
  assert set(summary) == {"bert", "fomaml", "reptile", "fomaml - bert", "reptile - bert"}
  for method in ("bert", "fomaml", "reptile"):
    assert set(summary[method]) == {"zero", "n4", "k2"}
    assert all(v["n"] == 2 and 0.0 <= v["mean"] <= 1.0 for v in summary[method].values())
  for setting, gain in summary["fomaml - bert"].items():  # paired: same domain, seed, examples
    expected = summary["fomaml"][setting]["mean"] - summary["bert"][setting]["mean"]
    assert abs(gain["mean"] - expected) < 1e-9
  wins = sum(gain > 0 for gain in summary["fomaml - bert"]["k2"]["accuracies"])
  assert f"({wins}/2 > 0)" in (out / "results.md").read_text()
  run = out / "c_seed0"
  assert len(json.load(open(run / "test.json"))) == 4 and len(json.load(open(run / "n4.json"))) == 4
  k2 = json.load(open(run / "k2.json"))
  assert sorted(r["label"] for r in k2) == ["negative", "negative", "positive", "positive"]
  meta = json.load(open(run / "fomaml/meta/results.json"))
  assert meta["test_domains"] == ["c"] and "c" not in meta["train_domains"]
  assert not (run / "bert/n4/ckpt").exists()  # fine-tuning checkpoints are dropped
  # A second run (in one process) reuses every finished run and reports the same table.
  finished = list(out.glob("*_seed0/**/results.json"))
  assert len(finished) == 2 * (2 + 3 * 3)  # per cell: 2 meta-trainings, 3 methods x 3 settings
  for path in finished:
    os.utime(path, (0, 0))
  # ... with --data spelt as a relative path this time: the same data, so the same settings.
  relative = [f"--data={os.path.relpath(data, REPO_DIR)}" if a.startswith("--data=") else a
              for a in args]
  again = subprocess.run(relative + ["--noprocess_per_cell"], cwd=REPO_DIR, env=env,
                         capture_output=True, text=True, timeout=600)
  assert again.returncode == 0, again.stderr[-3000:]
  assert json.load(open(out / "summary.json")) == summary
  assert all(path.stat().st_mtime == 0 for path in finished)
  # Other settings in the same output_dir are refused rather than mixed with the runs there.
  other = subprocess.run(args + ["--steps=3"], cwd=REPO_DIR, env=env, capture_output=True,
                         text=True, timeout=600)
  assert other.returncode == 1 and "holds a run with other settings (steps" in other.stderr
  assert "give another --output_dir" in other.stderr
