"""The one place that knows the BERT tf_record schema, its metadata file, and label maps.

A record holds `input_ids`, `input_mask`, `segment_ids` (int64 [max_seq_length]), `label_ids`
(int64) and optionally `domain_ids` (int64): Google BERT's run_classifier layout, so the original
LEOPARD files read with the same spec. Beside each file we write `<file>.meta.json` with the
label list, num_labels, max_seq_length, counts per label and domain, and a vocab fingerprint.
In memory, encoded data is a dict of numpy arrays keyed by the model's input names
(`input_word_ids`, `input_mask`, `input_type_ids`, `label_ids`, `domain_ids`).
"""
import collections
import hashlib
import json
import os
import tempfile

from google.protobuf import message
import numpy as np
import tensorflow as tf

from metabert_tf import io_utils
from metabert_tf.errors import DataError

MODEL_INPUTS = ("input_word_ids", "input_mask", "input_type_ids")
_RECORD_NAMES = {"input_word_ids": "input_ids", "input_mask": "input_mask",
                 "input_type_ids": "segment_ids"}


def feature_spec(max_seq_length, with_domains=False):
  spec = {name: tf.io.FixedLenFeature([max_seq_length], tf.int64)
          for name in _RECORD_NAMES.values()}
  spec["label_ids"] = tf.io.FixedLenFeature([], tf.int64)
  if with_domains:
    spec["domain_ids"] = tf.io.FixedLenFeature([], tf.int64)
  return spec


def vocab_fingerprint(vocab):
  return hashlib.sha256("\n".join(vocab).encode("utf-8")).hexdigest()[:16]


# label_ids of evaluation examples whose label the classifier head does not have: never predicted.
UNSEEN_LABEL_ID = -1


def encode(examples, input_encoder, label_list, domain_list=None, source="data",
           allow_unseen_labels=False):
  """LabeledExamples -> dict of numpy arrays (see module docstring).

  A label outside `label_list` is an error, or with `allow_unseen_labels` (evaluation only)
  gets UNSEEN_LABEL_ID."""
  if not examples:
    raise DataError(source, "no examples")
  index = {label: i for i, label in enumerate(label_list)}
  domains = None if domain_list is None else {d: i for i, d in enumerate(domain_list)}
  for i, e in enumerate(examples):
    if e.label not in index and not allow_unseen_labels:
      raise DataError(source, f"unknown label {e.label!r} (expected one of {list(label_list)})", i)
    if domains is not None and e.domain is None:
      raise DataError(source, "no domain, and domain ids are asked for: this file has no "
                      "domain field/column (name it with a data spec, e.g. PATH:domain=category)",
                      e.where or i)
    if domains is not None and e.domain not in domains:
      raise DataError(source, f"unknown domain {e.domain!r} (expected one of {list(domain_list)})", i)
  if len({e.text_b is None for e in examples if not e.is_encoded}) > 1:
    first = next(i for i, e in enumerate(examples)
                 if (e.text_b is None) != (examples[0].text_b is None))
    raise DataError(source, "mixes single texts and text pairs (an empty second text?); use one "
                    "kind per file", first)
  if any(e.is_encoded for e in examples):
    features = _pad_encoded(examples, input_encoder.max_seq_length, source)
  else:
    features = input_encoder.encode_examples(examples)
  features["label_ids"] = np.array([index.get(e.label, UNSEEN_LABEL_ID) for e in examples],
                                   np.int32)
  if domains is not None:
    features["domain_ids"] = np.array([domains[e.domain] for e in examples], np.int32)
  return features


def _pad_encoded(examples, max_seq_length, source):
  out = {k: np.zeros([len(examples), max_seq_length], np.int32) for k in MODEL_INPUTS}
  for i, e in enumerate(examples):
    n = len(e.input_ids)
    if n > max_seq_length:
      raise DataError(source, f"encoded example has {n} tokens > max_seq_length {max_seq_length}", i)
    out["input_word_ids"][i, :n] = e.input_ids
    out["input_mask"][i, :n] = 1
    out["input_type_ids"][i, :n] = e.segment_ids if e.segment_ids is not None else 0
  return out


def write(path, features, label_list, vocab, lower_case, domain_list=None):
  """Writes features (from `encode`) to a tf_record and its metadata JSON, atomically."""
  n, max_seq_length = features["input_word_ids"].shape
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  if os.path.exists(metadata_path(path)):  # never leave an old .meta.json beside new records
    os.remove(metadata_path(path))
  # a temp name of io_utils' (what a SIGKILL leaves is one remove_leftovers knows)
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)),
                             **io_utils.temp_name_parts(path))
  os.close(fd)
  try:
    with tf.io.TFRecordWriter(tmp) as writer:
      for i in range(n):
        feats = {rec: _int64(features[name][i]) for name, rec in _RECORD_NAMES.items()}
        feats["label_ids"] = _int64([features["label_ids"][i]])
        if "domain_ids" in features:
          feats["domain_ids"] = _int64([features["domain_ids"][i]])
        writer.write(tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString())
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  label_counts = collections.Counter(label_list[i] for i in features["label_ids"])
  meta = {"num_examples": int(n), "max_seq_length": int(max_seq_length),
          "label_list": list(label_list), "num_labels": len(label_list),
          "label_counts": dict(sorted(label_counts.items())),
          "vocab_fingerprint": vocab_fingerprint(vocab), "lower_case": bool(lower_case)}
  if domain_list is not None:
    meta["domain_list"] = list(domain_list)
    meta["domain_counts"] = dict(sorted(collections.Counter(
        domain_list[i] for i in features["domain_ids"]).items()))
  io_utils.atomic_write_json(metadata_path(path), meta)
  return meta


