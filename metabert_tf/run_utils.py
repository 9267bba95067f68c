"""What every entry point does the same way: output dirs, hyparams.txt, the log file,
distribution strategies, precision, and one-line errors instead of tracebacks."""
import contextlib
import ctypes
import logging as py_logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile

from absl import flags
from absl import logging
import numpy as np
import tensorflow as tf
import tf_keras
from official.common import distribute_utils

from data_prep.examples import DataError
from metabert_tf import io_utils
from metabert_tf.bert_config import ConfigError
from metabert_tf.model_cache import ModelCacheError

STRATEGIES = ("one_device", "mirrored", "multi_worker_mirrored", "tpu")
USER_ERRORS = (DataError, ConfigError, ModelCacheError, flags.ValidationError)


def define_common_flags():
  """Flags shared by run_finetune.py and run_meta_train.py."""
  flags.DEFINE_string("bert_model", "minilm-l6", "Bundled model name, Google BERT dir, Hugging "
                      "Face BERT dir, or a metabert-tf checkpoint (prefix or directory).")
  flags.DEFINE_bool("do_lower_case", None, "Lower-case input; default: what the model says.")
  flags.DEFINE_enum("pooling", None, ["pooler", "mean"], "Sentence representation: BERT's [CLS] "
                    "pooler or the masked mean of token vectors; default: what the model was "
                    "trained with (mean for minilm-l6 and sentence-transformers exports).")
  flags.DEFINE_string("output_dir", None, "Where hyparams.txt, the log, ckpt/ and results go.")
  flags.DEFINE_bool("overwrite_output_dir", False, "Delete output_dir first instead of resuming.")
  flags.DEFINE_integer("max_seq_length", 128, "Tokens per example after WordPiece, padded.")
  flags.DEFINE_integer("seed", 0, "Seed for initialisation, shuffling and sampling.")
  flags.DEFINE_enum("distribution_strategy", "one_device", STRATEGIES, "tf.distribute strategy.")
  flags.DEFINE_string("tpu", None, "TPU address, with --distribution_strategy=tpu.")
  flags.DEFINE_enum("precision", "fp32", ["fp32", "bf16"], "bf16 = Keras mixed_bfloat16 policy.")
  flags.DEFINE_string("data_dir", None, "Root the data paths are relative to.")


def refuse_unread_flags(read_only_by, choice, choice_flag, flag_values=None):
  """An explicitly given flag that the chosen method does not read is an error, not silently
  ignored. `read_only_by`: {flag name: the `choice_flag` values that read it} (flags not named
  are read by every choice)."""
  flag_values = flag_values or flags.FLAGS
  for name, readers_of in sorted(read_only_by.items()):
    flag = flag_values[name]
    if choice not in readers_of and flag.present and flag.value != flag.default:
      raise flags.ValidationError(
          f"--{name} is not read by --{choice_flag}={choice} (only by "
          f"{', '.join(sorted(readers_of))}); drop it")


def set_seed(seed):
  random.seed(seed)
  np.random.seed(seed)
  tf.random.set_seed(seed)


def set_precision(precision):
  tf_keras.mixed_precision.set_global_policy("mixed_bfloat16" if precision == "bf16" else "float32")


def get_strategy(name, tpu=None):
  if name == "tpu" and not tpu:
    raise flags.ValidationError("--distribution_strategy=tpu needs --tpu")
  if name == "one_device":  # Model Garden picks the GPU when there is one, else the CPU
    return distribute_utils.get_distribution_strategy("one_device", num_gpus=min(
        1, len(tf.config.list_physical_devices("GPU"))))
  return distribute_utils.get_distribution_strategy(name, tpu_address=tpu)


