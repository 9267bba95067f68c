"""`pip install .` installs metabert_tf, its data commands as metabert_data_prep (no generic
top-level data_prep), and console scripts that run the same programs as the root scripts."""
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_DIR

BIN = os.path.dirname(sys.executable)


def test_a_wheel_install_has_the_packages_and_no_top_level_data_prep(tmp_path):
  proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                         "--no-build-isolation", "--target", str(tmp_path / "site"),
                         str(REPO_DIR)], capture_output=True, text=True, timeout=300,
                        cwd=tmp_path)
  assert proc.returncode == 0, (proc.stdout + proc.stderr)[-2000:]
  installed = set(os.listdir(tmp_path / "site"))
  assert {"metabert_tf", "metabert_data_prep"} <= installed and "data_prep" not in installed
  for sub in ("data", "meta", "experiments", "programs"):
    assert os.path.exists(tmp_path / "site" / "metabert_tf" / sub / "__init__.py")
  scripts = set(os.listdir(tmp_path / "site" / "bin"))
  assert scripts == {"metabert-finetune", "metabert-meta-train", "metabert-multidomain",
                     "metabert-predict", "metabert-experiment", "metabert-data"}


@pytest.mark.parametrize("script, flag", [
    ("metabert-finetune", "--train_file"), ("metabert-meta-train", "--num_train_task"),
    ("metabert-multidomain", "--mft_alpha"), ("metabert-predict", "--model_dir"),
    ("metabert-experiment", "--protocol")])
def test_each_console_script_runs_its_program(script, flag, tmp_path):
  proc = subprocess.run([os.path.join(BIN, script), "--help"], capture_output=True, text=True,
                        timeout=120, cwd=tmp_path)  # not the repo: the installed package
  assert flag in proc.stdout, proc.stderr[-2000:]  # (absl's --help exits with status 1)


def test_metabert_data_dispatches_to_the_data_commands(tmp_path):
  data = os.path.join(BIN, "metabert-data")
  listing = subprocess.run([data], capture_output=True, text=True, timeout=60, cwd=tmp_path)
  assert listing.returncode == 1 and "smlmt" in listing.stderr and "kshot" in listing.stderr
  unknown = subprocess.run([data, "kshots"], capture_output=True, text=True, timeout=60,
                           cwd=tmp_path)
  assert unknown.returncode == 1 and "unknown command 'kshots'" in unknown.stderr
  kshot = subprocess.run([data, "kshot", "--help"], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path)
  assert "--num_splits" in kshot.stdout, kshot.stderr[-2000:]
