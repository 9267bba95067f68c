"""Readers: counts on the shared data, and one clear DataError per kind of bad input."""
import collections
import json

import pytest
import tensorflow as tf

from metabert_tf.data import readers
from metabert_tf.data.examples import LabeledExample
from metabert_tf.errors import DataError


def _leopard(shared_dir, task, name):
  return shared_dir / "data" / "leopard" / "json" / task / name


def _write(path, text):
  path.write_text(text, encoding="utf-8")
  return path


def _raises(match, fn, *args, **kwargs):
  """Asserts a DataError whose message contains every string in `match` (file, where, what)."""
  with pytest.raises(DataError) as info:
    fn(*args, **kwargs)
  for part in match:
    assert str(part) in str(info.value), (part, str(info.value))
  assert "\n" not in str(info.value)
  return info.value


# --- shared data -------------------------------------------------------------------------------


def test_amazon_reviews_counts_and_order(shared_dir):
  examples = readers.read_amazon_reviews(shared_dir / "data" / "blitzer_mds_4domain")
  assert len(examples) == 8000
  counts = collections.Counter((e.domain, e.label) for e in examples)
  assert set(counts.values()) == {1000}
  assert sorted({d for d, _ in counts}) == ["books", "dvd", "electronics", "kitchen"]
  order = [(e.domain, e.label) for e in examples]
  assert order == sorted(order, key=lambda dl: (dl[0], dl[1] != "positive"))
  assert examples[0].text_a.startswith("Sphere by Michael Crichton is an excellant novel.")
  assert not any("  " in e.text_a or "\n" in e.text_a for e in examples)
  # Unescaped once: only the one review the source escaped twice (&amp;quot;) keeps an entity.
  assert sum("&quot;" in e.text_a for e in examples) == 1 and any('"' in e.text_a for e in examples)
  assert readers.read_examples(shared_dir / "data" / "blitzer_mds_4domain") == examples


def test_amazon_reviews_selected_domains(shared_dir):
  examples = readers.read_amazon_reviews(shared_dir / "data" / "blitzer_mds_4domain", ["dvd"])
  assert len(examples) == 2000 and {e.domain for e in examples} == {"dvd"}


def test_leopard_json_pair_task(shared_dir):
  path = _leopard(shared_dir, "scitail", "scitail_train_0_4.json")
  examples = readers.read_leopard_json(path)
  assert len(examples) == 8
  assert all(e.text_b and e.domain == "scitail" for e in examples)
  assert collections.Counter(e.label for e in examples) == {"neutral": 4, "entails": 4}
  assert readers.read_examples(path) == examples


def test_leopard_json_eval(shared_dir):
  examples = readers.read_examples(_leopard(shared_dir, "rating_books", "rating_books_eval.json"))
  assert len(examples) == 1391
  assert collections.Counter(e.label for e in examples) == {"2": 560, "4": 193, "5": 638}
  assert {e.domain for e in examples} == {"rating_books"} and not any(e.text_b for e in examples)


def test_task_from_filename():
  assert readers.task_from_filename("a/conll_c_train_3_16.json") == "conll_c"
  assert readers.task_from_filename("rating_dvd_eval.tf_record") == "rating_dvd"
  assert readers.task_from_filename("my_data.json") == "my_data"


def test_leopard_tf_record_with_label_map(shared_dir):
  leopard = shared_dir / "data" / "leopard"
  label_map = readers.load_leopard_label_map(leopard / "label_maps.json", "rating_dvd")
  assert label_map == {"2": 0, "4": 1, "5": 2}
  path = leopard / "tf_record" / "rating_dvd" / "rating_dvd_eval.tf_record"
  examples = readers.read_examples(path, label_map=label_map)
  assert len(examples) == 5020
  assert collections.Counter(e.label for e in examples) == {"2": 1065, "4": 1152, "5": 2803}
  first = examples[0]
  assert first.text_a is None and first.is_encoded and first.domain == "rating_dvd"
  assert all(len(e.input_ids) == len(e.segment_ids) <= 128 for e in examples)
  assert all(e.input_ids[-1] != 0 and set(e.segment_ids) == {0} for e in examples)
  # The same through a data spec naming the label maps (the task comes from the file name).
  spec = f"{path}:label_maps={leopard / 'label_maps.json'}"
  assert [e.label for e in readers.read_examples(spec)] == [e.label for e in examples]


