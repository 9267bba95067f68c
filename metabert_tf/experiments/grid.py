"""The grid every protocol runs on: cells, one child process per cell, reuse of finished runs
under the same settings, progress, and the report, once.

A protocol (leopard_kshot, meta_bert, mft_table) is a module with
  NAME, Config (a dataclass with output_dir and process_per_cell), FREE_FIELDS (settings that
  only pick which cells run: they may change between invocations),
  check(config)                 everything checkable before hours of runs (files, settings),
  cells(config) -> [Cell]       the grid, in run order,
  run_cell(config, cell)        fills the cell's run directories (finished runs are reused),
  report(config, cells) -> str  reads the runs, writes summary.json and the tables, returns text,
and optionally
  finished(config, cell) -> bool  every run of the cell is there to reuse: no child is started
                                  for it (a relaunch walks past finished cells in seconds).

`run` writes output_dir/experiment.json (the protocol and its config): a later invocation with
other settings (beyond FREE_FIELDS) is refused, so a finished run is only reused for the
settings that made it. Cells run as `python -m metabert_tf.experiments --output_dir D
--run_cell I`, reading the config from experiment.json: TensorFlow keeps ~350 MB for every
model a process builds (clear_session and gc do not give it back), so a grid of hundreds of
runs in one process ends out of memory.
"""
import dataclasses
import json
import os
import shutil
import subprocess
import sys
from typing import Tuple

from metabert_tf import io_utils
from metabert_tf import runtime
from metabert_tf.errors import ConfigError
from metabert_tf.errors import Error

EXPERIMENT_FILE = "experiment.json"
ALWAYS_FREE = ("process_per_cell",)


class CellFailed(Error):
  """A cell's child process failed (it has printed its own error)."""


@dataclasses.dataclass(frozen=True)
class Cell:
  name: str          # what the progress line shows
  key: Tuple         # what the protocol needs to run it, e.g. (task, k)


def setting(default, help_text, choices=None):
  """A Config field with its help (the CLI's flag help) and, for a string, its `choices`; a
  list default is copied per config."""
  metadata = {"help": help_text, "choices": choices}
  if isinstance(default, list):
    return dataclasses.field(default_factory=lambda: list(default), metadata=metadata)
  return dataclasses.field(default=default, metadata=metadata)


def fingerprint(protocol, config):
  return {"protocol": protocol.NAME, "config": dataclasses.asdict(config)}


def same_setting(old, new):
  """Equal settings, or the same existing path spelt two ways (relative / absolute)."""
  if old == new:
    return True
  return (isinstance(old, str) and isinstance(new, str) and os.path.exists(old)
          and os.path.exists(new) and os.path.realpath(old) == os.path.realpath(new))


def start(protocol, config):
  """Makes output_dir and its log; refuses settings other than those of the runs already
  there (beyond the free fields); records the settings in experiment.json."""
  out = config.output_dir
  if not out:
    raise ConfigError("is required", field="output_dir")
  io_utils.check_writable(out, "--output_dir", directory=True)
  path = os.path.join(out, EXPERIMENT_FILE)
  new = fingerprint(protocol, config)
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      old = json.load(f)
    free = set(protocol.FREE_FIELDS) | set(ALWAYS_FREE)
    # A setting added since that run, and at its default, computes what the run on disk did.
    defaults = dataclasses.asdict(protocol.Config())
    free |= {name for name in new["config"]
             if name not in old["config"] and new["config"][name] == defaults.get(name)}
    if old.get("protocol") != protocol.NAME:
      raise ConfigError(f"{out} holds a {old.get('protocol')} experiment, not {protocol.NAME}: "
                        "give another --output_dir")
    changed = sorted(name for name in set(old["config"]) | set(new["config"])
                     if name not in free
                     and not same_setting(old["config"].get(name), new["config"].get(name)))
    if changed:
      raise ConfigError(
          f"{out} holds a run with other settings ({', '.join(changed)}: "
          f"{[old['config'].get(n) for n in changed]} before): re-run with the same settings to "
          "resume it, or give another --output_dir (or delete this one) to start over")
  os.makedirs(out, exist_ok=True)
  io_utils.remove_leftovers(out)
  runtime.log_to_file(out)
  io_utils.atomic_write_json(path, new)


def load(output_dir, protocols):
  """(protocol module, config) recorded in output_dir/experiment.json."""
  path = os.path.join(output_dir, EXPERIMENT_FILE)
  if not os.path.exists(path):
    raise ConfigError(f"{output_dir} has no {EXPERIMENT_FILE}", field="output_dir")
  with open(path, encoding="utf-8") as f:
    recorded = json.load(f)
  protocol = protocols[recorded["protocol"]]
  return protocol, protocol.Config(**recorded["config"])


def run(protocol, config, run_cell_in_child=None):
  """Checks, then runs every cell (each in a child process when config.process_per_cell and
  there is more than one), then the report; returns the report's text.

  `run_cell_in_child(output_dir, index)` runs one cell elsewhere (the CLI passes one that
  starts `python -m metabert_tf.experiments`)."""
  protocol.check(config)
  start(protocol, config)
  cells = protocol.cells(config)
  in_children = config.process_per_cell and len(cells) > 1
  finished = getattr(protocol, "finished", lambda config, cell: False)
  for i, cell in enumerate(cells):
    if finished(config, cell):
      print(f"[{i + 1}/{len(cells)}] {cell.name}: finished", file=sys.stderr, flush=True)
      continue
    print(f"[{i + 1}/{len(cells)}] {cell.name}", file=sys.stderr, flush=True)
    if in_children:
      (run_cell_in_child or run_in_child)(config.output_dir, i, cell.name)
    else:
      protocol.run_cell(config, cell)
  return protocol.report(config, cells)


def run_in_child(output_dir, index, name, argv=None):
  """Runs cell `index` of the experiment in output_dir in a child process that dies with this
  one (or `argv`, a command line for python, instead)."""
  argv = argv or ["-m", "metabert_tf.experiments", f"--output_dir={output_dir}",
                  f"--run_cell={index}"]
  child = subprocess.run([sys.executable, *argv], check=False,
                         preexec_fn=runtime.die_with_parent())
  if child.returncode:  # the child has printed its error; this says how to go on
    raise CellFailed(f"{name} failed (exit {child.returncode}); see {output_dir}/log.txt. "
                     "Re-running the same command resumes from the finished runs.")


def reuse_or_run(run_dir, work):
  """results.json of run_dir: read when a finished run left it, else made by `work()` first
  (a run that was killed restarts from its checkpoints)."""
  done = os.path.join(run_dir, "results.json")
  if not os.path.exists(done):
    work()
  with open(done, encoding="utf-8") as f:
    return json.load(f)


def read_results(run_dir):
  with open(os.path.join(run_dir, "results.json"), encoding="utf-8") as f:
    return json.load(f)


def drop_checkpoints(run_dir, keep=False):
  """A finished run's ckpt/ is large and not needed again (unless kept)."""
  if not keep:
    shutil.rmtree(os.path.join(run_dir, "ckpt"), ignore_errors=True)
