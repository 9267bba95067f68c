"""From a file name on the command line to encoded features: readers, label lists, tf_records."""
import os

from absl import logging
import tensorflow as tf

from metabert_tf import backbones
from metabert_tf import records
from metabert_tf.data import readers
from metabert_tf.errors import ConfigError
from metabert_tf.errors import DataError

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
    raise ConfigError("is needed with a task name (a LEOPARD-layout directory)",
                      field="data_dir")
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
  """LabeledExamples from any reader format (not tf_records: those are already encoded); a
  warning when the same text comes with two labels."""
  examples = readers.read_examples(spec)
  warn_conflicting_labels(examples, spec)
  return examples


def warn_conflicting_labels(examples, source):
  conflicts = readers.conflicting_labels(examples)
  if conflicts:
    first = [f"{e.where} ({e.label})" for _, group in conflicts[:3] for e in group[:2] if e.where]
    logging.warning("%s: %d texts occur with more than one label (first at %s): they cannot "
                    "all be classified right", source, len(conflicts), ", ".join(first))
  return conflicts


def choose_label_list(example_sets, explicit=None, model=None, source="data",
                      must_fit_model=False):
  """The label list (position = label id), in this order of preference:

  `explicit` (--label_list, or a tf_record's own list): the data must fit it;
  `model` (a checkpoint's list): used when the data's labels fit it, so ids stay the same from
  meta-training to fine-tuning to prediction; otherwise (`must_fit_model`, e.g. zero-shot, is
  an error) a new head is trained on the sorted labels of the data.
  """
  labels = sort_labels({e.label for examples in example_sets for e in examples})
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


def sort_labels(labels):
  """Label names in id order: numeric names by value ("2" before "10"), then the others."""
  def key(label):
    try:
      return (0, int(label), label)
    except ValueError:
      return (1, 0, label)
  return sorted(labels, key=key)


def record_label_list(path):
  """The label list stored beside a tf_record we wrote (None for other files)."""
  meta = records.read_metadata(readers.plain_path(path)) if is_tf_record(path) else None
  return meta.get("label_list") if meta else None


def check_trainable(path, label_list=None):
  """Reads training data early (before an entry point creates its output directory): a file
  of one label is refused. tf_records are checked by their .meta.json, when they have one."""
  if is_tf_record(path):
    meta = records.read_metadata(readers.plain_path(path)) or {}
    counts = meta.get("label_counts")
    if counts is not None and sum(1 for c in counts.values() if c) < 2:
      raise DataError(path, f"training data with one label ({', '.join(counts)}): a "
                      "classifier needs >= 2")
    return
  examples = read(path)
  labels = sort_labels({e.label for e in examples})
  require_two_labels(range(len(labels)), labels, path)


def require_domains(examples, source):
  """Every example has a domain (multi-domain methods, domain splits), else a DataError that
  says the file has none and how to name its domain field/column."""
  for i, example in enumerate(examples):
    if not example.domain:
      raise DataError(source, "no domain: multi-domain data needs a domain per example, and "
                      "this file has no domain field/column (name it with a data spec, e.g. "
                      "PATH:domain=category)", example.where or f"example {i} (0-based)")


def require_two_labels(label_ids, label_list, source):
  """Training data of one label would train a 1-class "classifier" that scores 1.0: refuse."""
  present = sorted({int(i) for i in label_ids})
  if len(present) < 2:
    names = ", ".join(repr(label_list[i]) for i in present) or "none"
    raise DataError(source, f"training data with one label ({names}): a classifier needs >= 2")


def unseen_labels(examples, label_list, source, allow):
  """Labels of evaluation `examples` outside `label_list` (the head's classes): an error naming
  them and the file, or with `allow` a warning (those examples then count as errors)."""
  unseen = sorted({e.label for e in examples} - set(label_list))
  if unseen and not allow:
    raise DataError(source, f"labels {unseen} are not among the classes the model is trained on "
                    f"{list(label_list)} (pass --allow_unseen_eval_labels to evaluate anyway: "
                    "their examples count as errors)")
  if unseen:
    logging.warning("%s: labels %s are not among the model's classes %s: their %d examples "
                    "count as errors", source, unseen, list(label_list),
                    sum(e.label in unseen for e in examples))
  return unseen


def load_features(path, input_encoder, label_list, allow_unseen_labels=False):
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
  return records.encode(read(path), input_encoder, label_list, source=path,
                        allow_unseen_labels=allow_unseen_labels)


def multidomain_features(path, input_encoder, explicit_labels=None, model_labels=None):
  """(features with domain_ids, label_list, domain_list) of multi-domain data: any reader
  format whose examples all have a domain, or a BERT tf_record written with domain_ids, whose
  .meta.json names its labels and domains (and whose vocabulary must be the model's)."""
  if is_tf_record(path):
    meta = records.read_metadata(readers.plain_path(path))
    if not meta or not meta.get("domain_list"):
      raise DataError(path, "multi-domain training needs records with domain_ids and their "
                      ".meta.json: write them with data_prep.write_tf_record --with_domains")
    label_list = choose_label_list([], explicit_labels or meta["label_list"], source=path)
    features = load_features(path, input_encoder, label_list)
    if "domain_ids" not in features:
      raise DataError(path, "records have no domain_ids although the .meta.json lists domains")
    return features, label_list, list(meta["domain_list"])
  examples = read(path)
  require_domains(examples, path)
  domain_list = sorted({e.domain for e in examples})
  label_list = choose_label_list([examples], explicit_labels, model_labels, source=path)
  features = records.encode(examples, input_encoder, label_list, domain_list, source=path)
  return features, label_list, domain_list


def multidomain_job_inputs(data, bert_model, do_lower_case, max_seq_length, label_list=None):
  """What a multi-domain job reads before any weights are loaded (so bad data fails fast):
  (the backbone's description, its input encoder, features, label_list, domain_list)."""
  source = backbones.describe_backbone(bert_model, do_lower_case)
  encoder = source.input_encoder(max_seq_length)
  features, labels, domains = multidomain_features(data, encoder, label_list, source.label_list)
  return source, encoder, features, labels, domains