def is_chief(strategy):
  """False only in a non-chief worker of a multi-worker strategy: workers share output_dir (as
  on a shared filesystem) and only the chief writes there (worker 0 when no "chief" task)."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or resolver.task_type in (None, "chief"):
    return True
  has_chief = "chief" in resolver.cluster_spec().as_dict()
  return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


@contextlib.contextmanager
def chief_keeps(path, strategy):
  """Yields where this worker should save `path`: `path` itself on the chief; elsewhere a
  throw-away directory, deleted afterwards (every worker must save: saving may run collectives)."""
  if is_chief(strategy):
    yield path
    return
  tmp = tempfile.mkdtemp(prefix="worker-")
  try:
    yield os.path.join(tmp, os.path.basename(path))
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


def start_run(output_dir, overwrite, strategy):
  """What both CLIs do before the job, on the chief only: prepare output_dir (resume or
  overwrite), record hyparams.txt and log to output_dir/log.txt."""
  if output_dir is None:
    raise flags.ValidationError("--output_dir is required")
  io_utils.check_writable(output_dir, "--output_dir", directory=True)
  if is_chief(strategy):
    resuming = prepare_output_dir(output_dir, overwrite)
    write_hyparams(output_dir, resuming)
    log_to_file(output_dir)


# Not written to hyparams.txt (it would wipe the run when the file is reused as --flagfile) ...
_NOT_RECORDED = {"overwrite_output_dir"}
# ... and free to differ when a run is resumed: they do not change what is computed.
_FREE_ON_RESUME = {"progress", "eval_batch_size", "save_every_steps", "export", "export_dir",
                   "distribution_strategy", "tpu", "process_per_cell"}


def prepare_output_dir(output_dir, overwrite):
  """Creates output_dir; with --overwrite_output_dir empties it first (only a directory that
  holds an earlier run's hyparams.txt, or nothing). Returns True when an earlier run's
  checkpoints are there to resume from."""
  if output_dir is None:
    raise flags.ValidationError("--output_dir is required")
  if overwrite and os.path.isdir(output_dir):
    if os.listdir(output_dir) and not os.path.exists(os.path.join(output_dir, "hyparams.txt")):
      raise flags.ValidationError(f"--overwrite_output_dir: {output_dir} is not an output "
                                  "directory of ours (no hyparams.txt); not deleting it")
    shutil.rmtree(output_dir)
  os.makedirs(output_dir, exist_ok=True)
  return tf.train.latest_checkpoint(os.path.join(output_dir, "ckpt")) is not None


def _ours(flag_values):
  by_module = flag_values.flags_by_module_dict()
  return [f for module in (sys.argv[0], __name__) for f in by_module.get(module, [])
          if f.name not in _NOT_RECORDED]


def _flag_lines(flag_values):
  return {f.name: f"--{f.name}={','.join(map(str, f.value)) if isinstance(f.value, list) else f.value}"
          for f in sorted(_ours(flag_values), key=lambda f: f.name) if f.value is not None}


def _same_setting(old_line, new_line):
  """Equal `--name=value` lines, or the same existing path spelt two ways (relative/absolute)."""
  if old_line == new_line:
    return True
  if old_line is None or new_line is None:
    return False
  old_value, new_value = old_line.split("=", 1)[1], new_line.split("=", 1)[1]
  return (os.path.exists(old_value) and os.path.exists(new_value)
          and os.path.realpath(old_value) == os.path.realpath(new_value))


def write_hyparams(output_dir, resuming=False, flag_values=None, free=(),
                   start_over="pass --overwrite_output_dir to start over"):
  """hyparams.txt: the flags of the entry point as `--name=value`, usable as a --flagfile.

  When resuming, the flags that decide what is computed must be those of the run on disk;
  `free` names more flags that may differ (for a grid driver: those that only pick cells)."""
  lines = _flag_lines(flag_values or flags.FLAGS)
  path = os.path.join(output_dir, "hyparams.txt")
  if resuming and os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      old = {line.split("=", 1)[0][2:]: line.strip() for line in f if line.startswith("--")}
    # A flag added since that run, and given its default, computes what the run on disk did.
    added_at_default = {f.name for f in _ours(flag_values or flags.FLAGS)
                        if f.name not in old and f.value == f.default}
    changed = sorted(name for name in set(old) | set(lines)
                     if name not in _FREE_ON_RESUME and name not in free
                     and name not in added_at_default
                     and not _same_setting(old.get(name), lines.get(name)))
    if changed:
      raise flags.ValidationError(
          f"{output_dir} holds a run with other settings ({', '.join(changed)}: "
          f"{[old.get(n) for n in changed]} before): re-run with the same flags to resume it, "
          f"or {start_over}")
  io_utils.atomic_write_text(path, "\n".join(lines.values()) + "\n")


# The log files this process writes (log_to_file): a failure is recorded there too.
_LOG_FILES = []


def log_to_file(output_dir, name="log.txt"):
  handler = py_logging.FileHandler(os.path.join(output_dir, name))
  _LOG_FILES.append(handler)
  handler.setFormatter(py_logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
  logging.get_absl_logger().addHandler(handler)
  logging.set_verbosity(logging.INFO)
  # The console shows progress bars and warnings; the log file gets everything.
  logging.get_absl_handler().setLevel(py_logging.WARNING)
  tf.get_logger().setLevel(py_logging.WARNING)  # TF's own INFO lines ("Assets written to ...")
  return handler


# Set in the processes run_cells_in_children starts (see is_grid_cell).
_GRID_CELL_ENV = "METABERT_TF_GRID_CELL"


def is_grid_cell():
  """True in a child of run_cells_in_children: it only fills its run directories; the parent
  owns hyparams.txt and the tables (a child writing them would leave one cell's table behind)."""
  return os.environ.get(_GRID_CELL_ENV) == "1"


def start_grid(output_dir, free_flags):
  """Start of a grid driver (harness, experiment): output_dir and its log, and hyparams.txt
  checked against what is there, so finished runs are only reused under the same settings.
  `free_flags` only pick which cells run, so they may differ between invocations."""
  io_utils.check_writable(output_dir, "--output_dir", directory=True)
  os.makedirs(output_dir, exist_ok=True)
  log_to_file(output_dir)
  if not is_grid_cell():
    io_utils.remove_leftovers(output_dir)
    write_hyparams(output_dir, resuming=True, free=free_flags,
                   start_over="give another --output_dir (or delete this one) to start over")


def run_cells_in_children(module, cells, output_dir):
  """Runs each cell of a grid as `python -m module <this command's flags> <cell flags>
  --noprocess_per_cell` in its own process, one after the other.

  Why: TensorFlow keeps ~350 MB for every model a process builds (clear_session and gc do not
  give it back), so a grid of hundreds of runs in one process ends out of memory. `cells` is a
  list of (name, [flag, ...]); absl lets the later flag win. The caller then only reads results.
  """
  env = dict(os.environ, **{_GRID_CELL_ENV: "1"})
  for i, (name, cell_flags) in enumerate(cells):
    print(f"[{i + 1}/{len(cells)}] {name}", flush=True)
    child = subprocess.run([sys.executable, "-m", module, *sys.argv[1:], *cell_flags,
                            "--noprocess_per_cell"], env=env, check=False,
                           preexec_fn=die_with_parent())
    if child.returncode:  # the child has printed its error; this says how to go on
      raise SystemExit(f"error: {name} failed (exit {child.returncode}); see {output_dir}/log.txt."
                       " Re-running the same command resumes from the finished runs.")


_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def die_with_parent(parent=None):
  """A subprocess preexec_fn that has the child SIGKILLed when this process dies, however it
  dies (Linux's prctl(PR_SET_PDEATHSIG)): a killed grid driver leaves no cell running and
  writing. None (nothing to do) where there is no prctl. `parent`: the pid to outlive
  (default: this process)."""
  if not sys.platform.startswith("linux"):
    return None
  try:
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork, not in the child
  except (OSError, AttributeError):
    return None
  parent = os.getpid() if parent is None else parent

  def preexec():
    prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))
    if os.getppid() != parent:  # the parent died before prctl ran: no signal will come
      os._exit(1)
  return preexec