def _int64(values):
  return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def metadata_path(path):
  return path + ".meta.json"


def read_metadata(path):
  meta_file = metadata_path(path)
  if not os.path.exists(meta_file):
    return None
  with open(meta_file, encoding="utf-8") as f:
    return json.load(f)


def load(path, max_seq_length, num_labels=None):
  """Reads a BERT-format tf_record fully into numpy arrays, validating every record."""
  if not os.path.exists(path):
    raise DataError(path, "file not found")
  meta = read_metadata(path)
  if meta is not None:
    if meta["max_seq_length"] != max_seq_length:
      raise DataError(path, f"records have sequence length {meta['max_seq_length']} but "
                      f"--max_seq_length is {max_seq_length}")
    num_labels = meta["num_labels"] if num_labels is None else num_labels
  columns = collections.defaultdict(list)
  framed_bytes = 0  # what the records read take in the file: 16 bytes of framing each
  try:
    for i, raw in enumerate(tf.data.TFRecordDataset(path).as_numpy_iterator()):
      framed_bytes += 16 + len(raw)
      try:
        feats = tf.train.Example.FromString(raw).features.feature
      except message.DecodeError:
        raise DataError(path, "not a tf.train.Example (is this a BERT-format tf_record?)",
                        f"record {i} (0-based)") from None
      for name in list(_RECORD_NAMES.values()) + ["label_ids", "domain_ids"]:
        if name not in feats:
          if name == "domain_ids":
            continue
          raise DataError(path, f"record has no feature {name!r}", i)
        values = feats[name].int64_list.value
        if name in _RECORD_NAMES.values() and len(values) != max_seq_length:
          raise DataError(path, f"{name} has length {len(values)} but --max_seq_length is "
                          f"{max_seq_length}", i)
        columns[name].append(values if name in _RECORD_NAMES.values() else values[0])
      if len(columns["domain_ids"]) not in (0, i + 1):
        raise DataError(path, "domain_ids is present in some records and missing in others", i)
      label = columns["label_ids"][-1]
      if num_labels is not None and not 0 <= label < num_labels:
        raise DataError(path, f"label_ids {label} is not in [0, {num_labels})", i)
  except tf.errors.DataLossError:
    # TFRecord framing: a length and CRCs per record; a truncated or overwritten file fails here.
    where = f"record {len(columns['label_ids'])} (0-based)"
    raise DataError(path, "corrupt or truncated tf_record (the record's length or checksum "
                    "does not match; is it a TFRecord file, completely written?)", where) from None
  if not columns:
    raise DataError(path, "no records")
  count = len(columns["label_ids"])
  if framed_bytes != os.path.getsize(path):  # TFRecordDataset ends quietly at a cut record
    raise DataError(path, f"truncated tf_record: {count} whole records, then "
                    f"{os.path.getsize(path) - framed_bytes} bytes of a partial one (was the "
                    "file completely written?)")
  if meta is not None and meta.get("num_examples") not in (None, count):
    raise DataError(path, f"{count} records, but its .meta.json says {meta['num_examples']}: "
                    "the file or its metadata is from another write")
  out = {name: np.asarray(columns[rec], np.int32) for name, rec in _RECORD_NAMES.items()}
  out["label_ids"] = np.asarray(columns["label_ids"], np.int32)
  if columns.get("domain_ids"):
    out["domain_ids"] = np.asarray(columns["domain_ids"], np.int32)
  return out, meta


def trim_to_longest(batch, bucket=32):
  """Cuts padding columns no row of the batch uses, to a multiple of `bucket` (few shapes,
  so tf.function traces at most max_seq_length/bucket times)."""
  length = tf.reduce_max(tf.reduce_sum(batch["input_mask"], axis=1))
  full = tf.shape(batch["input_mask"])[1]
  length = tf.minimum(full, (length + bucket - 1) // bucket * bucket)
  return {k: (v[:, :length] if k in MODEL_INPUTS else v) for k, v in batch.items()}


def make_dataset(features, batch_size, shuffle=False, seed=0, bucket=32):
  """A tf.data pipeline over in-memory features; batches trimmed to their longest row."""
  ds = tf.data.Dataset.from_tensor_slices(features)
  if shuffle:
    ds = ds.shuffle(len(features["label_ids"]), seed=seed, reshuffle_each_iteration=True)
  ds = ds.batch(batch_size)
  if bucket:
    ds = ds.map(lambda b: trim_to_longest(b, bucket))
  return ds.prefetch(tf.data.AUTOTUNE)
