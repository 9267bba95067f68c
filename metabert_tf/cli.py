"""What every entry point does the same way: common flags, hyparams.txt, the log file, grid
cells in child processes, and one-line errors instead of tracebacks (the library never imports
this module: see runtime.py for what jobs share)."""
import contextlib
import os
import sys

from absl import flags

from metabert_tf import flag_rules
from metabert_tf import io_utils
from metabert_tf import runtime
from metabert_tf.errors import ConfigError
from metabert_tf.errors import USER_ERRORS as LIBRARY_ERRORS

USER_ERRORS = (*LIBRARY_ERRORS, flags.ValidationError)


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
  flags.DEFINE_enum("distribution_strategy", "one_device", runtime.STRATEGIES,
                    "tf.distribute strategy.")
  flags.DEFINE_string("tpu", None, "TPU address, with --distribution_strategy=tpu.")
  flags.DEFINE_enum("precision", "fp32", list(runtime.PRECISIONS), "bf16 = Keras mixed_bfloat16 policy.")
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


def start_run(output_dir, overwrite, strategy):
  """What both CLIs do before the job, on the chief only: prepare output_dir (resume or
  overwrite), record hyparams.txt and log to output_dir/log.txt."""
  if output_dir is None:
    raise flags.ValidationError("--output_dir is required")
  io_utils.check_writable(output_dir, "--output_dir", directory=True)
  if runtime.is_chief(strategy):
    resuming = runtime.prepare_output_dir(output_dir, overwrite)
    write_hyparams(output_dir, resuming)
    runtime.log_to_file(output_dir)


# Not written to hyparams.txt (it would wipe the run when the file is reused as --flagfile) ...
_NOT_RECORDED = {"overwrite_output_dir"}
# ... and free to differ when a run is resumed: they do not change what is computed.
_FREE_ON_RESUME = {"progress", "eval_batch_size", "save_every_steps", "export", "export_dir",
                   "distribution_strategy", "tpu", "process_per_cell"}


def _ours(flag_values):
  """The program's flags and the shared ones: every flag absl or TensorFlow did not define
  (wherever the program defined its own: as __main__, or in a module a test loads)."""
  seen, out = set(), []
  for module, module_flags in flag_values.flags_by_module_dict().items():
    for f in module_flags:
      if (f.name not in seen and f.name not in _NOT_RECORDED
          and not flag_rules.is_library_flag(f.name, flag_values)):
        seen.add(f.name)
        out.append(f)
  return out


def _flag_lines(flag_values):
  """{name: its line(s)}: a list flag as one comma-separated line, a repeatable (multi) flag
  as one line per value, so the file works as a --flagfile."""
  def lines(flag):
    if isinstance(flag, flags.MultiFlag):
      return "\n".join(f"--{flag.name}={v}" for v in flag.value)
    value = flag.value
    return f"--{flag.name}={','.join(map(str, value)) if isinstance(value, list) else value}"
  return {f.name: lines(f)
          for f in sorted(_ours(flag_values), key=lambda f: f.name) if f.value is not None}


def _same_setting(old_lines, new_lines):
  """Equal `--name=value` line(s), or the same existing paths spelt two ways (relative or
  absolute)."""
  if old_lines == new_lines:
    return True
  if old_lines is None or new_lines is None:
    return False
  olds, news = old_lines.split("\n"), new_lines.split("\n")
  if len(olds) != len(news):
    return False
  for old_line, new_line in zip(olds, news):
    old_value, new_value = old_line.split("=", 1)[1], new_line.split("=", 1)[1]
    if old_value != new_value and not (
        os.path.exists(old_value) and os.path.exists(new_value)
        and os.path.realpath(old_value) == os.path.realpath(new_value)):
      return False
  return True


def write_hyparams(output_dir, resuming=False, flag_values=None, free=(),
                   start_over="pass --overwrite_output_dir to start over"):
  """hyparams.txt: the flags of the entry point as `--name=value`, usable as a --flagfile.

  When resuming, the flags that decide what is computed must be those of the run on disk;
  `free` names more flags that may differ (for a grid driver: those that only pick cells)."""
  lines = _flag_lines(flag_values or flags.FLAGS)
  path = os.path.join(output_dir, "hyparams.txt")
  if resuming and os.path.exists(path):
    old = {}
    with open(path, encoding="utf-8") as f:
      for line in f:  # a repeatable flag has one line per value
        if line.startswith("--"):
          name = line.split("=", 1)[0][2:]
          old[name] = f"{old[name]}\n{line.strip()}" if name in old else line.strip()
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


def print_result(text):
  """Writes to the real stdout, which carries results only (see user_errors_exit)."""
  print(text, file=sys.__stdout__, flush=True)


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
    elif isinstance(e, ConfigError) and e.flag:  # a setting: its flag
      message = f"--{e.flag} {e.message}"
    else:
      message = str(e)
    print(f"error: {message}", file=sys.stderr)
    runtime.record_failure(f"error: {message}")
    sys.exit(1)
  except BaseException as e:
    if not isinstance(e, (SystemExit, KeyboardInterrupt)):
      runtime.record_failure(f"failed: {type(e).__name__}: {e}", sys.exc_info())
    raise
