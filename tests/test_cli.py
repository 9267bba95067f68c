"""The entry points as a user runs them: outputs on success, one-line errors and exit 1 otherwise."""
import json
import os
import subprocess
import sys

import pytest

from tests import programs
from tests.conftest import REPO_DIR


def _run(*args, cwd=REPO_DIR):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
  return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                        text=True, timeout=300)


def test_run_finetune_then_predict(tmp_path, tiny_google_dir, toy_task):
  out = tmp_path / "out"
  eval_tsv = tmp_path / "eval.tsv"  # no header, label first: read through a data spec
  with open(toy_task["eval"]) as f:
    eval_tsv.write_text("".join(f"{r['label']}\t{r['text']}\n" for r in map(json.loads, f)))
  proc = _run("run_finetune.py", f"--bert_model={tiny_google_dir}", f"--train_file={toy_task['train']}",
              f"--eval_file=eval.tsv:header=none,label=0,text=1", f"--data_dir={tmp_path}",
              f"--output_dir={out}", "--max_seq_length=16",
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
  rows, _ = _predict(tmp_path, out / "export", texts)
  assert [r["text"] for r in rows] == ["the movie is very good .", "the book is boring ."]
  assert all(r["label"] in ("negative", "positive") and len(r["probabilities"]) == 2 for r in rows)
  assert not any("gold" in r for r in rows)

  # A labelled CSV: its header is not an example, its labels are gold labels, not text.
  labelled = tmp_path / "labelled.csv"
  labelled.write_text("label,text\npositive,the movie is very good .\nneutral,the book .\n")
  rows, stderr = _predict(tmp_path, out / "export", labelled)
  assert [(r["text"], r["gold"]) for r in rows] == [("the movie is very good .", "positive"),
                                                    ("the book .", "neutral")]
  accuracy = (rows[0]["label"] == "positive") / 2
  assert f"accuracy {accuracy:.4f} on 2 labelled examples" in stderr
  assert "warning: gold labels ['neutral'] are not among the model's labels" in stderr
  # A headerless TSV through a data spec, as run_finetune read its eval file above.
  rows, _ = _predict(tmp_path, out / "export", f"{eval_tsv}:header=none,label=0,text=1")
  assert len(rows) == 24 and {r["gold"] for r in rows} == {"negative", "positive"}


def _predict(tmp_path, model_dir, spec):
  """The predict program, run in this process (its subprocess runs cost seconds of imports)."""
  preds = tmp_path / "preds.jsonl"
  status, err = programs.run("metabert_tf/predict.py", f"--model_dir={model_dir}",
                             f"--input={spec}", f"--output={preds}", "--noprogress")
  assert status == 0, err[-3000:]
  return [json.loads(line) for line in preds.read_text().splitlines()], err


@pytest.mark.parametrize("flags,expected", [
    ([], "--output_dir must have a value"),
    (["--output_dir={tmp}/o", "--task=sentiment_books"], "--task needs --k"),
    (["--output_dir={tmp}/o", "--train_file={tmp}/missing.json"], "missing.json"),
    (["--output_dir={tmp}/o", "--train_file={tmp}/missing.tsv:header=none,text=0,label=1"],
     "missing.tsv:header=none,text=0,label=1: file not found (--train_file)"),
    (["--output_dir={tmp}/o", "--train_file={train}:txt=0"], "unknown data spec key 'txt'"),
    (["--output_dir={tmp}/o", "--train_file={bad}"], "bad.jsonl:line 2"),
    (["--output_dir={tmp}/o", "--train_file={train}", "--bert_model={tmp}/nope"], "nope"),
    (["--output_dir={tmp}/o", "--train_file={train}", "--epochs=0"], "--epochs must be >= 1, got 0"),
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
  if "missing" in expected:  # data paths are checked before output_dir is made
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_resume_with_other_settings_is_refused(tmp_path, tiny_google_dir, toy_task):
  common = [f"--bert_model={tiny_google_dir}", f"--train_file={toy_task['train']}",
            f"--output_dir={tmp_path / 'o'}", "--max_seq_length=16", "--batch_size=8",
            "--noprogress", "--noexport"]
  # in this process (run_finetune.py as a subprocess: the other tests here)
  status, err = programs.run("run_finetune.py", *common, "--epochs=1", "--overwrite_output_dir")
  assert status == 0, err[-2000:]
  hyparams = (tmp_path / "o/hyparams.txt").read_text()
  assert "overwrite_output_dir" not in hyparams  # reusing it as --flagfile must not wipe the run
  line = programs.error_line("run_finetune.py", *common, "--epochs=3")
  assert "epochs" in line and "--overwrite_output_dir" in line
  status, err = programs.run("run_finetune.py", f"--flagfile={tmp_path / 'o/hyparams.txt'}",
                             "--noprogress")
  assert status == 0, err[-2000:]


def test_predict_rejects_bad_input(tmp_path):
  bad = tmp_path / "in.jsonl"
  bad.write_text('{"text": "ok"}\n[1, 2]\n')
  line = programs.error_line("metabert_tf/predict.py", f"--model_dir={tmp_path}",
                             f"--input={bad}", f"--output={tmp_path / 'o.jsonl'}")
  assert "in.jsonl:line 2" in line
  assert not (tmp_path / "o.jsonl").exists()
  good = tmp_path / "ok.txt"
  good.write_text("fine\n")
  # the entry point as a user runs it (the other predict errors: in this process)
  proc = _run("-m", "metabert_tf.predict", f"--model_dir={tmp_path}", f"--input={good}",
              f"--output={tmp_path / 'o.jsonl'}")
  assert proc.returncode == 1 and "not a SavedModel directory" in proc.stderr


def test_predict_refusals_come_before_the_model(tmp_path):
  """model_dir is no SavedModel: each error below must come before that is found out."""
  latin1 = tmp_path / "latin1.txt"
  latin1.write_bytes("café crème\n".encode("latin-1"))
  record = tmp_path / "x.tf_record"
  record.write_bytes(b"")
  (tmp_path / "a_file").write_text("")
  ok = tmp_path / "ok.txt"
  ok.write_text("fine\n")
  for args, expected in [
      ([f"--input={latin1}"], f"error: {latin1}: not UTF-8 text (byte 3"),
      ([f"--input={record}"], "tf_records hold encoded ids, not text"),
      ([f"--input={ok}", "--batch_size=0"], "--batch_size must be >= 1, got 0"),
      ([f"--input={ok}", f"--output={tmp_path}"], "--output is a directory; expected a file"),
      ([f"--input={ok}", f"--output={tmp_path}/a_file/p.jsonl"], "is not a directory"),
      ([f"--input={ok}", "--output=/proc/no_such_dir/p.jsonl"], "--output cannot be written"),
  ]:
    output = [] if any(a.startswith("--output") for a in args) else [f"--output={tmp_path}/o"]
    line = programs.error_line("metabert_tf/predict.py", f"--model_dir={tmp_path}", *args,
                               *output)  # in this process: each ends before the model loads
    assert expected in line, line
    assert not (tmp_path / "o").exists()


def test_cola_as_distributed_through_every_cli(shared_dir, tmp_path, tiny_google_dir):
  cola = shared_dir / "data" / "meta_train" / "glue" / "CoLA" / "dev.tsv"
  out = tmp_path / "cola.tf_record"
  proc = _run("-m", "data_prep.write_tf_record", f"--input={cola}:header=none,text=3,label=1",
              f"--output={out}", f"--bert_model={tiny_google_dir}", "--max_seq_length=16")
  assert proc.returncode == 0, proc.stderr[-2000:]
  meta = json.loads(out.with_name("cola.tf_record.meta.json").read_text())
  assert meta["num_examples"] == 1043 and meta["label_counts"] == {"0": 322, "1": 721}
  proc = _run("-m", "data_prep.kshot", f"--input={cola}:header=none,text=3,label=1,domain=0",
              "--task=cola", "--k=2", "--num_splits=1", "--domain=ad03", f"--output_dir={tmp_path}")
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert len(json.loads((tmp_path / "cola" / "cola_train_0_2.json").read_text())) == 4
  # Without a spec, every CLI that takes data says what to write instead.
  hint = f"no header? use {cola}:header=none,text=N"  # predict: labels optional
  for args in (["data_prep/write_tf_record.py", f"--input={cola}", f"--output={out}",
                f"--bert_model={tiny_google_dir}"],
               ["data_prep/kshot.py", f"--input={cola}", "--task=t", f"--output_dir={tmp_path}"],
               ["run_finetune.py", f"--train_file={cola}", f"--output_dir={tmp_path}/f",
                f"--bert_model={tiny_google_dir}", "--max_seq_length=16"],
               ["run_meta_train.py", f"--data={cola}", f"--output_dir={tmp_path}/m",
                f"--bert_model={tiny_google_dir}", "--max_seq_length=16"],
               ["metabert_tf/predict.py", f"--input={cola}", f"--model_dir={tmp_path}",
                f"--output={tmp_path}/p.jsonl"]):
    line = programs.error_line(*args)  # in this process: each ends as it reads the data
    assert line.startswith("error:") and hint in line, (args, line)
