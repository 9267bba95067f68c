"""Issue 8 as a user meets it: no traceback, no silent wrong result, nothing made before the
input is checked, the error in log.txt, --help complete, stdout for results only."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from absl import flags

from metabert_tf import cli
from metabert_tf import evaluation
from metabert_tf import finetune_job
from metabert_tf import training
from metabert_tf.errors import DataError
from tests import programs
from tests.conftest import REPO_DIR


def _run(*args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
  return subprocess.run([sys.executable, *args], cwd=REPO_DIR, env=env, capture_output=True,
                        text=True, timeout=300)


def _one_error_line(proc):
  assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
  lines = [l for l in proc.stderr.splitlines() if l.startswith(("error:", "FATAL Flags parsing"))]
  assert len(lines) == 1, proc.stderr[-2000:]
  return lines[0]


def _write_jsonl(path, rows):
  path.write_text("".join(json.dumps({"text": t, "label": l}) + "\n" for t, l in rows))
  return str(path)


def _job(tmp_path, model, train, evals, **kwargs):
  return finetune_job.FinetuneJob(
      output_dir=str(tmp_path / "out"), train_path=train, eval_path=evals, bert_model=model,
      max_seq_length=16, dropout=False, train=training.FinetuneConfig(
          epochs=1, batch_size=4, progress=False), **kwargs)


def test_label_only_in_eval_file_is_an_error_or_counted_wrong(tmp_path, tiny_google_dir):
  train = _write_jsonl(tmp_path / "train.jsonl", [("good movie", "pos"), ("bad book", "neg")] * 2)
  evals = _write_jsonl(tmp_path / "eval.jsonl", [("good book", "pos"), ("a movie", "neutral"),
                                                 ("bad movie", "neg")])
  with pytest.raises(DataError) as info:
    finetune_job.run_job(_job(tmp_path, tiny_google_dir, train, evals))
  assert str(info.value).startswith(f"{evals}: labels ['neutral'] are not among the classes")
  assert "--allow_unseen_eval_labels" in str(info.value)
  results = finetune_job.run_job(_job(tmp_path, tiny_google_dir, train, evals,
                                      allow_unseen_eval_labels=True))
  assert results["label_list"] == ["neg", "pos"]  # the head never gets the eval-only class
  assert results["num_examples"] == 3 and results["accuracy"] <= 2 / 3


def test_metrics_leave_unseen_labels_out_of_macro_f1():
  labels, predictions = np.array([0, 1, -1, -1]), np.array([0, 1, 1, 0])
  metrics = evaluation.classification_metrics(labels, predictions)
  assert metrics["accuracy"] == 0.5
  assert metrics["macro_f1"] == pytest.approx(2 / 3)  # classes 0 and 1: F1 2/3 each, no class -1


@pytest.mark.parametrize("tool, args", [
    ("run_finetune.py", ["--train_file=x"]), ("run_meta_train.py", ["--data=x"]),
    ("run_multidomain.py", ["--data=x"]),
    ("data_prep/write_tf_record.py", ["--input=x", "--output=x"]),
    ("data_prep/smlmt.py", ["--input=x"]),
    ("metabert_tf/experiments/__main__.py", ["--protocol=mft", "--data_dir=x"])])
def test_every_cli_refuses_too_short_sequences(tmp_path, tool, args):
  output = [] if "--output=x" in args else [f"--output_dir={tmp_path}/o"]
  status, err = programs.run(tool, "--max_seq_length=7", *output, *args)
  assert status == 1 and "--max_seq_length must be >= 8, got 7" in err, err
  assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("tool", ["run_finetune.py", "run_meta_train.py"])
def test_help_lists_every_flag_of_the_tool(tool):
  proc = _run(tool, "--help")  # absl's --help exits with status 1
  for name in ("output_dir", "bert_model", "max_seq_length", "data_dir", "seed", "precision"):
    assert f"--{name}" in proc.stdout, name
  assert "--xla_" not in proc.stdout and "--helpfull" in proc.stdout  # absl/TF flags stay out


def test_output_paths_checked_before_any_work(tmp_path, tiny_google_dir, toy_task):
  common = [f"--bert_model={tiny_google_dir}", f"--train_file={toy_task['train']}",
            "--max_seq_length=16", "--noprogress"]
  a_file = tmp_path / "a_file"
  a_file.write_text("not a directory")
  line = programs.error_line("run_finetune.py", *common, f"--output_dir={a_file}")
  assert f"{a_file}: --output_dir exists and is not a directory" in line
  line = programs.error_line("run_finetune.py", *common, f"--output_dir={a_file}/sub")
  assert f"--output_dir cannot be written: {a_file} is not a directory" in line
  line = programs.error_line("run_finetune.py", *common, f"--output_dir={tmp_path}/o",
                             f"--export_dir={a_file}")
  assert "--export_dir" in line and not (tmp_path / "o").exists()
  line = programs.error_line("run_finetune.py", *common, f"--output_dir={tmp_path}/o",
                             f"--bert_model={tmp_path}/no_such_model")
  assert "no_such_model" in line and not (tmp_path / "o").exists()


def test_a_failure_after_the_start_is_written_to_log_txt(tmp_path, tiny_google_dir):
  train = _write_jsonl(tmp_path / "train.jsonl", [("good movie", "pos"), ("bad book", "neg")] * 4)
  # An eval label the head lacks is found once the labels are chosen, after the start.
  evals = _write_jsonl(tmp_path / "eval.jsonl", [("a movie", "neutral")])
  out = tmp_path / "ft"
  line = _one_error_line(_run("run_finetune.py", f"--train_file={train}", f"--eval_file={evals}",
                              f"--output_dir={out}", f"--bert_model={tiny_google_dir}",
                              "--max_seq_length=16"))
  assert "labels ['neutral'] are not among the classes" in line
  log = (out / "log.txt").read_text()
  assert line in log and "ERROR" in log


def test_a_second_run_in_one_process_logs_to_its_own_file_only(tmp_path):
  from absl import logging  # pylint: disable=import-outside-toplevel
  from metabert_tf import runtime  # pylint: disable=import-outside-toplevel
  (tmp_path / "a").mkdir()
  (tmp_path / "b").mkdir()
  try:
    runtime.log_to_file(str(tmp_path / "a"))
    logging.info("first run")
    runtime.log_to_file(str(tmp_path / "b"))  # e.g. a second grid.run from Python
    logging.info("second run")
    runtime.record_failure("second run failed")
  finally:
    runtime.stop_logging_to_files()
  logging.info("after both")
  first, second = (tmp_path / "a/log.txt").read_text(), (tmp_path / "b/log.txt").read_text()
  assert "first run" in first and "second run" not in first
  assert "second run" in second and "second run failed" in second and "after" not in second


def test_stdout_carries_results_only(capfd):
  with cli.user_errors_exit():
    print("WARNING: some library chatter")
    cli.print_result('{"accuracy": 1.0}')
  out, err = capfd.readouterr()
  assert out == '{"accuracy": 1.0}\n' and "library chatter" in err


def test_a_flag_added_since_a_run_resumes_it_only_at_its_default(tmp_path):
  values = flags.FlagValues()
  flags.DEFINE_integer("steps", 3, "", flag_values=values, module_name=sys.argv[0])
  flags.DEFINE_bool("new_option", False, "", flag_values=values, module_name=sys.argv[0])
  values(["prog"])
  (tmp_path / "hyparams.txt").write_text("--steps=3\n")  # written before --new_option existed
  cli.write_hyparams(str(tmp_path), resuming=True, flag_values=values)
  assert "--new_option=False" in (tmp_path / "hyparams.txt").read_text()
  (tmp_path / "hyparams.txt").write_text("--steps=3\n")
  values.new_option = True  # computes something else than the run on disk
  with pytest.raises(flags.ValidationError, match="other settings .new_option"):
    cli.write_hyparams(str(tmp_path), resuming=True, flag_values=values)


def test_a_repeated_flag_is_recorded_one_line_per_value(tmp_path):
  """hyparams.txt works as a --flagfile for a repeatable flag (--data a --data b), and a
  resume with the same values in the same order is the same run."""
  values = flags.FlagValues()
  flags.DEFINE_multi_string("data", None, "", flag_values=values, module_name=sys.argv[0])
  values(["prog", "--data=a.tsv", "--data=b,c.tsv"])
  cli.write_hyparams(str(tmp_path), flag_values=values)
  assert (tmp_path / "hyparams.txt").read_text() == "--data=a.tsv\n--data=b,c.tsv\n"
  cli.write_hyparams(str(tmp_path), resuming=True, flag_values=values)
  again = flags.FlagValues()
  flags.DEFINE_multi_string("data", None, "", flag_values=again, module_name=sys.argv[0])
  again(["prog", f"--flagfile={tmp_path / 'hyparams.txt'}"])
  assert again.data == ["a.tsv", "b,c.tsv"]
  values.data = ["b,c.tsv", "a.tsv"]  # other sources, or another order: another task stream
  with pytest.raises(flags.ValidationError, match="other settings .data"):
    cli.write_hyparams(str(tmp_path), resuming=True, flag_values=values)


def test_bf16_on_a_cpu_without_bf16_instructions_is_warned(tmp_path, monkeypatch):
  import tf_keras
  from metabert_tf import runtime
  warnings = []
  monkeypatch.setattr(runtime.logging, "warning", lambda msg, *a: warnings.append(msg % a))
  avx2 = tmp_path / "avx2"
  avx2.write_text("processor\t: 0\nflags\t\t: fpu sse avx avx2 fma\n")
  zen4 = tmp_path / "zen4"
  zen4.write_text("flags\t\t: fpu avx2 avx512f avx512_bf16\n")
  try:
    runtime.set_precision("bf16", flags_path=str(zen4))
    runtime.set_precision("fp32", flags_path=str(avx2))
    assert not warnings
    runtime.set_precision("bf16", flags_path=str(avx2))
    assert len(warnings) == 1 and "use --precision fp32" in warnings[0]
    assert tf_keras.mixed_precision.global_policy().name == "mixed_bfloat16"
  finally:
    runtime.set_precision("fp32")
