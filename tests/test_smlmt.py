"""SMLMT task generator: word counting, task layout, [MASK] encoding, determinism, refusals, CLI."""
import collections
import json
import math
import os
import subprocess
import sys
import types

import numpy as np
import pytest

from data_prep import smlmt
from metabert_tf import records
from metabert_tf import tokenization
from metabert_tf.errors import DataError
from tests import tiny_models
from tests.conftest import REPO_DIR

VOCAB = tiny_models.VOCAB
MASK_ID = VOCAB.index("[MASK]")
WORDS = ["dog", "cat", "music", "film", "book", "story"]
FILLERS = ["good", "bad", "fun", "boring", "great"]  # also candidates: they occur in many sentences


def _source(vocab=VOCAB, lower_case=True):
  """What generate() needs of a backbone, without weights."""
  return types.SimpleNamespace(
      vocab=vocab, lower_case=lower_case,
      input_encoder=lambda n: tokenization.BertInputEncoder(vocab, lower_case, n))


def _write_corpus(tmp_path, seed=0):
  """A plain-text file and a JSONL file of text pairs; every token is a whole tiny-vocab word."""
  rng = np.random.default_rng(seed)
  lines = []
  for i in range(120):
    word, other = WORDS[i % 6], WORDS[(i + 1 + i // 6) % 6]
    filler = FILLERS[rng.integers(len(FILLERS))]
    if i % 5 == 0:    # two task words: unusable when both are in one task
      lines.append(f"the {word} and the {other} was {filler} .")
    elif i % 7 == 0:  # two occurrences, one capitalised: both must be masked
      lines.append(f"The {word.capitalize()} is {filler} , i love this {word} !")
    else:
      lines.append(f"the {word} is very {filler} .")
  text = tmp_path / "corpus.txt"
  text.write_text("\n".join(lines[:80]) + "\n\n")  # a blank line is skipped
  pairs = tmp_path / "pairs.jsonl"
  pairs.write_text("".join(json.dumps({"text": a, "text_b": b}) + "\n"
                           for a, b in zip(lines[80::2], lines[81::2])))
  return [str(text), str(pairs)], [smlmt.normalize(line, True) for line in lines]


def _decode(ids):
  return [VOCAB[i] for i in ids if VOCAB[i] not in ("[PAD]", "[CLS]", "[SEP]")]


def test_qualifying_words_and_counts(tmp_path):
  allowed = smlmt.qualifying_words(VOCAB)
  assert {"dog", "music", "boring"} <= allowed
  assert not allowed & {"the", "is", "a", "[MASK]", "##s", "##ing", ",", "!"}
  corpus = tmp_path / "c.txt"
  corpus.write_text("The dog , the DOG .\nthe dogs sleeps\nCat and dog\n\nthe playing cat\n")
  counts, sentences = smlmt.count_words([str(corpus)], allowed, lower_case=True)
  # sentences containing the word: "dogs" and "playing" are split by WordPiece, not "dog"/"play"
  assert sentences == 4
  assert counts == {"dog": 2, "cat": 2, "sleeps": 1}
  sample = smlmt.sample_sentences([str(corpus)], ["dog", "cat"], 1, seed=0, lower_case=True)
  assert all(len(ids) == 1 for ids in sample.values())
  full = smlmt.sample_sentences([str(corpus)], ["dog"], 5, seed=0, lower_case=True)
  assert [sid & 0xFFFF for sid in full["dog"]] == [1, 3]  # line numbers of the dog sentences


def test_class_sizes_balanced_and_bounded():
  rng = np.random.default_rng(0)
  for n in (2, 3, 4, 5, 7):
    support, query = smlmt.class_sizes(rng, n, 80, 10)
    assert sum(support) == 80 and sum(query) == 10
    assert max(support) - min(support) <= 1 and max(query) - min(query) <= 1
    assert max(s + q for s, q in zip(support, query)) == math.ceil(90 / n)


def test_mask_encoding_one_id_per_occurrence():
  encoder = tokenization.BertInputEncoder(VOCAB, True, 12)
  # Why the text is cut: the tokenizer does not keep "[MASK]" as the special token.
  assert MASK_ID not in encoder.tokenize(["the [MASK] ."]).to_list()[0]
  text = smlmt.normalize("The Dog and the dog , dogs .", True)
  features = smlmt.encode_masked(encoder, [(text, "dog"), ("fun " * 20 + "cat", "cat")])
  tokens = [VOCAB[i] for i in features["input_word_ids"][0] if i]
  assert tokens == ["[CLS]", "the", "[MASK]", "and", "the", "[MASK]", ",", "dog", "##s", ".",
                    "[SEP]"]
  # A long sentence keeps a window around its [MASK] instead of cutting it off.
  assert list(features["input_word_ids"][1]).count(MASK_ID) == 1
  assert features["input_mask"][1].sum() == 12


def _generate(inputs, out, **kwargs):
  settings = dict(num_classes=[3, 4], tasks_per_n=4, seed=0, max_seq_length=24, task_size=12,
                  num_query=3, sentences_per_word=16)
  settings.update(kwargs)
  return smlmt.generate(inputs, str(out), _source(), **settings)


def test_generated_tasks_layout(tmp_path):
  inputs, sentences = _write_corpus(tmp_path)
  metas = _generate(inputs, tmp_path / "out")
  known = {tuple(s.replace(",", " , ").replace("!", " ! ").replace(".", " . ").split())
           for s in sentences}
  for meta in metas:
    n = meta["num_classes"]
    assert meta["path"].endswith(f"meta_pretrain_{n}.tf_record")
    features, record_meta = records.load(meta["path"], 24)
    assert record_meta["label_list"] == [str(i) for i in range(n)]
    saved = json.loads(open(meta["path"][:-len(".tf_record")] + ".json").read())
    assert saved["tasks"] == meta["tasks"] and len(saved["tasks"]) == 4
    assert saved["num_support"] == 9 and saved["corpus"]["sentences"] == 120
    assert saved["vocab_fingerprint"] == records.vocab_fingerprint(VOCAB)
    labels = features["label_ids"].reshape(4, 12)
    for t, words in enumerate(saved["tasks"]):
      assert len(set(words)) == n and all(saved["word_counts"][w] >= 4 for w in words)
      support, query = labels[t, :9], labels[t, 9:]
      for part in (support, query):
        sizes = np.bincount(part, minlength=n)
        assert sizes.max() - sizes.min() <= 1
      assert set(support[:2 * n - 1]) == set(range(n))  # the first support batch has every class
      for row in range(12):
        ids = features["input_word_ids"][t * 12 + row]
        tokens, word = _decode(ids), words[labels[t, row]]
        assert word not in tokens and not set(words) & set(tokens)
        assert list(ids).count(MASK_ID) >= 1
        # [MASK] -> the word gives back a corpus sentence: every occurrence, nothing else.
        assert tuple(word if tok == "[MASK]" else tok for tok in tokens) in known


def test_same_seed_byte_identical(tmp_path):
  inputs, _ = _write_corpus(tmp_path)
  for out, seed in (("a", 0), ("b", 0), ("c", 1)):
    _generate(inputs, tmp_path / out, num_classes=[3], seed=seed)
  names = ["meta_pretrain_3.tf_record", "meta_pretrain_3.tf_record.meta.json",
           "meta_pretrain_3.json"]
  read = lambda out, name: (tmp_path / out / name).read_bytes()
  assert all(read("a", name) == read("b", name) for name in names)
  assert read("a", names[0]) != read("c", names[0])


def test_too_small_corpus_refused(tmp_path):
  inputs, _ = _write_corpus(tmp_path)
  with pytest.raises(DataError, match=r"--num_classes: N=4 needs 4 words but the band "
                     r"--min_count 4 \.\. --max_count 5 holds [0-3] "):
    _generate(inputs, tmp_path / "out", max_count=5)
  with pytest.raises(DataError, match="--min_count: 2 is below the 4 sentences"):
    _generate(inputs, tmp_path / "out", min_count=2)
  with pytest.raises(DataError, match="--num_query: 10 leaves fewer support records"):
    _generate(inputs, tmp_path / "out", num_query=10)
  assert not (tmp_path / "out").exists()
  # Too few sentences without the task's other words: "dog" has one, its class needs two.
  samples = {"dog": [1, 2], "cat": [3, 4]}
  words = {1: {"dog", "cat"}, 2: {"dog"}, 3: {"cat"}, 4: {"cat"}}
  with pytest.raises(DataError, match="word 'dog' has 1 sampled sentences without .* needs 2"):
    smlmt.build_task(0, 0, ["dog", "cat"], 2, 2, samples, words)
  bad = tmp_path / "bad.txt"
  bad.write_bytes(b"the dog\n\xff cat\n")
  with pytest.raises(DataError, match=r"bad\.txt:line 2: not UTF-8"):
    smlmt.count_words([str(bad)], smlmt.qualifying_words(VOCAB), True)


def test_cli_on_sst2_with_minilm(tmp_path, shared_dir, minilm_dir):
  """End to end as a user runs it: the real vocabulary, a TSV data spec, stdout = the paths."""
  dev = shared_dir / "data" / "meta_train" / "glue" / "SST-2" / "dev.tsv"
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
  args = [sys.executable, "-m", "data_prep.smlmt", f"--input={dev}:text=sentence",
          f"--output_dir={tmp_path}", "--num_classes=2", "--tasks_per_n=3", "--task_size=20",
          "--num_query=4", "--max_seq_length=32", "--bert_model=minilm-l6", "--seed=3"]
  proc = subprocess.run(args, cwd=REPO_DIR, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  path = str(tmp_path / "meta_pretrain_2.tf_record")
  assert proc.stdout.split() == [path]
  meta = json.loads((tmp_path / "meta_pretrain_2.json").read_text())
  assert meta["corpus"]["sentences"] == 872 and meta["min_count"] == 10
  features, _ = records.load(path, 32)
  assert features["label_ids"].shape == (60,)
  with open(os.path.join(minilm_dir, "vocab.txt"), encoding="utf-8") as f:
    vocab = f.read().split("\n")
  mask_id = vocab.index("[MASK]")
  for i, ids in enumerate(features["input_word_ids"]):
    words = meta["tasks"][i // 20]
    assert mask_id in ids and not {vocab.index(w) for w in words} & set(ids)
  counts = collections.Counter(features["label_ids"][:16]), collections.Counter(
      features["label_ids"][16:20])
  assert counts == ({0: 8, 1: 8}, {0: 2, 1: 2})

