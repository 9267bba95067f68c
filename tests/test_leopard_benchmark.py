"""The LEOPARD benchmark's meta-learned methods end to end at toy scale: each meta-trains once
on the shared GLUE / AG News task sources (tiny BERT, a few tasks), then meets the toy task as
its method says; every run lands in leopard_benchmark.json, and a second run reuses them."""
import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from metabert_tf.errors import ConfigError
from metabert_tf.errors import DataError
from metabert_tf.experiments import grid
from metabert_tf.experiments import leopard_kshot
from tests.test_harness import write_leopard_task

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# One of each way to meet a new task (MT-BERT's, plain fine-tuning, is fine-tuning's; FOMAML's
# and Reptile's, fine-tuning from a prototype head, is proto-bert-ft's).
METHODS = ["fine-tuning", "proto-bert", "proto-bert-ft", "leopard", "leopard-encoder-ft"]


def _config(tmp_path, model_dir, meta_train_dir, **overrides):
  per_k = tmp_path / "per_k.json"
  per_k.write_text(json.dumps({"leopard": {"3": [1, 1]}, "hybrid_smlmt": {"3": [1, 1]}}))
  return leopard_kshot.Config(**{**dict(
      data_dir=str(tmp_path / "data"), output_dir=str(tmp_path / "out"), tasks=["toy"], ks=[3],
      splits=1, bert_model=model_dir, max_seq_length=16, steps=2, batch_size=2,
      methods=METHODS, process_per_cell=False, meta_train_dir=meta_train_dir, meta_tasks=4,
      meta_max_seq_length=16, max_examples_per_source=120, leopard_per_k_config=str(per_k)),
      **overrides})


@pytest.mark.slow
def test_meta_learned_methods_train_once_and_are_recorded(tmp_path, tiny_google_dir, shared_dir):
  write_leopard_task(tmp_path / "data", "toy", ks=(3,), splits=1)
  config = _config(tmp_path, tiny_google_dir, os.path.join(shared_dir, "data", "meta_train"))
  table = grid.run(leopard_kshot, config)
  for label in ("Proto-BERT", "Proto-BERT, fine-tuned", "LEOPARD"):
    assert f"| toy | {label} |" in table
  out = tmp_path / "out"
  record = json.load(open(out / "leopard_benchmark.json"))
  assert sorted((r["method"], r["k"], r["split"]) for r in record["runs"]) == sorted(
      (m, 3, 0) for m in METHODS)
  for r in record["runs"]:
    assert 0.0 <= r["accuracy"] <= 1.0 and r["meta_learned"] == (r["method"] != "fine-tuning")
  assert set(record["meta_training"]) == set(METHODS) - {"fine-tuning"}
  for name, meta in record["meta_training"].items():
    assert meta["num_tasks"] == 4 and meta["seconds"] > 0, name
    assert [c["tasks"] for c in meta["curve"]] == [4], name  # 4 tasks = one meta-step of 4
    # a uniform guess over the step's tasks: mean ln N, N = 2 (GLUE) or 4 (AG News)
    assert np.log(2) - 1e-6 <= meta["curve"][0]["uniform_loss"] <= np.log(4) + 1e-6, name
  assert "| Proto-BERT | 4 tasks" in (out / "benchmark.md").read_text()
  assert (out / "meta_curves.png").stat().st_size > 0
  proto = json.load(open(out / "proto-bert/toy_k3_s0/results.json"))
  assert proto["method"] == "frozen-euclidean"
  # Proto-BERT fine-tuned: Proto-BERT's meta-training (not one of its own), a prototype start
  tuned = json.load(open(out / "proto-bert-ft/toy_k3_s0/results.json"))
  assert tuned["head_init"] == "prototypes" and tuned["bert_model"].endswith("meta/proto-bert")
  assert not (out / "meta" / "proto-bert-ft").exists()
  assert (record["meta_training"]["proto-bert-ft"]["meta_run"]
          == record["meta_training"]["proto-bert"]["meta_run"])
  plain = json.load(open(out / "leopard-encoder-ft/toy_k3_s0/results.json"))
  assert plain["head_init"] == "prototypes" and not plain["leopard_head"]
  assert plain["train_config"]["epochs"] == 1  # plain fine-tuning's recipe: 2 steps of 2 of 6
  leopard = json.load(open(out / "leopard/toy_k3_s0/results.json"))
  # the LEOPARD recipe of the per-K table: [1, 1] per class x N = 2
  assert (leopard["train_config"]["epochs"], leopard["train_config"]["batch_size"]) == (2, 2)
  # Everything is reused on a second run.
  stamps = {p: p.stat().st_mtime for p in out.glob("**/results.json")}
  grid.run(leopard_kshot, config)
  assert {p: p.stat().st_mtime for p in out.glob("**/results.json")} == stamps
  # Other meta-training settings for the same output dir are refused (the baselines are not
  # affected by them, so the grid's fingerprint leaves them free).
  with pytest.raises(ConfigError, match="meta_tasks"):
    grid.run(leopard_kshot, dataclasses.replace(config, meta_tasks=8))
  # So is another per-K table for the LEOPARD family's finished runs (checked per run).
  other = tmp_path / "other_per_k.json"
  other.write_text(json.dumps({"leopard": {"3": [2, 1]}}))
  with pytest.raises(ConfigError, match="another recipe .epochs 2, now 4"):
    grid.run(leopard_kshot, dataclasses.replace(config, leopard_per_k_config=str(other)))
  # and another plain recipe for fine-tuning's (2 steps of batch 2 over 6 examples: 1 epoch)
  with pytest.raises(ConfigError,
                     match=r"out/toy_k3_s0 was fine-tuned with another recipe .epochs 1, now 5"):
    grid.run(leopard_kshot, dataclasses.replace(config, epochs=5))


