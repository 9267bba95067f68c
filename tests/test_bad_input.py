"""Bad input that used to be accepted silently, or ended in a traceback (issue 16): each gets a
clear error naming the file or flag (exit 1 and nothing written, through a CLI), or a warning
where the input is legal but suspicious. Flag bounds: test_flag_rules.py."""
import json
import logging
import os
import subprocess
import sys

import pytest
import tensorflow as tf

from metabert_tf import datasets
from metabert_tf import predict
from metabert_tf import records
from metabert_tf import tokenization
from metabert_tf.data import kshot
from metabert_tf.data import readers
from metabert_tf.data.examples import LabeledExample
from metabert_tf.errors import DataError
from metabert_tf.experiments import recipes
from metabert_tf.meta import sources
from tests import programs
from tests import tiny_models
from tests.conftest import REPO_DIR
from tests.test_cli_reliability import _one_error_line


def _jsonl(path, rows):
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  return str(path)


def _encoder():
  return tokenization.BertInputEncoder(tiny_models.VOCAB, True, 16)


def test_training_data_of_one_label_is_refused_before_anything_is_written(tmp_path,
                                                                          tiny_google_dir):
  train = _jsonl(tmp_path / "one.jsonl", [{"text": "good movie", "label": "pos"}] * 4)
  # run_finetune.py; the user's TF_CPP_MIN_LOG_LEVEL unset: TF's C++ lines stay off stderr too.
  env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
  proc = subprocess.run([sys.executable, "run_finetune.py", f"--train_file={train}",
                         f"--bert_model={tiny_google_dir}", f"--output_dir={tmp_path / 'o'}",
                         "--max_seq_length=16"], cwd=REPO_DIR, env=env, capture_output=True,
                        text=True, timeout=300)
  line = _one_error_line(proc)
  assert line == f"error: {train}: training data with one label ('pos'): a classifier needs >= 2"
  assert proc.stderr.strip() == line, proc.stderr  # no cuInit / oneDNN chatter before it
  assert not (tmp_path / "o").exists()
  # data_prep.kshot: no k-shot splits of one label
  with pytest.raises(DataError, match="one label .'pos'. in 4 examples"):
    kshot.write_kshot_files(readers.read_examples(train), "t", str(tmp_path / "k"), [2])
  assert not (tmp_path / "k").exists()
  # a LEOPARD task source of one class
  with pytest.raises(DataError, match=r"'[^']*one' has 1 label \(pos\); a task source needs"):
    sources.load_task_sources([train], _encoder())


def test_flags_the_chosen_algorithm_does_not_read_are_an_error(tmp_path):
  for program, argv, message in [
      ("run_meta_train.py", ["--algorithm=fomaml", "--train_lr=1e-3"],
       "--train_lr is not read by --algorithm=fomaml (only by hybrid_smlmt, leopard, smlmt); "
       "drop it"),
      ("run_meta_train.py", ["--algorithm=leopard", "--inner_update_lr=1e-3"],
       "--inner_update_lr is not read by --algorithm=leopard (only by fomaml, proto_fomaml, proto_reptile, reptile)"),
      ("run_multidomain.py", ["--algorithm=mix", "--mft_lambda=0.5"],
       "--mft_lambda is not read by --algorithm=mix (only by mft)"),
      # MFT's flags belong to run_multidomain.py: run_meta_train.py does not have them.
      ("run_meta_train.py", ["--algorithm=fomaml", "--eval_data=x.jsonl"],
       "Unknown command line flag 'eval_data'"),
  ]:
    status, err = programs.run(program, "--data=x.jsonl", f"--output_dir={tmp_path / 'o'}",
                               *argv)  # in this process: they end before any work
    assert status == 1 and message in err, err
  status, err = programs.run("run_finetune.py", "--train_file=x.jsonl", "--split=3",
                             f"--output_dir={tmp_path / 'o'}")
  assert status == 1 and "error: --split is read only with --task" in err, err
  status, err = programs.run("metabert_tf/experiments/__main__.py", "--protocol=mft",
                             "--methods=mft_full,nope", "--data_dir=x",
                             f"--output_dir={tmp_path / 'o'}")
  assert status == 1 and "error: --methods must be among bert_s," in err, err  # before the data
  assert not (tmp_path / "o").exists()


def _write_records(path, n=8):
  examples = [LabeledExample(f"good movie {'very ' * (i % 3)}", "pos" if i % 2 else "neg")
              for i in range(n)]
  features = records.encode(examples, _encoder(), ["neg", "pos"])
  records.write(str(path), features, ["neg", "pos"], tiny_models.VOCAB, True)
  return str(path)


def test_a_cut_tf_record_or_one_its_metadata_disowns_is_refused(tmp_path):
  path = _write_records(tmp_path / "nested/dir/x.tf_record")  # the parent is made, no traceback
  features, _ = records.load(path, 16)
  assert len(features["label_ids"]) == 8
  with open(path, "rb") as f:
    data = f.read()
  record_size = len(data) // 8
  with open(path, "wb") as f:  # 1 byte into the 5th record: TFRecordDataset stops at 4, quietly
    f.write(data[:4 * record_size + 1])
  with pytest.raises(DataError, match=r"truncated tf_record: 4 whole records, then 1 bytes"):
    records.load(path, 16)
  _write_records(tmp_path / "y.tf_record", n=8)
  meta_path = records.metadata_path(str(tmp_path / "y.tf_record"))
  meta = json.load(open(meta_path))
  meta["num_examples"] = 10
  json.dump(meta, open(meta_path, "w"))
  with pytest.raises(DataError, match="8 records, but its .meta.json says 10"):
    records.load(str(tmp_path / "y.tf_record"), 16)


