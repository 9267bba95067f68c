"""WordPiece input encoding: layout, truncation, casing, and the MiniLM reference token ids."""
import itertools
import json
import os
from unittest import mock

import numpy as np
import pytest
import tensorflow as tf

from metabert_tf import bert_config
from metabert_tf import tokenization
from metabert_tf.data.examples import LabeledExample
from tests import tiny_models

VOCAB = tiny_models.VOCAB
ID = {token: i for i, token in enumerate(VOCAB)}
PAD, UNK, CLS, SEP = ID["[PAD]"], ID["[UNK]"], ID["[CLS]"], ID["[SEP]"]


def _ids(tokens):
  return [ID[t] for t in tokens]


def _encode(texts_a, texts_b=None, lower_case=True, max_seq_length=12):
  encoder = tokenization.BertInputEncoder(VOCAB, lower_case, max_seq_length)
  b = None if texts_b is None else tf.constant(texts_b)
  return {k: v.numpy() for k, v in encoder(tf.constant(texts_a), b).items()}


def _padded(values, length, pad=0):
  return list(values) + [pad] * (length - len(values))


def test_single_sentence_layout():
  out = _encode(["the movie is good", "a dog"])
  assert set(out) == {"input_word_ids", "input_mask", "input_type_ids"}
  assert all(v.dtype == np.int32 and v.shape == (2, 12) for v in out.values())
  first = _ids(["[CLS]", "the", "movie", "is", "good", "[SEP]"])
  second = _ids(["[CLS]", "a", "dog", "[SEP]"])
  assert out["input_word_ids"].tolist() == [_padded(first, 12, PAD), _padded(second, 12, PAD)]
  assert out["input_mask"].tolist() == [_padded([1] * 6, 12), _padded([1] * 4, 12)]
  assert out["input_type_ids"].tolist() == [[0] * 12, [0] * 12]


def test_pair_layout():
  out = _encode(["the movie", "i love it"], ["a dog runs", "fun"])
  row0 = _ids(["[CLS]", "the", "movie", "[SEP]", "a", "dog", "runs", "[SEP]"])
  row1 = _ids(["[CLS]", "i", "love", "it", "[SEP]", "fun", "[SEP]"])
  assert out["input_word_ids"].tolist() == [_padded(row0, 12, PAD), _padded(row1, 12, PAD)]
  assert out["input_type_ids"].tolist() == [_padded([0] * 4 + [1] * 4, 12),
                                            _padded([0] * 5 + [1] * 2, 12)]
  assert out["input_mask"].tolist() == [_padded([1] * 8, 12), _padded([1] * 7, 12)]


def test_wordpieces_unknown_words_and_punctuation():
  encoder = tokenization.BertInputEncoder(VOCAB, True, 16)
  pieces = encoder.tokenize(tf.constant(["movies playing players", "xyzzy dog!", "it ##s"]))
  assert pieces.to_list() == [
      _ids(["movie", "##s", "play", "##ing", "play", "##er", "##s"]),
      _ids(["[UNK]", "dog", "!"]),
      # "##s" typed in the text is punctuation + a word, never a continuation piece.
      _ids(["it", "[UNK]", "[UNK]", "[UNK]"])]
  # A word whose remainder has no piece is one [UNK], not a partial split.
  assert encoder.tokenize(tf.constant(["moviex"])).to_list() == [[UNK]]


def test_lower_case_on_and_off():
  lowered = _encode(["The MOVIES is Good!"], lower_case=True)["input_word_ids"][0]
  assert lowered.tolist() == _padded(_ids(["[CLS]", "the", "movie", "##s", "is", "good", "!",
                                           "[SEP]"]), 12, PAD)
  kept = _encode(["The MOVIES is Good! the movies"], lower_case=False)["input_word_ids"][0]
  # Without lower-casing the capitalised words are not in the (uncased) vocab.
  assert kept.tolist() == _padded([CLS, UNK, UNK, ID["is"], UNK, ID["!"], ID["the"], ID["movie"],
                                   ID["##s"], SEP], 12, PAD)


def test_accents_stripped_only_when_lower_casing():
  vocab = VOCAB[:-1] + ["cafe"]
  lowered = tokenization.BertInputEncoder(vocab, True, 8).tokenize(tf.constant(["Café"]))
  assert lowered.to_list() == [[len(vocab) - 1]]
  kept = tokenization.BertInputEncoder(vocab, False, 8).tokenize(tf.constant(["café"]))
  assert kept.to_list() == [[UNK]]