def test_a_leopard_family_method_needs_its_per_k_table(tmp_path, tiny_google_dir):
  write_leopard_task(tmp_path / "data", "toy", ks=(3,), splits=1)
  config = _config(tmp_path, tiny_google_dir, "unused", methods=["leopard"],
                   leopard_per_k_config=None)
  with pytest.raises(ConfigError) as raised:
    leopard_kshot.check(config)
  assert raised.value.field == "leopard_per_k_config"
  config = _config(tmp_path, tiny_google_dir, "unused", methods=["hybrid-smlmt"])
  with pytest.raises(ConfigError, match="SMLMT tasks"):
    leopard_kshot.check(config)
  (tmp_path / "per_k.json").write_text('{"leopard": {"3": [1, 1]}}')
  with pytest.raises(DataError, match="no settings for 'hybrid_smlmt'"):
    leopard_kshot.check(config)


def test_benchmark_report_averages_splits_every_task_has(tmp_path):
  from metabert_tf.experiments import benchmark_report  # pylint: disable=import-outside-toplevel

  def run(method, task, split, accuracy, **extra):
    return {"method": method, "task": task, "k": 4, "split": split, "accuracy": accuracy,
            "meta_learned": method != "fine-tuning", "train_seconds": 2.0, "eval_seconds": 1.0,
            **extra}
  record = {"runs": [run("fine-tuning", "a", 0, 0.5), run("fine-tuning", "a", 1, 0.7),
                     run("fine-tuning", "b", 0, 0.7), run("fine-tuning", "b", 1, 0.9),
                     run("leopard", "a", 0, 0.6, did_not_learn=True), run("leopard", "b", 0, 0.8),
                     run("leopard", "b", 1, 1.0)],
            "meta_training": {"leopard": {"num_tasks": 8, "seconds": 7200.0, "curve": [
                {"tasks": 4 * s, "query_loss": loss, "uniform_loss": 0.7}
                for s, loss in enumerate([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05,
                                          0.03], 1)]}}}
  summary = benchmark_report.summarize(record)
  # per split the mean over tasks (0.6, 0.8), then over splits
  stats = summary["average"]["fine-tuning"]["4"]
  assert np.allclose([stats["mean"], stats["std"]], [0.7, 0.1]) and stats["n"] == 2
  assert summary["average"]["leopard"]["4"]["n"] == 1  # split 1 of task a is missing
  assert summary["per_task"]["leopard"]["a"]["4"]["not_learned"] == 1
  text = benchmark_report.write(record, tmp_path / "t.md", tmp_path / "t.png", tmp_path / "c.png",
                                tmp_path / "tasks.png")
  assert "| LEOPARD | 70.0 +- 0.0 (n=1) | +0.0% |" in text
  # the last 10% of 11 steps: the last one; a uniform guess's loss beside it
  assert "| LEOPARD | 8 tasks, 2.00 h | 0.030 (0.700) | 2 | 1 |" in text
  for plot in ("t.png", "c.png", "tasks.png"):
    assert (tmp_path / plot).stat().st_size > 0, plot
  # the documented command prints the same table, and no warning of a module loaded twice
  (tmp_path / "runs.json").write_text(json.dumps(record))
  proc = subprocess.run([sys.executable, "-m", "metabert_tf.experiments.benchmark_report",
                         "--runs", str(tmp_path / "runs.json")], capture_output=True, text=True,
                        check=True, cwd=REPO)
  assert proc.stdout == text and "RuntimeWarning" not in proc.stderr, proc.stderr
  # a file that is not a runs record: named, not a traceback (load is what main reads with)
  for content, message in (("{", "not valid JSON"), ('{"runs": 3}', 'a "runs" list')):
    (tmp_path / "bad.json").write_text(content)
    with pytest.raises(DataError, match=message):
      benchmark_report.load(tmp_path / "bad.json")
  with pytest.raises(DataError, match="missing.json: No such file"):
    benchmark_report.load(tmp_path / "missing.json")


