r"""SMLMT tasks (Bansal et al. 2020): N-way "which word was masked?" tasks from unlabeled text.

  python -m data_prep.smlmt --input corpus.txt --input 'glue/SST-2/train.tsv:text=sentence' \
      --output_dir D --num_classes 2,3,4,5 --tasks_per_n 100 --seed 0 --bert_model minilm-l6

Writes, for each N of --num_classes, `D/meta_pretrain_<N>.tf_record` (BERT format, plus
records.write's `.meta.json`) and `D/meta_pretrain_<N>.json` (the words of each task in label
order, seed, band, corpus counts, vocab fingerprint). The original generator was never released;
what it did (NOTES.md section 4) and how its reader consumes the files (run_classifier_pretrain.py:
N from the file name, no shuffling across records, batches of 90 = one task, shuffled inside the
task in the graph, the first 80 support and the last 10 query) fix the layout:

  record i belongs to task i // task_size; inside a task the first num_support = task_size -
  num_query records are support, the rest query. Support and query are each class-balanced: every
  class gets floor(size/N) and the remainders go to distinct classes drawn at random (support
  first, query continuing round the same order), so no class has more than ceil(task_size/N)
  sentences; N=4 keeps the 90-record blocks with 20 support and 2-3 query per class. Each part is
  written in rounds holding one record of each class in random order, so any 2N-1 consecutive
  support records cover every class (LEOPARD builds the softmax from the first support batch).

Words. Text is split as BERT's BasicTokenizer does on ordinary text (lower-cased and accents
stripped for an uncased vocabulary; runs of letters/digits are words, other characters split). A
word qualifies when it is alphabetic, has >= 2 letters, is not an English stopword (built-in list)
and is ONE token of the vocabulary (whole-word entry, so WordPiece keeps it whole and masking it
is one [MASK]; '##' pieces and words the vocabulary splits never qualify). Its count is the number
of sentences containing it; candidates are the words with --min_count <= count <= --max_count.
A sentence is a non-blank line of a plain-text file (`.txt` or no extension; a line may be a whole
document) or the text_a / text_b of a record of any reader format (data specs allowed).

Tasks are a pure function of the seed and the corpus: task t of N draws its N distinct words with
default_rng([seed, N, t, 0]) (the draw order is the label order), then with default_rng([seed, N,
t, 1]) the class sizes and, per word, sentences from its sample in random order, skipping any
sentence that contains another word of the task. Every occurrence of the word (the same token
after normalisation: case-insensitive for uncased vocabularies) becomes [MASK]; label = index.

[MASK]. tensorflow-text's FastBertTokenizer splits the text "[MASK]" into '[', 'mask', ']', so the
text is cut at the word's occurrences, the pieces are WordPiece-tokenized separately (the word is
bounded by spaces or punctuation, which BERT splits at anyway) and joined with the [MASK] id. A
sentence longer than max_seq_length - 2 tokens is cut to a window centred on its first [MASK].

Memory. Three streaming passes over the inputs: (1) sentence counts per qualifying word, at most
one entry per vocabulary token whatever the corpus size; (2) per candidate word a bottom-k sample
of --sentences_per_word sentence ids (k smallest keyed hashes of (seed, word, id): seeded and
independent of reading order), so <= candidates x sentences_per_word ids; (3) the text of the
sampled sentences of the words some task uses, <= used words x sentences_per_word sentences.
Plain-text files stream line by line; other reader formats are read whole, one file at a time.
"""
import collections
import hashlib
import heapq
import math
import os
import re
import sys
import unicodedata

from absl import app
from absl import flags
from absl import logging
import numpy as np
import tensorflow as tf

from metabert_tf import backbones
from metabert_tf import cli
from metabert_tf import flag_rules
from metabert_tf import io_utils
from metabert_tf import records
from metabert_tf.data import readers
from metabert_tf.errors import DataError

STOPWORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below
between both but by can could did do does doing down during each few for from further had has
have having he her here hers herself him himself his how i if in into is it its itself just me
more most my myself no nor not now of off on once only or other our ours ourselves out over own
same she should so some such than that the their theirs them themselves then there these they
this those through to too under until up very was we were what when where which while who whom
why will with would you your yours yourself yourselves s t d ll m o re ve y ain also may might
must shall us""".split())
_WORD = re.compile(r"[^\W_]+")  # runs of letters/digits: BERT's words between spaces/punctuation
_FILE_SHIFT = 40  # sentence id = input index << 40 | line (or record) number
PLAIN_TEXT_EXTENSIONS = ("", ".txt")


def file_name(num_classes):
  return f"meta_pretrain_{num_classes}.tf_record"


def normalize(text, lower_case):
  """What BERT's basic tokenizer does to case and accents (uncased vocabularies only)."""
  if not lower_case:
    return text
  if text.isascii():
    return text.lower()
  text = unicodedata.normalize("NFD", text.lower())
  return "".join(c for c in text if unicodedata.category(c) != "Mn")


