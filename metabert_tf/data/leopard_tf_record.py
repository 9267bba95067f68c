"""LEOPARD file naming and the original LEOPARD tf_records (BERT-encoded, read as they are)."""
from __future__ import annotations

import os
import re

from metabert_tf.data.examples import LabeledExample
from metabert_tf.errors import DataError

_SPLIT_STEM = re.compile(r"^(.+?)_(?:train_\d+_\d+|eval)$")
_SEQUENCE_FEATURES = ("input_ids", "input_mask", "segment_ids")
_SPECIAL_TOKENS = frozenset(("[CLS]", "[SEP]", "[PAD]"))


def task_from_filename(path):
  """`<task>_train_<F>_<K>.<ext>` or `<task>_eval.<ext>` -> task; any other name -> its stem."""
  stem = os.path.splitext(os.path.basename(os.fspath(path)))[0]
  match = _SPLIT_STEM.match(stem)
  return match.group(1) if match else stem


def read_leopard_tf_record(path, label_map=None, vocab_file=None):
  """Reads an original LEOPARD tf_record into encoded LabeledExamples.

  Args:
    path: tf_record with input_ids/input_mask/segment_ids (int64 [seq_len]), label_ids (int64)
      and an optional ex_id (ignored).
    label_map: label string -> label id (one entry of label_maps.json). Without it the label is
      str(label_id).
    vocab_file: WordPiece vocab (one token per line) of the ids. With it text_a/text_b are decoded
      too (approximately: basic tokenization is not undone); without it they are None.

  Returns:
    Examples with input_ids/segment_ids cut to the positions input_mask marks, domain = task name.
  """
  # Deferred: importing TensorFlow takes seconds and none of the text readers needs it.
  import tensorflow as tf
  from google.protobuf import message

  path = os.fspath(path)
  if not os.path.isfile(path):
    raise DataError(path, "no such file")
  id_to_label = _invert_label_map(label_map) if label_map is not None else None
  vocab = _load_vocab(vocab_file) if vocab_file else None
  domain = task_from_filename(path)
  examples = []
  records = tf.data.TFRecordDataset(path).as_numpy_iterator()
  while True:
    where = f"record {len(examples)} (0-based)"
    try:
      raw = next(records, None)
    except tf.errors.OpError as e:  # DataLossError for truncated/corrupt files.
      raise DataError(path, f"corrupt tf_record ({e.message.splitlines()[0]})", where) from None
    if raw is None:
      break
    try:
      example = tf.train.Example.FromString(raw)
    except message.DecodeError:
      raise DataError(path, "not a tf.train.Example", where) from None
    examples.append(_to_labeled(example, path, where, id_to_label, vocab, domain))
  if not examples:
    raise DataError(path, "no examples")
  return examples


def _to_labeled(example, path, where, id_to_label, vocab, domain):
  features = example.features.feature
  ids, mask, segments = (_int64s(features, name, path, where) for name in _SEQUENCE_FEATURES)
  if not len(ids) == len(mask) == len(segments):
    raise DataError(path, f"input_ids/input_mask/segment_ids lengths differ "
                    f"({len(ids)}/{len(mask)}/{len(segments)})", where)
  label_ids = _int64s(features, "label_ids", path, where)
  if len(label_ids) != 1:
    raise DataError(path, f"label_ids must hold one value, got {len(label_ids)}", where)
  label_id = label_ids[0]
  if id_to_label is None:
    label = str(label_id)
  elif label_id in id_to_label:
    label = id_to_label[label_id]
  else:
    raise DataError(path, f"label_id {label_id} not in the label map {sorted(id_to_label)}", where)
  input_ids = tuple(i for i, m in zip(ids, mask) if m)
  segment_ids = tuple(s for s, m in zip(segments, mask) if m)
  text_a = text_b = None
  if vocab is not None:
    text_a, text_b = _decode(input_ids, segment_ids, vocab, path, where)
  return LabeledExample(text_a=text_a, label=label, text_b=text_b, domain=domain,
                        input_ids=input_ids, segment_ids=segment_ids)


def _int64s(features, name, path, where):
  if name not in features:
    raise DataError(path, f"missing feature '{name}'", where)
  if features[name].WhichOneof("kind") != "int64_list":
    raise DataError(path, f"feature '{name}' is not int64", where)
  return list(features[name].int64_list.value)


def _invert_label_map(label_map):
  inverted = {int(i): str(label) for label, i in label_map.items()}
  if len(inverted) != len(label_map):
    raise ValueError(f"label map gives two labels the same id: {label_map}")
  return inverted


def _load_vocab(vocab_file):
  vocab_file = os.fspath(vocab_file)
  if not os.path.isfile(vocab_file):
    raise DataError(vocab_file, "no such file")
  with open(vocab_file, encoding="utf-8") as f:
    vocab = [line.strip() for line in f]
  if not vocab:
    raise DataError(vocab_file, "empty vocab")
  return vocab


def _decode(input_ids, segment_ids, vocab, path, where):
  """Ids -> (text_a, text_b): WordPiece pieces joined, specials dropped, split by segment id."""
  segments = ([], [])
  for token_id, segment in zip(input_ids, segment_ids):
    if not 0 <= token_id < len(vocab):
      raise DataError(path, f"input id {token_id} outside the vocab (size {len(vocab)})", where)
    token = vocab[token_id]
    if token not in _SPECIAL_TOKENS:
      segments[1 if segment else 0].append(token)
  text_a, text_b = (_join_wordpieces(tokens) for tokens in segments)
  if not text_a:
    raise DataError(path, "empty text after decoding", where)
  return text_a, text_b or None


def _join_wordpieces(tokens):
  text = ""
  for token in tokens:
    if token.startswith("##") and text:
      text += token[2:]
    else:
      text += (" " if text else "") + token
  return text