def test_methods_on_the_same_sources_read_them_once(tmp_path, tiny_google_dir, monkeypatch):
  from metabert_tf.experiments import meta_stage  # pylint: disable=import-outside-toplevel
  from metabert_tf.experiments import methods  # pylint: disable=import-outside-toplevel
  from metabert_tf.meta import job as meta_job  # pylint: disable=import-outside-toplevel
  reads = []
  monkeypatch.setattr(meta_job, "read_inputs", lambda job: reads.append(job.algorithm))
  monkeypatch.setattr(meta_stage, "_CHECKED", set())
  config = _config(tmp_path, tiny_google_dir, str(tmp_path / "meta_train"),
                   smlmt_data=["s.tf_record"])
  for name in ("proto-bert", "fomaml", "leopard", "mt-bert", "smlmt", "hybrid-smlmt"):
    meta_stage.check(config, methods.LEOPARD[name])
  # the six labeled sources once, the SMLMT files once, both together once
  assert reads == ["proto_bert", "smlmt", "hybrid_smlmt"]


def test_runs_recorded_elsewhere_are_kept_not_rerun(tmp_path, tiny_google_dir, monkeypatch,
                                                   capsys):
  """A new machine starts from the committed leopard_benchmark.json: its runs count, nothing
  is re-run (their cells are passed by, no child started), and an invocation of fewer methods
  or other settings cannot drop or mix them."""
  import shutil  # pylint: disable=import-outside-toplevel
  write_leopard_task(tmp_path / "data", "toy", ks=(3,), splits=1)
  config = _config(tmp_path, tiny_google_dir, "unused",
                   methods=["fine-tuning", "frozen-prototypes"])
  grid.run(leopard_kshot, config)
  first = json.load(open(tmp_path / "out" / "leopard_benchmark.json"))
  elsewhere = tmp_path / "elsewhere"
  elsewhere.mkdir()
  moved = dataclasses.replace(config, output_dir=str(elsewhere))
  cells = leopard_kshot.cells(moved)
  assert [leopard_kshot.finished(moved, c) for c in cells] == [False, False]  # no runs file yet
  shutil.copy(tmp_path / "out" / "leopard_benchmark.json", elsewhere)
  assert [leopard_kshot.finished(moved, c) for c in cells] == [True, True]
  capsys.readouterr()
  with monkeypatch.context() as patch:
    patch.setattr(leopard_kshot, "run_cell", lambda *args: pytest.fail("a finished cell ran"))
    table = grid.run(leopard_kshot, moved)
  assert "[1/2] fine-tuning: toy, K=3: finished" in capsys.readouterr().err
  assert "| toy | fine-tuning |" in table and "| toy | frozen encoder + nearest" in table
  assert not list(elsewhere.glob("**/results.json"))  # nothing re-run
  again = json.load(open(elsewhere / "leopard_benchmark.json"))
  assert sorted(map(json.dumps, again["runs"])) == sorted(map(json.dumps, first["runs"]))
  grid.run(leopard_kshot, dataclasses.replace(moved, methods=["frozen-prototypes"]))
  kept = json.load(open(elsewhere / "leopard_benchmark.json"))
  assert {r["method"] for r in kept["runs"]} == {"fine-tuning", "frozen-prototypes"}
  with pytest.raises(ConfigError, match="records runs of other settings .max_seq_length"):
    grid.run(leopard_kshot, dataclasses.replace(moved, max_seq_length=8))
  with pytest.raises(ConfigError, match="fine-tuning toy K=3 split 0 was fine-tuned with another"):
    grid.run(leopard_kshot, dataclasses.replace(moved, epochs=5))


def test_a_cell_number_outside_the_grid_is_named(tmp_path):
  from tests import programs  # pylint: disable=import-outside-toplevel
  config = _config(tmp_path, "unused", "unused", methods=["fine-tuning"])
  grid.start(leopard_kshot, config)  # experiment.json: the grid a child process reads
  line = programs.error_line("metabert_tf/experiments/__main__.py", "--run_cell=1",
                             f"--output_dir={config.output_dir}")
  assert f"--run_cell must be a cell of the grid in {config.output_dir}: 0..0, got 1" in line