def qualifying_words(vocab):
  """Vocabulary entries that can be an SMLMT word (see module docstring)."""
  return frozenset(t for t in vocab
                   if t.isalpha() and len(t) >= 2 and t.lower() not in STOPWORDS)


def words_in(text, allowed):
  """The set of `allowed` words in a normalized text."""
  return {w for w in _WORD.findall(text) if w in allowed}


def _input_texts(spec):
  """(unit number, text) of one input: plain-text lines (1-based) or reader records' texts."""
  path, options = readers.parse_data_spec(spec)
  if not options and os.path.isfile(path) and (
      os.path.splitext(path)[1].lower() in PLAIN_TEXT_EXTENSIONS):
    with open(path, "rb") as f:
      for number, raw in enumerate(f, 1):
        try:
          line = raw.decode("utf-8-sig" if number == 1 else "utf-8").strip()
        except UnicodeDecodeError as e:
          raise DataError(path, f"not UTF-8 text (byte {e.start}: {e.reason})",
                          f"line {number}") from None
        if line:
          yield number, line
    return
  for i, example in enumerate(readers.read_examples(spec, require_label=False)):
    if example.is_encoded:
      raise DataError(path, "holds encoded records, not text; SMLMT needs text")
    yield 2 * i, example.text_a
    if example.text_b:
      yield 2 * i + 1, example.text_b


def iter_sentences(inputs, lower_case):
  """(sentence id, normalized text) over all inputs, in order."""
  for index, spec in enumerate(inputs):
    for number, text in _input_texts(spec):
      yield index << _FILE_SHIFT | number, normalize(text, lower_case)


def count_words(inputs, allowed, lower_case):
  """Pass 1: (Counter word -> sentences containing it, number of sentences)."""
  counts, sentences = collections.Counter(), 0
  for _, text in iter_sentences(inputs, lower_case):
    counts.update(words_in(text, allowed))
    sentences += 1
  return counts, sentences


def _priority(seed, word, sentence_id):
  digest = hashlib.blake2b(f"{seed}\t{word}\t{sentence_id}".encode("utf-8"), digest_size=8)
  return int.from_bytes(digest.digest(), "big")


def sample_sentences(inputs, candidates, per_word, seed, lower_case):
  """Pass 2: word -> sorted ids of a seeded sample of <= per_word sentences containing it."""
  heaps = {word: [] for word in candidates}  # max-heaps (negated priorities) of the k smallest
  for sentence_id, text in iter_sentences(inputs, lower_case):
    for word in words_in(text, heaps):
      heap, key = heaps[word], -_priority(seed, word, sentence_id)
      if len(heap) < per_word:
        heapq.heappush(heap, (key, sentence_id))
      elif key > heap[0][0]:
        heapq.heapreplace(heap, (key, sentence_id))
  return {word: sorted(sid for _, sid in heap) for word, heap in heaps.items()}


def read_sentences(inputs, wanted, lower_case):
  """Pass 3: sentence id -> normalized text, for the ids in `wanted`."""
  return {sid: text for sid, text in iter_sentences(inputs, lower_case) if sid in wanted}


def task_words(seed, num_classes, task_index, candidates):
  rng = np.random.default_rng([seed, num_classes, task_index, 0])
  return [candidates[i] for i in rng.choice(len(candidates), num_classes, replace=False)]