def test_leopard_tf_record_without_label_map(shared_dir):
  path = (shared_dir / "data" / "leopard" / "tf_record" / "sentiment_electronics"
          / "sentiment_electronics_eval.tf_record")
  examples = readers.read_leopard_tf_record(path)
  assert collections.Counter(e.label for e in examples) == {"0": 500, "1": 500}


def test_label_map_unknown_task(shared_dir):
  path = shared_dir / "data" / "leopard" / "label_maps.json"
  _raises([path, "no label map for task 'nope'", "scitail"], readers.load_leopard_label_map, path,
          "nope")


# --- synthetic tf_records ----------------------------------------------------------------------

_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "cat", "##s", "sat", "dog", "ran"]


def _tf_record(path, records):
  with tf.io.TFRecordWriter(str(path)) as writer:
    for features in records:
      feature = {k: tf.train.Feature(int64_list=tf.train.Int64List(value=v))
                 for k, v in features.items()}
      example = tf.train.Example(features=tf.train.Features(feature=feature))
      writer.write(example.SerializeToString())
  return path


def _encoded(ids, segments, label, length=8):
  pad = length - len(ids)
  return {"input_ids": ids + [0] * pad, "input_mask": [1] * len(ids) + [0] * pad,
          "segment_ids": segments + [0] * pad, "label_ids": [label]}


def test_tf_record_decoded_with_vocab(tmp_path):
  vocab = _write(tmp_path / "vocab.txt", "\n".join(_VOCAB) + "\n")
  path = _tf_record(tmp_path / "pairs_eval.tf_record", [
      _encoded([2, 4, 5, 6, 7, 3, 8, 3], [0, 0, 0, 0, 0, 0, 1, 1], 1),
      _encoded([2, 8, 9, 3], [0, 0, 0, 0], 0)])
  first, second = readers.read_leopard_tf_record(path, {"neutral": 0, "entails": 1}, vocab)
  assert first == LabeledExample("the cats sat", "entails", "dog", "pairs",
                                 (2, 4, 5, 6, 7, 3, 8, 3), (0, 0, 0, 0, 0, 0, 1, 1))
  assert (second.text_a, second.text_b, second.label) == ("dog ran", None, "neutral")
  assert second.input_ids == (2, 8, 9, 3)


def test_tf_record_errors(tmp_path):
  ok = _encoded([2, 4, 3], [0, 0, 0], 0)
  missing = {k: v for k, v in ok.items() if k != "label_ids"}
  path = _tf_record(tmp_path / "a.tf_record", [ok, missing])
  _raises([path, "record 1 (0-based)", "missing feature 'label_ids'"],
          readers.read_leopard_tf_record, path)
  path = _tf_record(tmp_path / "b.tf_record", [ok, _encoded([2, 4, 3], [0, 0, 0], 5)])
  _raises([path, "record 1 (0-based)", "label_id 5 not in the label map"],
          readers.read_leopard_tf_record, path, {"x": 0, "y": 1})
  vocab = _write(tmp_path / "vocab.txt", "[CLS]\n[SEP]\n")
  _raises([path, "record 0 (0-based)", "input id 2 outside the vocab"],
          readers.read_leopard_tf_record, path, None, vocab)
  _raises([tmp_path / "empty.tf_record", "no examples"], readers.read_leopard_tf_record,
          _tf_record(tmp_path / "empty.tf_record", []))
  corrupt = tmp_path / "corrupt.tf_record"
  corrupt.write_bytes(path.read_bytes()[:-7])
  _raises([corrupt, "record 1 (0-based)", "corrupt tf_record"], readers.read_leopard_tf_record,
          corrupt)
  missing = tmp_path / "none.tfrecord"
  _raises([missing, "no such file"], readers.read_examples, missing)


