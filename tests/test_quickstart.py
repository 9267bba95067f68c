"""The README's Python quick start is examples/quickstart.py, and it runs: the bundled MiniLM
fine-tuned on four in-memory examples, predictions, a save that loads back."""
import ast
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO_DIR

QUICKSTART = REPO_DIR / "examples" / "quickstart.py"


def test_the_readme_shows_the_quick_start_file():
  readme = (REPO_DIR / "README.md").read_text()
  block = re.search(r"```python\n(.*?)```", readme, re.S)
  assert block and block.group(1) == QUICKSTART.read_text()


@pytest.mark.slow
def test_the_quick_start_runs_and_classifies_its_two_examples(minilm_dir, tmp_path):
  env = {**os.environ, "PYTHONPATH": str(REPO_DIR)}
  proc = subprocess.run([sys.executable, str(QUICKSTART)], cwd=tmp_path, env=env,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = proc.stdout.strip().splitlines()
  assert ast.literal_eval(lines[0]) == ["positive", "negative"]
  assert os.path.exists(tmp_path / "my_classifier" / "checkpoint")
