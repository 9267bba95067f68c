"""What a run needs from its process, the same in every entry point and library job: seeds,
precision, the tf.distribute strategy, which worker writes, and the output directory."""
import contextlib
import ctypes
import logging as py_logging
import os
import random
import shutil
import signal
import sys
import tempfile

from absl import logging
import numpy as np
import tensorflow as tf
import tf_keras
from official.common import distribute_utils

from metabert_tf import io_utils
from metabert_tf.errors import ConfigError

STRATEGIES = ("one_device", "mirrored", "multi_worker_mirrored", "tpu")


def set_seed(seed):
  random.seed(seed)
  np.random.seed(seed)
  tf.random.set_seed(seed)

PRECISIONS = ("fp32", "bf16")  # bf16: the Keras mixed_bfloat16 policy


# CPU features with bf16 matmul instructions; without one, oneDNN falls back to slow kernels
# (measured: a MiniLM train step 16x slower in bf16 than in fp32 on an AVX2-only EPYC).
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags(path="/proc/cpuinfo"):
  """This CPU's feature flags (empty where /proc/cpuinfo is not readable)."""
  try:
    with open(path, encoding="utf-8") as f:
      for line in f:
        if line.startswith("flags"):
          return set(line.split(":", 1)[1].split())
  except OSError:
    pass
  return set()


def set_precision(precision, flags_path="/proc/cpuinfo"):
  """Sets the Keras policy; warns when bf16 is asked of a CPU-only machine whose CPU lacks bf16
  instructions (bf16 is then many times slower than fp32, not faster)."""
  if precision == "bf16" and not tf.config.list_physical_devices("GPU"):
    have = cpu_flags(flags_path)
    if have and not have & set(BF16_CPU_FLAGS):
      logging.warning("--precision bf16 on a CPU without bf16 instructions (%s): expect it to "
                      "run many times slower than fp32; use --precision fp32 here",
                      " or ".join(BF16_CPU_FLAGS))
  tf_keras.mixed_precision.set_global_policy("mixed_bfloat16" if precision == "bf16" else "float32")

def get_strategy(name, tpu=None):
  if name == "tpu" and not tpu:
    raise ConfigError("--distribution_strategy=tpu needs --tpu")
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

def prepare_output_dir(output_dir, overwrite):
  """Creates output_dir; with --overwrite_output_dir empties it first (only a directory that
  holds an earlier run's hyparams.txt, or nothing). Returns True when an earlier run's
  checkpoints are there to resume from."""
  if output_dir is None:
    raise ConfigError("is required", field="output_dir")
  if overwrite and os.path.isdir(output_dir):
    if os.listdir(output_dir) and not os.path.exists(os.path.join(output_dir, "hyparams.txt")):
      raise ConfigError(f"{output_dir} is not an output directory of ours (no hyparams.txt); "
                        "not deleting it", field="overwrite_output_dir")
    io_utils.remove_path(output_dir)  # killed midway, the old run is whole or gone
  os.makedirs(output_dir, exist_ok=True)
  return tf.train.latest_checkpoint(os.path.join(output_dir, "ckpt")) is not None


# The log files this process writes (log_to_file): a failure is recorded there too.
_LOG_FILES = []


def log_to_file(output_dir, name="log.txt"):
  """Logs everything to output_dir/name; the console keeps progress bars and warnings only. A
  log file of an earlier run in this process is closed first: a second run started from
  Python (a grid in one process, a test) does not write into the first one's log."""
  stop_logging_to_files()
  handler = py_logging.FileHandler(os.path.join(output_dir, name))
  _LOG_FILES.append(handler)
  handler.setFormatter(py_logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
  logging.get_absl_logger().addHandler(handler)
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().setLevel(py_logging.WARNING)
  tf.get_logger().setLevel(py_logging.WARNING)  # TF's own INFO lines ("Assets written to ...")
  return handler


def stop_logging_to_files():
  """Detaches and closes the log files of log_to_file."""
  while _LOG_FILES:
    handler = _LOG_FILES.pop()
    logging.get_absl_logger().removeHandler(handler)
    handler.close()


def record_failure(message, exc_info=None):
  """Appends a failure to this process's log files (the console already shows it)."""
  record = py_logging.LogRecord("absl", py_logging.ERROR, __file__, 0, message, None, exc_info)
  for handler in _LOG_FILES:
    handler.handle(record)


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
