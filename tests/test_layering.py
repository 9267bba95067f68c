"""Data flows one way: readers -> features -> models and trainers -> experiments -> entry
points. The library never imports data_prep (its programs) nor the CLI side (flags, hyparams,
exit codes), and every module of the package imports with every other one."""
import ast
import pathlib
import subprocess
import sys

from tests.conftest import REPO_DIR

PACKAGE = REPO_DIR / "metabert_tf"
# The CLI side: flags and what only programs do with them.
CLI_MODULES = {"metabert_tf.cli", "metabert_tf.flag_rules", "metabert_tf.mft_flags"}


def _modules():
  for path in sorted(PACKAGE.rglob("*.py")):
    parts = path.relative_to(REPO_DIR).with_suffix("").parts
    name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    yield name, path


def _imports(name, path):
  """Absolute names of what a module imports (`from a import b` gives a.b when b is a module)."""
  tree = ast.parse(path.read_text(), str(path))
  package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] +
                        ([base] if base else []))
      yield base
      yield from (f"{base}.{alias.name}" for alias in node.names)


def _is_program(path):
  return 'if __name__ == "__main__":' in path.read_text()


def test_the_library_never_imports_data_prep_or_the_cli_side():
  bad = []
  for name, path in _modules():
    program = _is_program(path) or name in CLI_MODULES
    for imported in _imports(name, path):
      top = imported.split(".")[0]
      if top == "data_prep":
        bad.append(f"{name} imports {imported} (data_prep holds programs)")
      elif not program and (imported in CLI_MODULES or imported == "absl.flags"):
        bad.append(f"{name} imports {imported} (the CLI side)")
  assert not bad, "\n".join(bad)


def test_every_module_of_the_package_imports_with_every_other():
  # Flags are defined only when a module runs as a program, so importing all at once in one
  # process cannot clash (two programs may both have --batch_size).
  names = [name for name, _ in _modules()]
  code = "import importlib, sys\nfor n in sys.argv[1:]:\n  importlib.import_module(n)\n"
  proc = subprocess.run([sys.executable, "-c", code, *names], cwd=REPO_DIR, capture_output=True,
                        text=True, timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
