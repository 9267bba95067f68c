"""k-shot split builder: balance, nesting, determinism, refusal, files and CLI."""
import collections
import json
import os
import pathlib
import subprocess
import sys

import pytest

from metabert_tf.data import kshot
from metabert_tf.data import readers
from metabert_tf.data.examples import LabeledExample
from metabert_tf.errors import DataError

REPO_DIR = pathlib.Path(__file__).resolve().parent.parent


def _examples(counts, pair=False):
  return [LabeledExample(f"{label} text {i}", label, f"hyp {i}" if pair else None)
          for label, n in counts.items() for i in range(n)]


EXAMPLES = _examples({"pos": 40, "neg": 25, "mid": 17})


def _labels(indices):
  return collections.Counter(EXAMPLES[i].label for i in indices)


def test_counts_nesting_and_balance():
  splits = kshot.build_kshot_splits(EXAMPLES, [16, 4, 8], num_splits=3, seed=1)
  assert sorted(splits) == [(f, k) for f in range(3) for k in (4, 8, 16)]
  for (split, k), indices in splits.items():
    assert _labels(indices) == {"pos": k, "neg": k, "mid": k}
    assert len(set(indices)) == len(indices)
    assert _labels(indices[:3]) == {"pos": 1, "neg": 1, "mid": 1}  # Labels interleaved.
  for split in range(3):
    assert set(splits[(split, 4)]) < set(splits[(split, 8)]) < set(splits[(split, 16)])


def test_deterministic_and_seeded():
  splits = kshot.build_kshot_splits(EXAMPLES, [4, 8], num_splits=4, seed=0)
  assert splits == kshot.build_kshot_splits(EXAMPLES, [4, 8], num_splits=4, seed=0)
  assert splits != kshot.build_kshot_splits(EXAMPLES, [4, 8], num_splits=4, seed=1)
  assert len({tuple(sorted(splits[(f, 8)])) for f in range(4)}) == 4  # Splits differ.
  # A split's K=4 set does not depend on which other Ks were asked for.
  assert kshot.build_kshot_splits(EXAMPLES, [4], num_splits=4)[(2, 4)] == splits[(2, 4)]


def test_refuses_k_larger_than_a_label():
  with pytest.raises(DataError) as info:
    kshot.build_kshot_splits(EXAMPLES, [4, 18], path="in.json")
  message = str(info.value)
  assert message.startswith("in.json: K=18") and "label 'mid' has (17 examples" in message
  assert "'pos': 40" in message
  with pytest.raises(ValueError):
    kshot.build_kshot_splits(EXAMPLES, [0])


def test_write_files_and_eval_rest(tmp_path):
  examples = _examples({"entails": 10, "neutral": 12}, pair=True)
  written = kshot.write_kshot_files(examples, "toy", tmp_path, [2, 4], num_splits=2, seed=3,
                                    eval_rest=True)
  task_dir = tmp_path / "toy"
  names = ["toy_train_0_2.json", "toy_train_0_4.json", "toy_train_1_2.json", "toy_train_1_4.json",
           "toy_eval.json"]
  assert sorted(os.listdir(task_dir)) == sorted(names)  # No temp files left behind.
  assert [os.path.basename(p) for p in written] == names
  first = json.loads((task_dir / "toy_train_0_4.json").read_text())
  assert list(first[0]) == ["sentence1", "sentence2", "label"]
  train = readers.read_leopard_json(task_dir / "toy_train_1_4.json")
  assert collections.Counter(e.label for e in train) == {"entails": 4, "neutral": 4}
  assert {e.domain for e in train} == {"toy"}
  assert {(e.text_a, e.text_b, e.label) for e in train} <= {
      (e.text_a, e.text_b, e.label) for e in examples}
  used = set()
  for name in names[:-1]:
    used |= {(e.text_a, e.label) for e in readers.read_leopard_json(task_dir / name)}
  rest = readers.read_leopard_json(task_dir / "toy_eval.json")
  assert len(rest) == len(examples) - len(used) and not used & {(e.text_a, e.label) for e in rest}


def test_write_refuses_encoded_examples(tmp_path):
  encoded = [LabeledExample(None, "0", input_ids=(1, 2), segment_ids=(0, 0))] * 4
  with pytest.raises(DataError, match="no text"):
    kshot.write_kshot_files(encoded, "t", tmp_path, [1], path="x.tf_record")


def _cli(*args):
  return subprocess.run([sys.executable, "-m", "data_prep.kshot", *args], cwd=REPO_DIR,
                        capture_output=True, text=True, timeout=60)


def test_cli_leopard_json(shared_dir, tmp_path):
  source = shared_dir / "data" / "leopard" / "json" / "scitail" / "scitail_eval.json"
  run = _cli(f"--input={source}", "--task=scitail_re", "--k=4,8", "--num_splits=3", "--seed=7",
             f"--output_dir={tmp_path}", "--eval_rest")
  assert run.returncode == 0, run.stderr
  files = sorted(os.listdir(tmp_path / "scitail_re"))
  assert len(files) == 7 and "scitail_re_eval.json" in files
  split = json.loads((tmp_path / "scitail_re" / "scitail_re_train_2_8.json").read_text())
  assert len(split) == 16 and all("sentence2" in r for r in split)
  rest = readers.read_leopard_json(tmp_path / "scitail_re" / "scitail_re_eval.json")
  assert 2126 - 3 * 16 <= len(rest) < 2126


def test_cli_amazon_domain_and_errors(shared_dir, tmp_path):
  source = shared_dir / "data" / "blitzer_mds_4domain"
  run = _cli(f"--input={source}", "--task=dvd", "--domain=dvd", "--k=16", "--num_splits=2",
             f"--output_dir={tmp_path}")
  assert run.returncode == 0, run.stderr
  assert sorted(os.listdir(tmp_path / "dvd")) == ["dvd_train_0_16.json", "dvd_train_1_16.json"]
  for args, expected in [(["--domain=toys"], "no examples with domain 'toys' (domains: books,"),
                         (["--k=4001"], "K=4001 is larger than label")]:
    run = _cli(f"--input={source}", "--task=t", f"--output_dir={tmp_path}", *args)
    assert run.returncode == 1 and expected in run.stderr, run.stderr
    assert run.stderr.startswith("error: ") and run.stderr.count("\n") == 1
  run = _cli(f"--input={source}", "--task=t", f"--output_dir={tmp_path}", "--k=4,x")
  assert run.returncode == 1 and "--k must be comma-separated integers, got 'x'" in run.stderr