def test_single_truncated_to_max_seq_length_minus_two():
  words = ["the", "good", "bad", "movie", "book", "great", "terrible", "is", "was", "not"]
  out = _encode([" ".join(words), "the movie"], max_seq_length=8)
  assert out["input_word_ids"].tolist() == [
      [CLS] + _ids(words[:6]) + [SEP], _padded(_ids(["[CLS]", "the", "movie", "[SEP]"]), 8, PAD)]
  assert out["input_mask"][0].tolist() == [1] * 8
  # Exactly max_seq_length - 2 pieces fit without truncation.
  exact = _encode([" ".join(words[:6])], max_seq_length=8)["input_word_ids"][0]
  assert exact.tolist() == [CLS] + _ids(words[:6]) + [SEP]


def test_max_seq_length_too_small():
  with pytest.raises(ValueError, match="max_seq_length must be >= 8"):
    tokenization.BertInputEncoder(VOCAB, True, 7)
  assert tokenization.BertInputEncoder(VOCAB, True, 8).max_seq_length == 8


def _google_truncate_seq_pair(tokens_a, tokens_b, max_length):
  """Google BERT run_classifier._truncate_seq_pair, verbatim."""
  while True:
    total_length = len(tokens_a) + len(tokens_b)
    if total_length <= max_length:
      break
    if len(tokens_a) > len(tokens_b):
      tokens_a.pop()
    else:
      tokens_b.pop()


def test_pair_truncation_lengths_matches_google_pop_loop():
  grid = list(itertools.product(range(0, 14), range(0, 14), range(0, 17)))
  len_a = tf.constant([g[0] for g in grid], tf.int64)
  len_b = tf.constant([g[1] for g in grid], tf.int64)
  got_a, got_b = [], []
  for budget in range(0, 17):  # budget is a scalar in the library
    rows = [i for i, g in enumerate(grid) if g[2] == budget]
    keep_a, keep_b = tokenization.pair_truncation_lengths(
        tf.gather(len_a, rows), tf.gather(len_b, rows), budget)
    got_a += list(zip(rows, keep_a.numpy().tolist()))
    got_b += list(zip(rows, keep_b.numpy().tolist()))
  got = {i: (a, b) for (i, a), (_, b) in zip(got_a, got_b)}
  mismatches = []
  for i, (na, nb, budget) in enumerate(grid):
    a, b = list(range(na)), list(range(nb))
    _google_truncate_seq_pair(a, b, budget)
    if got[i] != (len(a), len(b)):
      mismatches.append(((na, nb, budget), got[i], (len(a), len(b))))
  assert not mismatches, mismatches[:10]


def test_pair_truncation_in_encoder_matches_google():
  words = ["the", "good", "bad", "movie", "book", "great", "terrible", "is", "was", "not", "very"]
  cases = [(9, 2), (2, 9), (7, 7), (6, 5), (5, 6), (3, 3), (11, 1), (1, 11)]
  max_seq_length = 10
  texts_a = [" ".join(words[:na]) for na, _ in cases]
  texts_b = [" ".join(reversed(words[:nb])) for _, nb in cases]
  out = _encode(texts_a, texts_b, max_seq_length=max_seq_length)
  for row, (na, nb) in enumerate(cases):
    a, b = _ids(words[:na]), _ids(list(reversed(words[:nb])))
    _google_truncate_seq_pair(a, b, max_seq_length - 3)
    expected = [CLS] + a + [SEP] + b + [SEP]
    assert out["input_word_ids"][row].tolist() == _padded(expected, max_seq_length, PAD), (na, nb)
    assert out["input_type_ids"][row].tolist() == _padded(
        [0] * (len(a) + 2) + [1] * (len(b) + 1), max_seq_length)
    assert out["input_mask"][row].tolist() == _padded([1] * len(expected), max_seq_length)


