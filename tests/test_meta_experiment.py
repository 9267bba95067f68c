"""The leave-one-domain-out experiment (the meta_bert protocol), end to end at toy scale, in
this process through the library (cells in child processes: the LEOPARD protocol's test)."""
import functools
import json
import os

import pytest

from metabert_tf.errors import ConfigError
from metabert_tf.experiments import grid
from metabert_tf.experiments import meta_bert
from tests import tiny_models


@pytest.mark.slow
def test_experiment_runs_every_method_and_setting_and_resumes(tmp_path, tiny_google_dir,
                                                              capsys):
  data = tiny_models.write_domain_json(str(tmp_path / "data.json"))
  out = tmp_path / "exp"
  config = functools.partial(
      meta_bert.Config, output_dir=str(out), held_out=["c"], seeds=[0], test_size=4,
      shots=4, ks=[2], methods=["bert", "fomaml"], bert_model=tiny_google_dir,
      max_seq_length=16, num_support=4, num_query=2, num_train_task=2, inner_batch_size=2,
      steps=2, batch_size=2, precision="fp32", process_per_cell=False)
  text = grid.run(meta_bert, config(data=data))
  err = capsys.readouterr().err
  assert "held-out c, seed 0" in err  # one cell (test_harness.py runs several)
  summary = json.load(open(out / "summary.json"))
  assert set(summary) == {"bert", "fomaml", "fomaml - bert"}
  for method in ("bert", "fomaml"):
    assert set(summary[method]) == {"zero", "n4", "k2"}
    assert all(v["n"] == 1 and 0.0 <= v["mean"] <= 1.0 for v in summary[method].values())
  for setting, gain in summary["fomaml - bert"].items():  # paired: same domain, seed, examples
    expected = summary["fomaml"][setting]["mean"] - summary["bert"][setting]["mean"]
    assert abs(gain["mean"] - expected) < 1e-9
  wins = sum(gain > 0 for gain in summary["fomaml - bert"]["k2"]["accuracies"])
  assert f"({wins}/1 > 0)" in text and text == (out / "results.md").read_text()
  run = out / "c_seed0"
  assert len(json.load(open(run / "test.json"))) == 4 and len(json.load(open(run / "n4.json"))) == 4
  k2 = json.load(open(run / "k2.json"))
  assert sorted(r["label"] for r in k2) == ["negative", "negative", "positive", "positive"]
  meta = json.load(open(run / "fomaml/meta/results.json"))
  assert meta["test_domains"] == ["c"] and "c" not in meta["train_domains"]
  assert not (run / "bert/n4/ckpt").exists()  # fine-tuning checkpoints are dropped
  # Plain BERT zero-shot is the table's chance baseline: its random head is said so.
  assert json.load(open(run / "bert/zero/results.json"))["head"] == "random"
  # A second run reuses every finished run and reports the same table ...
  finished = list(out.glob("*_seed0/**/results.json"))
  assert len(finished) == 1 + 2 * 3  # 1 meta-training, 2 methods x 3 settings
  for path in finished:
    os.utime(path, (0, 0))
  # ... with the data spelt as a relative path this time: the same data, the same settings.
  grid.run(meta_bert, config(data=os.path.relpath(data)))
  assert json.load(open(out / "summary.json")) == summary
  assert all(path.stat().st_mtime == 0 for path in finished)
  # Other settings in the same output_dir are refused rather than mixed with the runs there.
  with pytest.raises(ConfigError, match=r"holds a run with other settings \(steps.*give "
                                        r"another --output_dir"):
    grid.run(meta_bert, config(data=data, steps=3))