# --- text formats and their errors ---------------------------------------------------------------


def test_domain_json_and_jsonl(tmp_path):
  records = [{"text": "good", "label": 1, "domain": "a"},
             {"text": "bad", "label": "0", "domain": "b"}]
  path = _write(tmp_path / "dataset.json", json.dumps(records))
  expected = [LabeledExample("good", "1", domain="a"), LabeledExample("bad", "0", domain="b")]
  assert readers.read_domain_json(path) == expected == readers.read_examples(path)
  path = _write(tmp_path / "d.jsonl", "\n".join(json.dumps(r) for r in records) + "\n\n")
  assert readers.read_jsonl(path, domain_field="domain") == expected == readers.read_examples(path)
  assert readers.read_jsonl(path)[0].domain is None
  path = _write(tmp_path / "p.jsonl", json.dumps({"q": "x?", "a": "y", "y": "yes"}))
  assert readers.read_jsonl(path, "q", "y", text_b_field="a") == [LabeledExample("x?", "yes", "y")]


def test_delimited(tmp_path):
  path = _write(tmp_path / "d.csv",
                'sentence1,sentence2,label\n"a, ""quoted""\nline",b,pos\n\nc,,neg\n')
  expected = [LabeledExample('a, "quoted"\nline', "pos", "b"), LabeledExample("c", "neg")]
  assert readers.read_examples(path) == expected
  assert readers.read_delimited(path, "sentence1", "label", "sentence2") == expected
  path = _write(tmp_path / "d.tsv", 'label\ttext\tdomain\npos\tsays "hi\tbooks\nneg\tno\tdvd\n')
  assert readers.read_delimited(path, "text", "label", domain_column="domain") == [
      LabeledExample('says "hi', "pos", domain="books"), LabeledExample("no", "neg", domain="dvd")]
  path = _write(tmp_path / "d.txt", "text|label\nx|1\n")
  assert readers.read_examples(path, delimiter="|") == [LabeledExample("x", "1")]


def test_reader_specific_errors(tmp_path):
  missing = tmp_path / "missing.json"
  _raises([missing, "no such file"], readers.read_leopard_json, missing)
  _raises([missing, "no such directory"], readers.read_amazon_reviews, missing)
  _raises([tmp_path, "no <domain>/positive.review"], readers.read_amazon_reviews, tmp_path)
  (tmp_path / "books").mkdir()
  _write(tmp_path / "books" / "positive.review",
         "<reviews>\n<review><review_text>Fine &amp; good</review_text></review>\n</reviews>\n")
  negative = tmp_path / "books" / "negative.review"
  _raises([negative, "no such file"], readers.read_amazon_reviews, tmp_path)
  _write(negative, "<reviews>\n</reviews>\n")
  _raises([negative, "no <review> blocks"], readers.read_amazon_reviews, tmp_path)
  _write(negative, "<reviews>\n<review>\n<review_text>ok</review_text>\n</review>\n"
         "<review>\n<title>t</title>\n</review>\n</reviews>\n")
  _raises([negative, "line 5", "missing <review_text>"], readers.read_amazon_reviews, tmp_path)
  _write(negative, "<review><review_text> Bad\n\n  one </review_text></review>")
  assert readers.read_amazon_reviews(tmp_path) == [
      LabeledExample("Fine & good", "positive", domain="books"),
      LabeledExample("Bad one", "negative", domain="books")]
  _raises([tmp_path / "dvd", "no such directory"], readers.read_amazon_reviews, tmp_path, ["dvd"])
