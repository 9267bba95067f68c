"""Every numeric and list flag of every program has a bound (flag_rules.py), and each bound
refuses what it should at parse time; a CLI given a bad value ends with one line, exit 1,
nothing written."""
import json
import math
import subprocess
import sys

import pytest

from metabert_tf import flag_rules
from tests.test_cli_reliability import _one_error_line
from tests.test_cli_reliability import _run
from tests.conftest import REPO_DIR


def test_every_numeric_and_list_flag_of_every_program_has_a_rule_that_refuses_bad_values():
  # One process walks every program (each defines its flags, is checked, and has them deleted):
  # programs may share flag names, so they cannot all be defined at once.
  proc = subprocess.run([sys.executable, "-m", "tests.programs"], cwd=REPO_DIR,
                        capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_rules_say_what_was_expected():
  assert flag_rules.POSITIVE.problem(-1e-4) == "must be > 0, got -0.0001"
  assert flag_rules.POSITIVE.problem(math.nan) == "must be a finite number, got nan"
  assert flag_rules.COUNT.problem(0) == "must be >= 1, got 0"
  assert flag_rules.RULES["fractions"].problem(["0", "150"]) == "item 0: must be >= 1 and <= 100, got 0"
  assert flag_rules.RULES["label_list"].problem(["pos", "pos", "neg"]) == "lists pos more than once"
  assert flag_rules.RULES["ks"].problem(["4", "x"]) == "must be comma-separated integers, got 'x'"


@pytest.mark.parametrize("argv, flag", [
    (["run_finetune.py", "--output_dir=OUT", "--learning_rate=-1e-4", "--train_file=x"], "learning_rate"),
    (["run_finetune.py", "--output_dir=OUT", "--learning_rate=nan", "--train_file=x"], "learning_rate"),
    (["run_finetune.py", "--output_dir=OUT", "--k=0", "--task=x"], "k"),
    (["run_finetune.py", "--output_dir=OUT", "--k=-4", "--task=x"], "k"),
    (["run_finetune.py", "--output_dir=OUT", "--label_list=pos,pos,neg", "--train_file=x"], "label_list"),
    (["run_meta_train.py", "--output_dir=OUT", "--inner_update_lr=-1", "--data=x"], "inner_update_lr"),
    (["run_meta_train.py", "--output_dir=OUT", "--reptile_epsilon=2", "--data=x"], "reptile_epsilon"),
    (["-m", "metabert_tf.predict", "--batch_size=0", "--model_dir=x", "--input=x",
      "--output=OUT/p.jsonl"], "batch_size"),
    (["-m", "metabert_tf.mft_experiment", "--output_dir=OUT", "--fractions=0,150", "--data_dir=x"], "fractions"),
    (["-m", "metabert_tf.harness", "--output_dir=OUT", "--ks=4,x", "--data_dir=x"], "ks"),
    (["-m", "data_prep.kshot", "--output_dir=OUT", "--k=0", "--input=x", "--task=t"], "k"),
    (["-m", "data_prep.smlmt", "--output_dir=OUT", "--num_classes=1", "--input=x"], "num_classes"),
    (["-m", "data_prep.write_tf_record", "--max_seq_length=4", "--input=x",
      "--output=OUT/x.tf_record"], "max_seq_length"),
])
def test_a_cli_refuses_a_bad_value_before_any_work(tmp_path, argv, flag):
  line = _one_error_line(_run(*(a.replace("OUT", str(tmp_path / "o")) for a in argv)))
  assert f"--{flag} " in line, line
  assert not (tmp_path / "o").exists()
