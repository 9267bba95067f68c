"""The entry points as a user runs them: outputs on success, one-line errors and exit 1 otherwise."""
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_DIR


def _run(*args, cwd=REPO_DIR):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
  return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                        text=True, timeout=300)


def test_run_finetune_then_predict(tmp_path, tiny_google_dir, toy_task):
  out = tmp_path / "out"
  proc = _run("run_finetune.py", f"--bert_model={tiny_google_dir}", f"--train_file={toy_task['train']}",
              f"--eval_file={toy_task['eval']}", f"--output_dir={out}", "--max_seq_length=16",
              "--epochs=2", "--batch_size=8", "--noprogress")
  assert proc.returncode == 0, proc.stderr[-3000:]
  summary = json.loads(proc.stdout.strip().splitlines()[-1])
  assert 0.0 <= summary["accuracy"] <= 1.0 and summary["num_examples"] == 24
  for name in ("hyparams.txt", "log.txt", "results.json", "ckpt", "tensorboard", "export"):
    assert (out / name).exists(), name
  hyparams = (out / "hyparams.txt").read_text()
  assert "--epochs=2" in hyparams and "--max_seq_length=16" in hyparams
  assert "Eval on" in (out / "log.txt").read_text()

  texts = tmp_path / "texts.txt"
  texts.write_text("the movie is very good .\nthe book is boring .\n")
  preds = tmp_path / "preds.jsonl"
  proc = _run("-m", "metabert_tf.predict", f"--model_dir={out / 'export'}", f"--input={texts}",
              f"--output={preds}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  rows = [json.loads(line) for line in preds.read_text().splitlines()]
  assert [r["text"] for r in rows] == ["the movie is very good .", "the book is boring ."]
  assert all(r["label"] in ("negative", "positive") and len(r["probabilities"]) == 2 for r in rows)


@pytest.mark.parametrize("flags,expected", [
    ([], "--output_dir must have a value"),
    (["--output_dir={tmp}/o", "--task=sentiment_books"], "--task needs --k"),
    (["--output_dir={tmp}/o", "--train_file={tmp}/missing.json"], "missing.json"),
    (["--output_dir={tmp}/o", "--train_file={bad}"], "bad.jsonl:line 2"),
    (["--output_dir={tmp}/o", "--train_file={train}", "--bert_model={tmp}/nope"], "nope"),
    (["--output_dir={tmp}/o", "--train_file={train}", "--epochs=0"], "--epochs must be positive"),
    (["--output_dir={tmp}/o", "--train_file={train}", "--zero_shot"], "not --train_file"),
    (["--output_dir={tmp}/o", "--train_file={mixed}"], "mixes single texts and text pairs"),
    (["--output_dir={tmp}/notours", "--train_file={train}", "--overwrite_output_dir"],
     "not an output directory of ours"),
])
def test_run_finetune_bad_input_is_one_line_error(tmp_path, toy_task, tiny_google_dir, flags, expected):
  bad = tmp_path / "bad.jsonl"
  bad.write_text('{"text": "good", "label": "positive"}\n{"text": "bad"\n')
  mixed = tmp_path / "mixed.jsonl"
  mixed.write_text('{"text": "good", "label": "positive"}\n'
                   '{"text": "bad", "text_b": "boring", "label": "negative"}\n')
  (tmp_path / "notours").mkdir()
  (tmp_path / "notours/precious.txt").write_text("keep me")
  args = [f.format(tmp=tmp_path, bad=bad, mixed=mixed, train=toy_task["train"]) for f in flags]
  if not any(a.startswith("--bert_model") for a in args):
    args.append(f"--bert_model={tiny_google_dir}")
  proc = _run("run_finetune.py", *args, "--noprogress", "--max_seq_length=16")
  assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
  lines = [l for l in proc.stderr.splitlines() if l.startswith(("error:", "FATAL Flags parsing"))]
  assert len(lines) == 1 and expected in lines[0], proc.stderr[-2000:]
  assert "Traceback" not in proc.stderr
  assert (tmp_path / "notours/precious.txt").exists()
  if expected == "missing.json":  # data paths are checked before output_dir is made
    assert not (tmp_path / "o").exists()


def test_resume_with_other_settings_is_refused(tmp_path, tiny_google_dir, toy_task):
  common = [f"--bert_model={tiny_google_dir}", f"--train_file={toy_task['train']}",
            f"--output_dir={tmp_path / 'o'}", "--max_seq_length=16", "--batch_size=8",
            "--noprogress", "--noexport"]
  first = _run("run_finetune.py", *common, "--epochs=1", "--overwrite_output_dir")
  assert first.returncode == 0, first.stderr[-2000:]
  hyparams = (tmp_path / "o/hyparams.txt").read_text()
  assert "overwrite_output_dir" not in hyparams  # reusing it as --flagfile must not wipe the run
  other = _run("run_finetune.py", *common, "--epochs=3")
  assert other.returncode == 1 and "epochs" in other.stderr and "--overwrite_output_dir" in other.stderr
  same = _run("run_finetune.py", f"--flagfile={tmp_path / 'o/hyparams.txt'}", "--noprogress")
  assert same.returncode == 0, same.stderr[-2000:]


def test_predict_rejects_bad_input(tmp_path):
  bad = tmp_path / "in.jsonl"
  bad.write_text('{"text": "ok"}\n[1, 2]\n')
  proc = _run("-m", "metabert_tf.predict", f"--model_dir={tmp_path}", f"--input={bad}",
              f"--output={tmp_path / 'o.jsonl'}")
  assert proc.returncode == 1
  assert "in.jsonl:line 2" in proc.stderr and "Traceback" not in proc.stderr
  assert not (tmp_path / "o.jsonl").exists()
  good = tmp_path / "ok.txt"
  good.write_text("fine\n")
  proc = _run("-m", "metabert_tf.predict", f"--model_dir={tmp_path}", f"--input={good}",
              f"--output={tmp_path / 'o.jsonl'}")
  assert proc.returncode == 1 and "not a SavedModel directory" in proc.stderr