def test_encode_examples_batches_and_pairs():
  encoder = tokenization.BertInputEncoder(VOCAB, True, 10)
  singles = [LabeledExample(f"the {w} is good", "pos") for w in ("movie", "book", "film")] + [
      LabeledExample(None, "neg")]
  out = encoder.encode_examples(singles, batch_size=2)
  assert sorted(out) == ["input_mask", "input_type_ids", "input_word_ids"]
  assert out["input_word_ids"].shape == (4, 10)
  direct = _encode([e.text_a or "" for e in singles], max_seq_length=10)
  for key in out:
    np.testing.assert_array_equal(out[key], direct[key])
  assert out["input_word_ids"][3].tolist() == _padded([CLS, SEP], 10, PAD)  # None text -> empty

  pairs = [LabeledExample("a man", "entails", "someone"),
           LabeledExample("a dog", "neutral", "a cat")]
  out = encoder.encode_examples(pairs)
  assert out["input_word_ids"][1].tolist() == _padded(
      _ids(["[CLS]", "a", "dog", "[SEP]", "a", "cat", "[SEP]"]), 10, PAD)
  assert out["input_type_ids"][0].tolist() == _padded([0, 0, 0, 0, 1, 1], 10)

  with pytest.raises(ValueError, match="mixes single sentences and sentence pairs"):
    encoder.encode_examples([pairs[0], singles[0]])


def test_vocab_is_cased():
  assert not tokenization.vocab_is_cased(VOCAB)
  cased = VOCAB[:5] + [w.capitalize() for w in VOCAB[5:]]
  assert tokenization.vocab_is_cased(cased)
  # Special tokens such as [CLS] are upper-case but do not make a vocab cased.
  assert not tokenization.vocab_is_cased(VOCAB + [f"[unused{i}]".upper() for i in range(50)])
  # A handful of upper-case pieces in a big vocab is noise, not a cased vocab.
  big = [f"w{i}" for i in range(5000)]
  assert not tokenization.vocab_is_cased(big + ["Paris", "London"] * 5)
  assert tokenization.vocab_is_cased(big + [f"W{i}" for i in range(100)])


def test_check_case_matches_vocab_warnings():
  cased = VOCAB[:5] + [w.capitalize() for w in VOCAB[5:]]
  with mock.patch("absl.logging.warning") as warning:
    assert tokenization.check_case_matches_vocab(cased, True, "cased-model") is True
  assert warning.call_count == 1
  message = warning.call_args[0][0] % warning.call_args[0][1:]
  assert "do_lower_case=True" in message and "cased-model" in message
  assert "--do_lower_case=False" in message

  with mock.patch("absl.logging.warning") as warning:
    assert tokenization.check_case_matches_vocab(VOCAB, False, "uncased-model") is False
  assert warning.call_count == 1
  assert "uncased-model" in warning.call_args[0][1:]
  assert "--do_lower_case=True" in warning.call_args[0][0]

  with mock.patch("absl.logging.warning") as warning:
    tokenization.check_case_matches_vocab(cased, False, "m")
    tokenization.check_case_matches_vocab(VOCAB, True, "m")
  warning.assert_not_called()


def test_minilm_reference_token_ids(shared_dir, minilm_dir):
  with open(shared_dir / "fixtures" / "minilm_l6_reference.json", encoding="utf-8") as f:
    reference = json.load(f)
  arrays = np.load(shared_dir / "fixtures" / "minilm_l6_reference.npz")
  vocab = bert_config.read_vocab(os.path.join(minilm_dir, "vocab.txt"))
  assert not tokenization.vocab_is_cased(vocab)
  encoder = tokenization.BertInputEncoder(vocab, True, reference["max_seq_length"])
  texts = reference["texts"]
  assert len(texts) == 5 and sum(t["text_b"] is not None for t in texts) == 1
  rows = {}
  for i, t in enumerate(texts):  # One call per text: singles and the pair cannot share a batch.
    b = None if t["text_b"] is None else tf.constant([t["text_b"]])
    rows[i] = {k: v.numpy()[0] for k, v in encoder(tf.constant([t["text_a"]]), b).items()}
  for i, t in enumerate(texts):
    np.testing.assert_array_equal(rows[i]["input_word_ids"], arrays["input_ids"][i], err_msg=str(i))
    np.testing.assert_array_equal(rows[i]["input_mask"], arrays["input_mask"][i], err_msg=str(i))
    np.testing.assert_array_equal(rows[i]["input_type_ids"], arrays["segment_ids"][i],
                                  err_msg=str(i))
    n = int(rows[i]["input_mask"].sum())
    assert [vocab[j] for j in rows[i]["input_word_ids"][:n]] == t["tokens"]
  # encode_examples agrees on the four single sentences.
  singles = [LabeledExample(t["text_a"], "x") for t in texts if t["text_b"] is None]
  batch = encoder.encode_examples(singles)
  np.testing.assert_array_equal(batch["input_word_ids"], arrays["input_ids"][:4])