def print_result(text):
  """Writes to the real stdout, which carries results only (see user_errors_exit)."""
  print(text, file=sys.__stdout__, flush=True)


def _record_failure(message, exc_info=None):
  """Appends the failure to the run's log.txt (the console already shows it)."""
  record = py_logging.LogRecord("absl", py_logging.ERROR, __file__, 0, message, None, exc_info)
  for handler in _LOG_FILES:
    handler.handle(record)


@contextlib.contextmanager
def user_errors_exit():
  """Wraps an entry point's work.

  Bad input ends the program with a one-line message and exit status 1, not a traceback, and
  the message is also written to the run's log.txt. Anything else printed on stdout while
  the work runs (library warnings) goes to stderr: stdout carries only what print_result writes.
  """
  try:
    with contextlib.redirect_stdout(sys.stderr):
      yield
  except (*USER_ERRORS, OSError) as e:
    if isinstance(e, OSError) and e.filename:  # e.g. a directory given where a file is wanted
      message = f"{e.filename}: {e.strerror or e}"
    else:
      message = str(e)
    print(f"error: {message}", file=sys.stderr)
    _record_failure(f"error: {message}")
    sys.exit(1)
  except BaseException as e:
    if not isinstance(e, (SystemExit, KeyboardInterrupt)):
      _record_failure(f"failed: {type(e).__name__}: {e}", sys.exc_info())
    raise
