"""From a file name on the command line to encoded features: readers, label lists, tf_records."""
import os

from absl import logging
import tensorflow as tf

from data_prep import readers
from data_prep.examples import DataError
from metabert_tf import records

TF_RECORD_SUFFIXES = (".tf_record", ".tfrecord")


def resolve(spec, data_dir):
  """Relative paths are looked up under --data_dir (when given); a data spec keeps its options."""
  path = readers.data_path(spec) if spec else spec
  if path and data_dir and not os.path.isabs(path) and not os.path.exists(path):
    return os.path.join(data_dir, spec)
  return spec


def exists(spec):
  """Whether the file or directory of a path or data spec (PATH:options) exists."""
  return tf.io.gfile.exists(readers.data_path(spec))


def leopard_files(data_dir, task, k, split):
  """(train, eval) paths of a LEOPARD-layout data dir: <task>/<task>_train_<F>_<K>.json."""
  if not data_dir:
    raise DataError("--data_dir", "--task needs --data_dir (a LEOPARD-layout directory)")
  for root in (data_dir, os.path.join(data_dir, "json")):
    task_dir = os.path.join(root, task)
    if os.path.isdir(task_dir):
      train = os.path.join(task_dir, f"{task}_train_{split}_{k}.json")
      evals = os.path.join(task_dir, f"{task}_eval.json")
      if not os.path.exists(train):
        available = sorted(f for f in os.listdir(task_dir) if "_train_" in f)
        raise DataError(train, f"no such split file (have: {', '.join(available[:6])}...)")
      if not os.path.exists(evals):
        raise DataError(evals, f"no eval file for task {task!r}")
      return train, evals
  raise DataError(data_dir, f"no directory for task {task!r}")


def is_tf_record(spec):
  return readers.data_path(spec).endswith(TF_RECORD_SUFFIXES)


def read(spec):
  """LabeledExamples from any reader format (not tf_records: those are already encoded)."""
  return readers.read_examples(spec)


def choose_label_list(example_sets, explicit=None, model=None, source="data",
                      must_fit_model=False):
  """The label list (position = label id), in this order of preference:

  `explicit` (--label_list, or a tf_record's own list): the data must fit it;
  `model` (a checkpoint's list): used when the data's labels fit it, so ids stay the same from
  meta-training to fine-tuning to prediction; otherwise (`must_fit_model`, e.g. zero-shot, is
  an error) a new head is trained on the sorted labels of the data.
  """
  labels = sorted({e.label for examples in example_sets for e in examples})
  if explicit is not None:
    unknown = sorted(set(labels) - set(explicit))
    if unknown:
      raise DataError(source, f"labels {unknown} are not in the label list {list(explicit)}")
    return list(explicit)
  if model is not None:
    if set(labels) <= set(model):
      return list(model)
    if must_fit_model:
      raise DataError(source, f"labels {sorted(set(labels) - set(model))} are not in the "
                      f"model's label list {list(model)}")
    logging.warning("The data's labels %s differ from the model's %s: training a new head.",
                    labels, list(model))
  if not labels:
    raise DataError(source, "no label list: tf_records without a .meta.json need --label_list")
  return labels


def record_label_list(path):
  """The label list stored beside a tf_record we wrote (None for other files)."""
  meta = records.read_metadata(readers.plain_path(path)) if is_tf_record(path) else None
  return meta.get("label_list") if meta else None


def load_features(path, input_encoder, label_list):
  """Encoded features of one file; tf_records are validated against max_seq_length/labels."""
  if is_tf_record(path):
    path = readers.plain_path(path)
    features, meta = records.load(path, input_encoder.max_seq_length, len(label_list))
    if meta is None:
      logging.warning("%s has no .meta.json: its vocabulary cannot be checked; the records must "
                      "be encoded with the model's vocabulary (%d tokens)", path,
                      len(input_encoder.vocab))
    if meta and meta.get("label_list") and meta["label_list"] != list(label_list):
      raise DataError(path, f"records use label list {meta['label_list']}, the model "
                      f"{list(label_list)}")
    if meta and meta.get("vocab_fingerprint") not in (None, records.vocab_fingerprint(
        input_encoder.vocab)):
      raise DataError(path, "records were encoded with a different vocabulary than the model's")
    return features
  return records.encode(read(path), input_encoder, label_list, source=path)
