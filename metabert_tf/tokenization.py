"""WordPiece tokenization into BERT inputs, in the TF graph (tensorflow-text).

One `BertInputEncoder` turns raw strings (or string pairs) into the padded
`input_word_ids` / `input_mask` / `input_type_ids` that Model Garden encoders take:
`[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]`, segment ids 0/1, Google BERT's pair truncation
(pop from the longer segment, from b on ties), padded to `max_seq_length`. The same object is
used to write tf_records and inside exported SavedModels, so training and serving agree.
"""
from absl import logging
import tensorflow as tf
import tensorflow_text as text


# The shortest --max_seq_length any entry point accepts: [CLS] a [SEP] b [SEP] with a few tokens
# of each text. Shorter lengths train on next to nothing, silently.
MIN_SEQ_LENGTH = 8


class BertInputEncoder(tf.Module):

  def __init__(self, vocab, lower_case, max_seq_length=128, name="bert_input_encoder"):
    super().__init__(name=name)
    if max_seq_length < MIN_SEQ_LENGTH:
      raise ValueError(f"max_seq_length must be >= {MIN_SEQ_LENGTH}, got {max_seq_length}")
    self.vocab = list(vocab)
    self.lower_case = bool(lower_case)
    self.max_seq_length = int(max_seq_length)
    self._tokenizer = text.FastBertTokenizer(
        vocab=self.vocab, lower_case_nfd_strip_accents=self.lower_case,
        token_out_type=tf.int64, unknown_token="[UNK]")
    self.cls_id = self.vocab.index("[CLS]")
    self.sep_id = self.vocab.index("[SEP]")
    self.pad_id = self.vocab.index("[PAD]")

  def tokenize(self, texts):
    """[batch] strings -> ragged [batch, pieces] int64 token ids (no specials)."""
    return self._tokenizer.tokenize(texts)

  def __call__(self, text_a, text_b=None):
    """Strings [batch] (and optional [batch] second segments) -> dict of int32 [batch, L]."""
    a = self.tokenize(text_a)
    if text_b is None:
      segments = [_keep_first(a, tf.fill([a.nrows()], tf.cast(self.max_seq_length - 2, tf.int64)))]
    else:
      b = self.tokenize(text_b)
      keep_a, keep_b = pair_truncation_lengths(a.row_lengths(), b.row_lengths(),
                                               self.max_seq_length - 3)
      segments = [_keep_first(a, keep_a), _keep_first(b, keep_b)]
    return self.combine(segments)

  def combine(self, segments):
    """Ragged id segments (already truncated) -> padded model inputs."""
    ids, type_ids = text.combine_segments(
        segments, start_of_sequence_id=self.cls_id, end_of_segment_id=self.sep_id)
    word_ids, mask = text.pad_model_inputs(ids, self.max_seq_length, pad_value=self.pad_id)
    type_ids, _ = text.pad_model_inputs(type_ids, self.max_seq_length)
    return {"input_word_ids": tf.cast(word_ids, tf.int32),
            "input_mask": tf.cast(mask, tf.int32),
            "input_type_ids": tf.cast(type_ids, tf.int32)}

  def encode_examples(self, examples, batch_size=256):
    """Python helper for data writers: LabeledExample-likes -> numpy dict of [n, L] int32."""
    import numpy as np
    parts = []
    for start in range(0, len(examples), batch_size):
      chunk = examples[start:start + batch_size]
      a = tf.constant([e.text_a or "" for e in chunk])
      pairs = [e.text_b is not None for e in chunk]
      if any(pairs) and not all(pairs):
        raise ValueError("a batch mixes single sentences and sentence pairs")
      b = tf.constant([e.text_b for e in chunk]) if all(pairs) else None
      parts.append({k: v.numpy() for k, v in self(a, b).items()})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def pair_truncation_lengths(len_a, len_b, budget):
  """Google BERT's `_truncate_seq_pair` in closed form.

  It pops one token at a time from the longer segment (from b on a tie) until the pair fits.
  So a segment shorter than its half keeps everything, and two long segments end at
  ceil(budget/2) for a and floor(budget/2) for b.
  """
  budget = tf.cast(budget, len_a.dtype)
  too_long = len_a + len_b > budget
  half_up = (budget + 1) // 2
  keep_a = tf.minimum(len_a, tf.maximum(budget - len_b, half_up))
  keep_b = budget - keep_a
  return (tf.where(too_long, keep_a, len_a), tf.where(too_long, keep_b, len_b))


def _keep_first(ragged, lengths):
  positions = tf.ragged.range(ragged.row_lengths())
  return tf.ragged.boolean_mask(ragged, positions < tf.expand_dims(lengths, 1))


def vocab_is_cased(vocab):
  """A vocab is cased when a noticeable share of its word pieces contain upper-case letters."""
  words = [t for t in vocab if not (t.startswith("[") and t.endswith("]"))]
  upper = sum(1 for t in words if any(c.isupper() for c in t))
  return upper > max(10, 0.01 * len(words))


def check_case_matches_vocab(vocab, lower_case, model_name):
  """Warns like Google BERT's validate_case_matches_checkpoint, but from the vocab itself."""
  cased = vocab_is_cased(vocab)
  if lower_case and cased:
    logging.warning(
        "You are lower-casing the input (do_lower_case=True) but %s has a cased vocabulary: "
        "upper-case word pieces will never be produced. Pass --do_lower_case=False.", model_name)
  elif not lower_case and not cased:
    logging.warning(
        "You are keeping case (do_lower_case=False) but %s has an uncased vocabulary: "
        "most capitalised words will become [UNK] or split badly. Pass --do_lower_case=True.",
        model_name)
  return cased
