"""Every command-line program of the repository, and a way to see the flags each defines
without running it (tests/test_flag_rules.py walks them)."""
import contextlib
import importlib.util
import io
import os
import sys

from absl import flags

from tests.conftest import REPO_DIR

# The root scripts run these (as `python -m`); tests load the programs themselves.
ROOT_SCRIPTS = {"run_finetune.py": "metabert_tf/programs/finetune.py",
                "run_meta_train.py": "metabert_tf/programs/meta_train.py",
                "run_multidomain.py": "metabert_tf/programs/multidomain.py"}
ALL = [
    *ROOT_SCRIPTS.values(), "metabert_tf/predict.py",
    "metabert_tf/experiments/__main__.py",
    "data_prep/write_tf_record.py", "data_prep/kshot.py", "data_prep/smlmt.py",
    "data_prep/mft_splits.py", "data_prep/download.py",
    "benchmarks/finetune_throughput.py", "benchmarks/meta_train_throughput.py",
    "benchmarks/mft_throughput.py", "benchmarks/profile_meta_step.py",
    "benchmarks/leopard_task_throughput.py",
]


@contextlib.contextmanager
def defined_flags(program, with_module=False):
  """Yields {name: Flag} of the flags `program` defines (at import, or in its define_flags()),
  in the global FLAGS (with_module: (the module, that dict)), and deletes them afterwards so
  the next program can define its own."""
  before = set(flags.FLAGS)
  program = ROOT_SCRIPTS.get(program, program)
  path = os.path.join(REPO_DIR, program)
  name = "_program_" + program.replace("/", "_").replace(".py", "")
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  sys.path.insert(0, os.path.dirname(path))  # benchmarks import bench_common as a sibling
  argv0, sys.argv[0] = sys.argv[0], path      # flags are filed under the program's name
  try:
    spec.loader.exec_module(module)
    if set(flags.FLAGS) == before and hasattr(module, "define_flags"):
      module.define_flags()
    defined = {n: flags.FLAGS[n] for n in set(flags.FLAGS) - before if n == flags.FLAGS[n].name}
    yield (module, defined) if with_module else defined
  finally:
    sys.argv[0] = argv0
    sys.path.remove(os.path.dirname(path))
    for n in set(flags.FLAGS) - before:
      delattr(flags.FLAGS, n)


def run(program, *argv):
  """(exit status, stderr) of `program` run with `argv` in this process, as absl's app.run
  would: a flag that does not parse ends it with status 1 and "FATAL Flags parsing error".
  For error paths, and for runs whose entry point another test already runs as a subprocess
  (a subprocess costs seconds of imports)."""
  err = io.StringIO()
  with defined_flags(program, with_module=True) as (module, _):
    try:
      try:
        flags.FLAGS([program, *argv])
      except flags.Error as e:
        return 1, f"FATAL Flags parsing error: {e}\n"
      try:
        with contextlib.redirect_stderr(err):
          status = module.main([program])
      except SystemExit as e:
        status = e.code
      return (status or 0), err.getvalue()
    finally:
      flags.FLAGS.unparse_flags()
      from metabert_tf import runtime  # pylint: disable=import-outside-toplevel
      runtime.stop_logging_to_files()  # the run's log.txt gets no later test's lines


def error_line(program, *argv):
  """The one error line `program` ends with (status 1, no traceback), run in this process."""
  status, err = run(program, *argv)
  lines = [l for l in err.splitlines() if l.startswith(("error:", "FATAL Flags parsing"))]
  assert status == 1 and len(lines) == 1 and "Traceback" not in err, (status, err[-2000:])
  return lines[0]


def rule_problems(program):
  """What is wrong with `program`'s flag rules: a numeric or list flag without a rule, a bad
  value its rule lets through, a default its rule refuses (a list of strings; [] = fine)."""
  from metabert_tf import flag_rules  # pylint: disable=import-outside-toplevel
  problems = []
  flags.FLAGS.mark_as_parsed()
  with defined_flags(program) as defined:
    for name, flag in sorted(defined.items()):
      if not flag_rules.needs_rule(flag) or flag_rules.is_library_flag(name):
        continue
      rule = flag_rules.rule_for(flag)
      if rule is None:
        problems.append(f"{program}: --{name} has no rule in flag_rules.RULES")
        continue
      if not flag.validators:
        problems.append(f"{program}: --{name} has a rule but the program does not register it")
        continue
      default = flag.value
      for bad in rule.bad_values():
        try:
          setattr(flags.FLAGS, name, bad)
          problems.append(f"{program}: --{name}={bad!r} is accepted")
        except flags.IllegalFlagValueError as e:
          if f"--{name} " not in str(e):
            problems.append(f"{program}: --{name}={bad!r}: the message does not name the flag: {e}")
      try:
        setattr(flags.FLAGS, name, default)
      except flags.IllegalFlagValueError as e:
        problems.append(f"{program}: --{name}'s default is refused: {e}")
  return problems


if __name__ == "__main__":
  import json  # pylint: disable=g-import-not-at-top
  print(json.dumps([p for program in (sys.argv[1:] or ALL) for p in rule_problems(program)]))