def test_a_damaged_runs_file_is_named_not_a_traceback(tmp_path):
  config = _config(tmp_path, "unused", "unused")
  os.makedirs(config.output_dir)
  path = os.path.join(config.output_dir, leopard_kshot.RUNS_FILE)
  for text, message in (('{"runs": [{"met', "not valid JSON"), ("[]", "expected a JSON object")):
    with open(path, "w") as f:
      f.write(text)
    with pytest.raises(DataError, match=f"{path}: {message}.*restore it from docs/measurements"):
      leopard_kshot.recorded(config)


def test_a_recorded_meta_learned_run_counts_only_with_its_meta_training(tmp_path, monkeypatch):
  from metabert_tf.experiments import meta_stage  # pylint: disable=import-outside-toplevel
  from metabert_tf.experiments import methods  # pylint: disable=import-outside-toplevel
  config = _config(tmp_path, "unused", "unused")
  leopard = methods.LEOPARD["leopard"]
  stage = meta_stage.stage_settings(config, leopard)
  meta_before = {"leopard": {"meta_run": "a", "stage": stage}}
  valid = lambda run, before=meta_before: leopard_kshot._still_valid(  # pylint: disable=protected-access
      config, leopard, run, before)
  here = {"id": None}
  monkeypatch.setattr(leopard_kshot, "_meta_run_id", lambda config, method: here["id"])
  # none finished here: the recorded one, of the same stage settings, counts
  assert valid({"meta_run": "a"}) and not valid({"meta_run": "b"}) and not valid(None)
  assert not valid({"meta_run": "a"}, {"leopard": {"meta_run": "a", "stage": {**stage,
                                                                               "meta_tasks": 9}}})
  here["id"] = "b"  # one finished here: only its own runs count
  assert valid({"meta_run": "b"}) and not valid({"meta_run": "a"})
  assert leopard_kshot._still_valid(config, methods.LEOPARD["fine-tuning"], {}, {})  # pylint: disable=protected-access


def test_meta_tasks_by_method_sets_each_budget(tmp_path):
  from metabert_tf.experiments import meta_stage  # pylint: disable=import-outside-toplevel
  from metabert_tf.experiments import methods  # pylint: disable=import-outside-toplevel
  config = _config(tmp_path, "unused", "unused", meta_tasks=7,
                   meta_tasks_by_method=["leopard:12", "mt-bert:20"])
  assert meta_stage.num_tasks(config, methods.LEOPARD["leopard"]) == 12
  assert meta_stage.num_tasks(config, methods.LEOPARD["fomaml"]) == 7
  assert meta_stage.stage_settings(config, methods.LEOPARD["mt-bert"])["meta_tasks"] == 20
  for bad in (["leopard:0"], ["leopard"], ["leopard:3", "leopard:4"], ["leopard:x"]):
    with pytest.raises(ConfigError) as raised:
      meta_stage.parse_tasks_by_method(bad)
    assert raised.value.field == "meta_tasks_by_method"
  with pytest.raises(ConfigError, match="frozen-lr") as raised:
    leopard_kshot.check(dataclasses.replace(config, meta_tasks_by_method=["frozen-lr:4"]))
  assert raised.value.field == "meta_tasks_by_method"


def test_progress_lines_name_the_method_once_there_are_several(tmp_path):
  config = _config(tmp_path, "unused", "unused", methods=["fine-tuning", "proto-bert"])
  names = [c.name for c in leopard_kshot.cells(config)]
  assert names == ["fine-tuning: toy, K=3", "proto-bert: meta-training", "proto-bert: toy, K=3"]
  alone = dataclasses.replace(config, methods=["fine-tuning"])
  assert [c.name for c in leopard_kshot.cells(alone)] == ["toy, K=3"]
  # an ablation that reuses another method's meta-training gets no meta-training cell of its
  # own, and one alone gets that method's
  shared = dataclasses.replace(config, methods=["proto-bert", "proto-bert-ft"])
  assert [c.name for c in leopard_kshot.cells(shared)] == [
      "proto-bert: meta-training", "proto-bert: toy, K=3", "proto-bert-ft: toy, K=3"]
  ablation = dataclasses.replace(config, methods=["leopard-encoder-ft"])
  assert [c.key for c in leopard_kshot.cells(ablation)] == [
      ("leopard", None, None), ("leopard-encoder-ft", "toy", 3)]