def class_sizes(rng, num_classes, num_support, num_query):
  """Balanced support and query sizes per class; remainders to distinct random classes."""
  order = rng.permutation(num_classes)
  support = [num_support // num_classes] * num_classes
  query = [num_query // num_classes] * num_classes
  for i in range(num_support % num_classes):
    support[order[i]] += 1
  for i in range(num_query % num_classes):
    query[order[(num_support % num_classes + i) % num_classes]] += 1
  return support, query


def _in_rounds(rng, per_class):
  """(sentence id, label) in rounds, each round one of every class left, in random order."""
  out, round_index = [], 0
  while any(len(ids) > round_index for ids in per_class):
    labels = [c for c, ids in enumerate(per_class) if len(ids) > round_index]
    out.extend((per_class[c][round_index], int(c)) for c in rng.permutation(labels))
    round_index += 1
  return out


def build_task(seed, task_index, words, num_support, num_query, samples, sentence_words):
  """[(sentence id, label)] of one task: support then query (see module docstring)."""
  n = len(words)
  rng = np.random.default_rng([seed, n, task_index, 1])
  support_sizes, query_sizes = class_sizes(rng, n, num_support, num_query)
  chosen = []
  for label, word in enumerate(words):
    others, pool = set(words) - {word}, samples[word]
    usable = [pool[i] for i in rng.permutation(len(pool))
              if not sentence_words[pool[i]] & others]
    need = support_sizes[label] + query_sizes[label]
    if len(usable) < need:
      raise DataError("--input", f"task {task_index} of N={n}: word {word!r} has {len(usable)} "
                      f"sampled sentences without the task's other words {sorted(others)}, "
                      f"needs {need}; raise --sentences_per_word or narrow the band")
    chosen.append(usable[:need])
  support = _in_rounds(rng, [ids[:s] for ids, s in zip(chosen, support_sizes)])
  query = _in_rounds(rng, [ids[s:] for ids, s in zip(chosen, support_sizes)])
  return support + query


def masked_pieces(text, word):
  """The text cut at each occurrence of `word` (whole tokens): k occurrences -> k+1 pieces."""
  pieces, last = [], 0
  for match in _WORD.finditer(text):
    if match.group() == word:
      pieces.append(text[last:match.start()])
      last = match.end()
  pieces.append(text[last:])
  return pieces


def encode_masked(encoder, items, chunk=2048):
  """[(text, word)] -> features: the word's occurrences as the [MASK] id (module docstring)."""
  mask_id, length = encoder.vocab.index("[MASK]"), encoder.max_seq_length - 2
  rows = []
  for start in range(0, len(items), chunk):
    cut = [masked_pieces(text, word) for text, word in items[start:start + chunk]]
    tokens = iter(encoder.tokenize(tf.constant([p for pieces in cut for p in pieces])).to_list())
    for pieces in cut:
      ids = list(next(tokens))
      for _ in pieces[1:]:
        ids += [mask_id] + next(tokens)
      if len(ids) > length:
        first = ids.index(mask_id)
        begin = min(max(first - length // 2, 0), len(ids) - length)
        ids = ids[begin:begin + length]
      rows.append(ids)
  features = encoder.combine([tf.ragged.constant(rows, dtype=tf.int64, ragged_rank=1)])
  return {name: value.numpy() for name, value in features.items()}


def check_settings(num_classes, task_size, num_query, min_count, max_count, per_word):
  """Flag combinations that cannot work, as DataErrors naming the flag; returns min_count."""
  if not num_classes or min(num_classes) < 2:
    raise DataError("--num_classes", f"expected N values >= 2, got {num_classes}")
  if not 0 <= num_query <= task_size - max(num_classes):
    raise DataError("--num_query", f"{num_query} leaves fewer support records than classes "
                    f"(--task_size {task_size}, N up to {max(num_classes)})")
  need = math.ceil(task_size / min(num_classes))  # the most sentences one class can take
  min_count = need if min_count is None else min_count
  if min_count < need:
    raise DataError("--min_count", f"{min_count} is below the {need} sentences a word needs in "
                    f"a task of {task_size} records with N={min(num_classes)}")
  if max_count is not None and max_count < min_count:
    raise DataError("--max_count", f"{max_count} is below --min_count {min_count}")
  if per_word < need:
    raise DataError("--sentences_per_word", f"{per_word} is below the {need} sentences a word "
                    f"needs in a task of {task_size} records with N={min(num_classes)}")
  return min_count


def generate(inputs, output_dir, source, num_classes, tasks_per_n, seed=0, max_seq_length=128,
             min_count=None, max_count=None, task_size=90, num_query=10, sentences_per_word=256):
  """Writes the SMLMT files for every N (module docstring); returns their metadata dicts."""
  min_count = check_settings(num_classes, task_size, num_query, min_count, max_count,
                             sentences_per_word)
  encoder = source.input_encoder(max_seq_length)
  allowed = qualifying_words(source.vocab)
  logging.info("SMLMT pass 1/3: counting words in %d input(s)", len(inputs))
  counts, num_sentences = count_words(inputs, allowed, source.lower_case)
  if not num_sentences:
    raise DataError("--input", f"no text in {', '.join(inputs)}")
  candidates = sorted(w for w, c in counts.items()
                      if min_count <= c and (max_count is None or c <= max_count))
  band = f"--min_count {min_count} .. --max_count {max_count or 'any'}"
  if len(candidates) < max(num_classes):
    raise DataError("--num_classes", f"N={max(num_classes)} needs {max(num_classes)} words but "
                    f"the band {band} holds {len(candidates)} (of {len(counts)} qualifying "
                    f"words in {num_sentences} sentences)")
  logging.info("SMLMT pass 2/3: sampling sentences of %d candidate words", len(candidates))
  samples = sample_sentences(inputs, candidates, sentences_per_word, seed, source.lower_case)
  plans = {n: [task_words(seed, n, t, candidates) for t in range(tasks_per_n)]
           for n in num_classes}
  used = sorted({w for tasks in plans.values() for words in tasks for w in words})
  logging.info("SMLMT pass 3/3: reading the sampled sentences of %d words", len(used))
  texts = read_sentences(inputs, {sid for w in used for sid in samples[w]}, source.lower_case)
  sentence_words = {sid: words_in(text, samples) for sid, text in texts.items()}
  corpus = {"inputs": len(inputs), "sentences": num_sentences, "qualifying_words": len(counts),
            "candidates": len(candidates)}
  # Every task is built before anything is written: a shortage leaves no partial output.
  chosen = {n: [build_task(seed, t, words, task_size - num_query, num_query, samples,
                           sentence_words) for t, words in enumerate(plans[n])]
            for n in num_classes}
  os.makedirs(output_dir, exist_ok=True)
  metas = []
  for n in num_classes:
    pairs = [(words, sid, label) for words, task in zip(plans[n], chosen[n])
             for sid, label in task]
    features = encode_masked(encoder, [(texts[sid], words[label]) for words, sid, label in pairs])
    features["label_ids"] = np.asarray([label for _, _, label in pairs], np.int32)
    path = os.path.join(output_dir, file_name(n))
    meta = {"num_classes": n, "task_size": task_size, "num_support": task_size - num_query,
            "num_query": num_query, "num_tasks": tasks_per_n, "seed": seed,
            "min_count": min_count, "max_count": max_count,
            "sentences_per_word": sentences_per_word, "max_seq_length": max_seq_length,
            "inputs": list(inputs), "corpus": corpus, "tasks": plans[n],
            "word_counts": {w: counts[w] for w in sorted({w for ws in plans[n] for w in ws})},
            "vocab_fingerprint": records.vocab_fingerprint(source.vocab),
            "lower_case": bool(source.lower_case)}
    json_path = os.path.splitext(path)[0] + ".json"
    if os.path.exists(json_path):  # never leave an old task list beside new records
      os.remove(json_path)
    records.write(path, features, [str(i) for i in range(n)], source.vocab, source.lower_case)
    io_utils.atomic_write_json(json_path, meta)
    metas.append(dict(meta, path=path))
  return metas


def define_flags():
  """The CLI's flags (defined only when run as a program: importing the module for its
  functions must not claim flag names such as --input)."""
  flags.DEFINE_multi_string("input", None, "Unlabeled text, repeatable: a plain-text file "
                            "(.txt or no extension, one sentence or document per line) or any "
                            f"reader format, as {readers.SPEC_HELP}.")
  flags.DEFINE_string("output_dir", None, "Where meta_pretrain_<N>.tf_record and .json go.")
  flags.DEFINE_list("num_classes", ["2", "3", "4", "5"], "The N values: one file per N.")
  flags.DEFINE_integer("tasks_per_n", 100, "Tasks written for each N.")
  flags.DEFINE_integer("seed", 0, "Seed of the sentence samples and the tasks.")
  flags.DEFINE_string("bert_model", "minilm-l6", "Backbone whose vocabulary/casing to use.")
  flags.DEFINE_bool("do_lower_case", None, "Override the backbone's casing.")
  flags.DEFINE_integer("max_seq_length", 128, "Tokens per record, padded.")
  flags.DEFINE_integer("min_count", None, "Fewest sentences a task word must occur in; default "
                       "(and minimum): ceil(task_size / smallest N).")
  flags.DEFINE_integer("max_count", None, "Most sentences a task word may occur in; default: any.")
  flags.DEFINE_integer("task_size", 90, "Records per task (support + query).")
  flags.DEFINE_integer("num_query", 10, "Query records per task (the last of each block).")
  flags.DEFINE_integer("sentences_per_word", 256, "Sentences sampled per candidate word (bounds "
                       "memory; tasks reusing a word draw from this sample).")
  flags.mark_flags_as_required(["input", "output_dir"])
  flag_rules.register()


FLAGS = flags.FLAGS


def main(_):
  with cli.user_errors_exit():
    io_utils.check_writable(FLAGS.output_dir, "--output_dir", directory=True)
    source = backbones.describe_backbone(FLAGS.bert_model, FLAGS.do_lower_case)
    num_classes = sorted({int(n) for n in FLAGS.num_classes})
    metas = generate(FLAGS.input, FLAGS.output_dir, source, num_classes,
                     FLAGS.tasks_per_n, FLAGS.seed, FLAGS.max_seq_length, FLAGS.min_count,
                     FLAGS.max_count, FLAGS.task_size, FLAGS.num_query, FLAGS.sentences_per_word)
    for meta in metas:
      print(f"N={meta['num_classes']}: {meta['num_tasks']} tasks of {meta['task_size']} records "
            f"from {meta['corpus']['candidates']} candidate words", file=sys.stderr)
      cli.print_result(meta["path"])


if __name__ == "__main__":
  define_flags()
  app.run(main)
