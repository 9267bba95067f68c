"""`pip install .` installs metabert_tf, its data commands as metabert_data_prep (no generic
top-level data_prep), and console scripts that run the same programs as the root scripts."""
import importlib
import importlib.util
import os
import subprocess
import sys
import tomllib

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


def test_each_console_script_names_a_program_that_runs(tmp_path):
  with open(REPO_DIR / "pyproject.toml", "rb") as f:
    scripts = tomllib.load(f)["project"]["scripts"]
  for name, target in scripts.items():
    module, function = target.split(":")
    assert os.path.exists(os.path.join(BIN, name)), name  # make setup's pip install -e .
    if module.startswith("metabert_tf."):
      source = importlib.import_module(module)
      assert callable(getattr(source, function)), target
  for name, program in (("finetune", "metabert_tf.programs.finetune"),
                        ("predict", "metabert_tf.predict"),
                        ("experiment", "metabert_tf.experiments")):
    assert f'_run("{program}")' in open(source.__file__).read()
    assert importlib.util.find_spec(program) is not None
  # One end to end, outside the repository: the installed package runs the program.
  proc = subprocess.run([os.path.join(BIN, "metabert-finetune"), "--help"], capture_output=True,
                        text=True, timeout=120, cwd=tmp_path)
  assert "--train_file" in proc.stdout, proc.stderr[-2000:]  # (absl's --help exits with 1)


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