def test_same_text_with_two_labels_warns_with_the_lines(tmp_path, caplog):
  path = _jsonl(tmp_path / "c.jsonl", [{"text": "fine", "label": "pos"},
                                       {"text": "bad", "label": "neg"},
                                       {"text": "fine", "label": "neg"}])
  with caplog.at_level(logging.WARNING):
    examples = datasets.read(path)
  assert len(examples) == 3
  assert "1 texts occur with more than one label (first at line 1 (pos), line 3 (neg))" in (
      caplog.text)


def test_predict_refuses_a_savedmodel_that_is_not_a_classifier_export(tmp_path):
  module = tf.Module()
  module.double = tf.function(lambda x: {"y": 2 * x},
                              input_signature=[tf.TensorSpec([None], tf.float32)])
  tf.saved_model.save(module, str(tmp_path / "other"),
                      signatures={"serving_default": module.double})
  with pytest.raises(DataError, match="has no serving_default signature returning labels"):
    predict.predict(str(tmp_path / "other"), [("a text", None)], progress=False)
  with pytest.raises(DataError, match="has no serve_pair signature"):
    predict.predict(str(tmp_path / "other"), [("a text", "b")], progress=False)


def test_predict_says_how_many_blank_lines_it_skipped(tmp_path, capsys):
  path = tmp_path / "in.txt"
  path.write_text("good\n\n   \nbad\n")
  examples = predict.read_inputs(str(path))
  assert [e.text_a for e in examples] == ["good", "bad"]
  assert "skipped 2 blank lines (one prediction per non-blank line: 2)" in capsys.readouterr().err
  path.write_text("good\nbad\n")  # a final newline is not a blank line
  assert len(predict.read_inputs(str(path))) == 2
  assert "skipped" not in capsys.readouterr().err


def test_a_model_whose_weights_cannot_be_read_leaves_no_output_dir(tmp_path, toy_task):
  directory = tiny_models.write_hf_dir(str(tmp_path / "hf"))
  weights = os.path.join(directory, "model.safetensors")
  with open(weights, "r+b") as f:
    f.truncate(os.path.getsize(weights) // 2)
  for program, data in (("run_finetune.py", f"--train_file={toy_task['train']}"),
                        ("run_meta_train.py", f"--data={toy_task['train']}")):
    line = programs.error_line(program, data, f"--bert_model={directory}",
                               f"--output_dir={tmp_path / 'o'}", "--max_seq_length=16")
    assert line.startswith(f"error: {weights}: cannot read the weights"), line
    assert not (tmp_path / "o").exists()


def test_malformed_per_k_config_names_the_line_and_column(tmp_path):
  path = tmp_path / "per_k.json"
  path.write_text('{"leopard": {"4": [150, 2],\n  "16": [200 4]}}')
  with pytest.raises(DataError, match=r"per_k.json: malformed JSON at line 2, column 14"):
    recipes.read_per_k_config(str(path), "leopard", [4])
  path.write_text('{"leopard": {"4": [150, 0]}}')
  with pytest.raises(DataError, match=r"leopard.4 must be \[epochs, batch size\] per class"):
    recipes.read_per_k_config(str(path), "leopard", [4])
  path.write_text('{"leopard": 5}')
  with pytest.raises(DataError, match=r"leopard must be an object \{K: \[epochs, batch size\]"):
    recipes.read_per_k_config(str(path), "leopard", [4])


def test_data_without_domains_says_how_to_name_the_domain_column(tmp_path):
  path = _jsonl(tmp_path / "d.jsonl", [{"text": "good", "label": "pos"},
                                       {"text": "bad", "label": "neg"}])
  examples = readers.read_examples(path)
  with pytest.raises(DataError, match=r"d.jsonl:line 1: no domain.*data spec, e.g. "
                                      r"PATH:domain=category"):
    datasets.require_domains(examples, path)
  with pytest.raises(DataError, match=r"line 1: no domain, and domain ids are asked for"):
    records.encode(examples, _encoder(), ["neg", "pos"], domain_list=[], source=path)


def test_a_missing_json_field_lists_the_fields_the_record_has(tmp_path):
  path = _jsonl(tmp_path / "m.jsonl", [{"review": "good", "stars": 5}])
  with pytest.raises(DataError) as info:
    readers.read_examples(path)
  assert "line 1: missing field 'text'" in str(info.value)
  assert "the record has 'review', 'stars'" in str(info.value)
  path = tmp_path / "m.json"
  path.write_text(json.dumps([{"text": "good"}]))
  with pytest.raises(DataError, match=r"record 0 \(0-based\): missing field 'label'.*has 'text'"):
    readers.read_examples(str(path))
