"""Multi-domain data on the command line: tf_records with domain_ids as --data for every
algorithm, MFT then per-domain fine-tuning from its checkpoint, and label order."""
import json
import os
import subprocess
import sys

import pytest

from metabert_tf import backbones
from metabert_tf import datasets
from metabert_tf.errors import DataError
from tests import programs
from tests import tiny_models
from tests.conftest import REPO_DIR


def _run(*args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
  return subprocess.run([sys.executable, *args], cwd=REPO_DIR, env=env, capture_output=True,
                        text=True, timeout=300)


def test_labels_sort_numerically_when_numeric():
  assert datasets.sort_labels({"10", "2", "1"}) == ["1", "2", "10"]
  assert datasets.sort_labels({"b", "10", "a", "9"}) == ["9", "10", "a", "b"]


@pytest.fixture(scope="module")
def domain_records(tmp_path_factory, tiny_google_dir):
  directory = tmp_path_factory.mktemp("records")
  data = tiny_models.write_domain_json(str(directory / "data.json"), per_domain=16)
  path = str(directory / "data.tf_record")
  status, err = programs.run("data_prep/write_tf_record.py", f"--input={data}",  # in-process
                             f"--output={path}", f"--bert_model={tiny_google_dir}",
                             "--max_seq_length=16", "--with_domains")
  assert status == 0, err[-2000:]
  return data, path


def test_tf_record_keeps_its_domains_and_labels(domain_records, tiny_google_dir):
  data, path = domain_records
  encoder = backbones.describe_backbone(tiny_google_dir).input_encoder(16)
  from_records = datasets.multidomain_features(path, encoder)
  from_json = datasets.multidomain_features(data, encoder)
  assert from_records[1:] == from_json[1:] == (["negative", "positive"], ["a", "b", "c"])
  for name, values in from_json[0].items():
    assert (from_records[0][name] == values).all(), name
  with pytest.raises(DataError, match="different vocabulary"):
    other = tiny_models.VOCAB[:-1] + ["zzz"]
    datasets.multidomain_features(path, backbones.tokenization.BertInputEncoder(other, True, 16))


def test_tf_record_without_domains_is_refused(tmp_path, tiny_google_dir):
  data = tiny_models.write_domain_json(str(tmp_path / "data.json"))
  path = str(tmp_path / "plain.tf_record")
  status, err = programs.run("data_prep/write_tf_record.py", f"--input={data}",
                             f"--output={path}", f"--bert_model={tiny_google_dir}",
                             "--max_seq_length=16")
  assert status == 0, err[-2000:]
  encoder = backbones.describe_backbone(tiny_google_dir).input_encoder(16)
  with pytest.raises(DataError, match="--with_domains"):
    datasets.multidomain_features(path, encoder)


def test_meta_train_reads_domains_from_tf_records(tmp_path, domain_records, tiny_google_dir):
  _, path = domain_records
  status, err = programs.run(
      "run_meta_train.py", "--algorithm=fomaml", f"--data={path}", "--test_domains=c",
      f"--bert_model={tiny_google_dir}", f"--output_dir={tmp_path / 'meta'}", "--num_support=4",
      "--num_query=2", "--num_train_task=2", "--outer_batch_size=2", "--inner_batch_size=2",
      "--inner_update_step=1", "--inner_update_step_eval=1", "--epochs=1", "--max_seq_length=16",
      "--noprogress")
  assert status == 0, err[-3000:]
  results = json.load(open(tmp_path / "meta/results.json"))
  assert results["train_domains"] == ["a", "b"] and results["label_list"] == ["negative", "positive"]


@pytest.mark.slow
def test_mft_cli_then_per_domain_fine_tuning(tmp_path, domain_records, tiny_google_dir):
  data, path = domain_records
  # run_meta_train.py --algorithm mft runs run_multidomain.py with the same arguments.
  proc = _run("run_meta_train.py", "--algorithm=mft", f"--data={path}", f"--eval_data={data}",
              f"--bert_model={tiny_google_dir}", f"--output_dir={tmp_path / 'mft'}",
              "--max_seq_length=16", "--batch_size=8", "--epochs=1", "--corruption_layers=1",
              "--noprogress")
  assert proc.returncode == 0, proc.stderr[-3000:]
  summary = json.loads(proc.stdout)  # stdout: the result line only
  assert set(summary["eval"]["by_domain"]) == {"a", "b", "c"}
  results = json.load(open(tmp_path / "mft/results.json"))
  assert results["corruption_layers"] == [1] and results["method"] == "mft"
  assert "--mft_variant=full" in (tmp_path / "mft/hyparams.txt").read_text()
  domain_a = tmp_path / "a.jsonl"
  domain_a.write_text("".join(json.dumps(r) + "\n" for r in json.load(open(data))
                              if r["domain"] == "a"))
  status, err = programs.run("run_finetune.py", f"--bert_model={tmp_path / 'mft/ckpt'}",
                             f"--train_file={domain_a}", f"--eval_file={domain_a}", "--epochs=1",
                             f"--output_dir={tmp_path / 'ft'}", "--max_seq_length=16",
                             "--noprogress", "--noexport")  # in this process
  assert status == 0, err[-3000:]
  assert "Classifier head restored from" in (tmp_path / "ft/log.txt").read_text()
