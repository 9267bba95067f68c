"""metabert-tf checkpoints: TF checkpoints that carry everything needed to reload a model.

Besides the weights (`encoder`, `head`, and during training the optimizer and progress), each
checkpoint stores one string variable `metadata`: JSON with the BERT config, the vocabulary,
the casing, the label list and max_seq_length. So `--bert_model <prefix>` works alone.
Never pickles; meta-learning "learner" copies are never put in a checkpoint.
"""
import contextlib
import json
import os

import tensorflow as tf

from metabert_tf import io_utils
from metabert_tf.errors import ConfigError

_METADATA_KEY = "metadata/.ATTRIBUTES/VARIABLE_VALUE"
FORMAT = "metabert-tf/1"


def metadata_variable(bert_config, vocab, lower_case, label_list, max_seq_length, **extra):
  payload = {"format": FORMAT, "bert_config": json.loads(bert_config.to_json()),
             "vocab": list(vocab), "lower_case": bool(lower_case),
             "label_list": None if label_list is None else list(label_list),
             "max_seq_length": int(max_seq_length), **extra}
  return tf.Variable(json.dumps(payload), trainable=False, dtype=tf.string, name="metadata")


def model_checkpoint(model, metadata, **extra):
  """The layout every trainer shares: encoder, head, metadata (+ optimizer, step, ...)."""
  return tf.train.Checkpoint(encoder=model.encoder, head=model.head, metadata=metadata, **extra)


def _has_metadata(prefix):
  try:
    return _METADATA_KEY in tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
  except (tf.errors.NotFoundError, ValueError, tf.errors.DataLossError):
    return False


def has_optimizer(prefix):
  """True for a checkpoint to resume training from; False for a weights-only one."""
  return any(key.startswith("optimizer/")
             for key in tf.train.load_checkpoint(prefix).get_variable_to_shape_map())


def resolve_prefix(spec):
  """A checkpoint prefix, or a directory whose newest checkpoint is used."""
  if os.path.isdir(spec):
    for directory in (spec, os.path.join(spec, "ckpt")):
      latest = tf.train.latest_checkpoint(directory) if os.path.isdir(directory) else None
      if latest:
        return latest
    return None
  return spec if os.path.exists(spec + ".index") else None


def is_toolkit_checkpoint(spec):
  prefix = resolve_prefix(spec)
  return prefix is not None and _has_metadata(prefix)


def record_checkpoint(directory, prefix, keep=lambda name: True):
  """Makes `prefix` the newest checkpoint of `directory` (the `checkpoint` state file that
  tf.train.latest_checkpoint reads, written atomically). Earlier checkpoints stay listed if
  `keep(basename)`; the others are unlisted first and then deleted, so the state file never
  names a missing checkpoint."""
  state = tf.train.get_checkpoint_state(directory)
  earlier = [os.path.basename(p) for p in (state.all_model_checkpoint_paths if state else [])]
  earlier = [p for p in earlier if p != os.path.basename(prefix)]
  paths = [p for p in earlier if keep(p)] + [os.path.basename(prefix)]
  lines = [f'model_checkpoint_path: "{paths[-1]}"'] + [
      f'all_model_checkpoint_paths: "{p}"' for p in paths]
  io_utils.atomic_write_text(os.path.join(directory, "checkpoint"), "\n".join(lines) + "\n")
  for name in set(earlier) - set(paths):
    # The .index first: a kill part-way leaves data files without one, which
    # io_utils.remove_leftovers knows, never an index naming missing data.
    for path in sorted(tf.io.gfile.glob(os.path.join(directory, name) + ".*"),
                       key=lambda p: not p.endswith(".index")):
      tf.io.gfile.remove(path)


@contextlib.contextmanager
def reading_weights(path, *more_errors):
  """A truncated or corrupt weights file ends in one line naming it, not a library traceback
  (TF's reader raises IndexError, DataLossError, ...; `more_errors`: other readers' errors)."""
  try:
    yield
  except (IndexError, ValueError, OSError, tf.errors.OpError, *more_errors) as e:
    if isinstance(e, ConfigError):
      raise
    detail = (getattr(e, "message", None) or str(e)).strip().splitlines()
    raise ConfigError(f"{path}: cannot read the weights, the file is truncated or corrupt "
                      f"({type(e).__name__}: {detail[0] if detail else ''})") from None


def read_metadata(prefix):
  with reading_weights(prefix):
    raw = tf.train.load_checkpoint(prefix).get_tensor(_METADATA_KEY)
  meta = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
  if meta.get("format") != FORMAT:
    raise ConfigError(f"{prefix}: unsupported checkpoint format {meta.get('format')!r}")
  return meta
