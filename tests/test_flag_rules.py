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
from tests import programs
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


@pytest.mark.parametrize("program, argv, flag", [
    ("run_finetune.py", ["--learning_rate=nan", "--train_file=x"], "learning_rate"),
    ("run_finetune.py", ["--k=0", "--task=x"], "k"),
    ("run_finetune.py", ["--k=-4", "--task=x"], "k"),
    ("run_finetune.py", ["--label_list=pos,pos,neg", "--train_file=x"], "label_list"),
    ("run_meta_train.py", ["--inner_update_lr=-1", "--data=x"], "inner_update_lr"),
    ("run_meta_train.py", ["--reptile_epsilon=2", "--data=x"], "reptile_epsilon"),
    ("run_multidomain.py", ["--mft_alpha=1.5", "--data=x"], "mft_alpha"),
    ("metabert_tf/predict.py", ["--batch_size=0", "--model_dir=x", "--input=x",
                                "--output=OUT/p.jsonl"], "batch_size"),
    ("metabert_tf/experiments/__main__.py", ["--protocol=mft", "--fractions=0,150",
                                             "--data_dir=x"], "fractions"),
    ("metabert_tf/experiments/__main__.py", ["--protocol=leopard", "--ks=4,x", "--data_dir=x"],
     "ks"),
    ("data_prep/kshot.py", ["--k=0", "--input=x", "--task=t"], "k"),
    ("data_prep/smlmt.py", ["--num_classes=1", "--input=x"], "num_classes"),
    ("data_prep/write_tf_record.py", ["--max_seq_length=4", "--input=x",
                                      "--output=OUT/x.tf_record"], "max_seq_length"),
])
def test_a_cli_refuses_a_bad_value_before_any_work(tmp_path, program, argv, flag):
  out = str(tmp_path / "o")
  argv = [a.replace("OUT", out) for a in argv]
  if not any(a.startswith("--output=") for a in argv):
    argv.append(f"--output_dir={out}")
  status, err = programs.run(program, *argv)  # in this process: a subprocess costs seconds
  assert status == 1 and err.startswith("FATAL Flags parsing error: ") and f"--{flag} " in err
  assert not (tmp_path / "o").exists()


def test_a_bad_value_ends_the_program_with_one_line_and_status_1(tmp_path):
  line = _one_error_line(_run("run_finetune.py", f"--output_dir={tmp_path / 'o'}",
                              "--learning_rate=-1e-4", "--train_file=x"))
  assert "--learning_rate must be > 0, got -0.0001" in line
  assert not (tmp_path / "o").exists()
