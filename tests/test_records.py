"""tf_records: encode/write/load round trip, metadata, validation errors, LEOPARD files, labels."""
import hashlib
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from metabert_tf import datasets
from metabert_tf import records
from metabert_tf import tokenization
from metabert_tf.data.examples import LabeledExample
from metabert_tf.errors import DataError
from tests import tiny_models

VOCAB = tiny_models.VOCAB
LABELS = ["negative", "positive"]
DOMAINS = ["books", "dvd", "kitchen"]
EXAMPLES = [
    LabeledExample("the movie is good", "positive", domain="dvd"),
    LabeledExample("a bad book", "negative", domain="books"),
    LabeledExample("i love this film !", "positive", domain="dvd"),
    LabeledExample("boring plot", "negative", domain="kitchen"),
    LabeledExample("great fun", "positive", domain="books"),
]


@pytest.fixture(scope="module")
def encoder():
  return tokenization.BertInputEncoder(VOCAB, True, 16)


def _write(tmp_path, encoder, name="data.tf_record", examples=EXAMPLES, domains=DOMAINS):
  features = records.encode(examples, encoder, LABELS, domains, source="in.jsonl")
  path = str(tmp_path / name)
  meta = records.write(path, features, LABELS, VOCAB, True, domains)
  return path, features, meta


def _write_raw(path, rows, max_seq_length=16):
  """Hand-made records (no metadata file), to test what load() accepts."""
  with tf.io.TFRecordWriter(path) as writer:
    for row in rows:
      feature = {k: tf.train.Feature(int64_list=tf.train.Int64List(value=v))
                 for k, v in row.items()}
      writer.write(tf.train.Example(
          features=tf.train.Features(feature=feature)).SerializeToString())
  return path


def _row(label, length=16):
  ids = [2, 9, 3] + [0] * (length - 3)
  return {"input_ids": ids, "input_mask": [1, 1, 1] + [0] * (length - 3),
          "segment_ids": [0] * length, "label_ids": [label]}


def test_encode(encoder):
  features = records.encode(EXAMPLES, encoder, LABELS, DOMAINS)
  assert features["label_ids"].tolist() == [1, 0, 1, 0, 1]
  assert features["domain_ids"].tolist() == [1, 0, 1, 2, 0]
  direct = encoder.encode_examples(EXAMPLES)
  for key in records.MODEL_INPUTS:
    np.testing.assert_array_equal(features[key], direct[key])
  assert features["input_word_ids"][0, :6].tolist() == [2, 5, 9, 13, 7, 3]
  assert "domain_ids" not in records.encode(EXAMPLES, encoder, LABELS)


def test_round_trip_with_domains(tmp_path, encoder):
  path, features, meta = _write(tmp_path, encoder)
  loaded, loaded_meta = records.load(path, 16)
  assert sorted(loaded) == sorted(features)
  for key in features:
    assert loaded[key].dtype == np.int32
    np.testing.assert_array_equal(loaded[key], features[key], err_msg=key)
  assert loaded_meta == meta
  assert sorted(os.listdir(tmp_path)) == ["data.tf_record", "data.tf_record.meta.json"]


def test_round_trip_without_domains(tmp_path, encoder):
  features = records.encode(EXAMPLES, encoder, LABELS)
  path = str(tmp_path / "plain.tf_record")
  meta = records.write(path, features, LABELS, VOCAB, False)
  assert "domain_list" not in meta and "domain_counts" not in meta
  loaded, _ = records.load(path, 16, 2)
  assert "domain_ids" not in loaded
  np.testing.assert_array_equal(loaded["input_word_ids"], features["input_word_ids"])
  np.testing.assert_array_equal(loaded["label_ids"], features["label_ids"])


def test_metadata_file(tmp_path, encoder):
  path, _, meta = _write(tmp_path, encoder)
  with open(path + ".meta.json", encoding="utf-8") as f:
    on_disk = json.load(f)
  assert on_disk == meta
  assert records.read_metadata(path) == meta
  fingerprint = hashlib.sha256("\n".join(VOCAB).encode("utf-8")).hexdigest()[:16]
  assert on_disk == {
      "num_examples": 5, "max_seq_length": 16, "label_list": LABELS, "num_labels": 2,
      "label_counts": {"negative": 2, "positive": 3}, "vocab_fingerprint": fingerprint,
      "lower_case": True, "domain_list": DOMAINS,
      "domain_counts": {"books": 2, "dvd": 2, "kitchen": 1}}
  assert records.vocab_fingerprint(VOCAB[:-1]) != fingerprint
  assert not any(name.endswith(".tmp") for name in os.listdir(tmp_path))


def test_failed_write_leaves_nothing(tmp_path, encoder):
  features = records.encode(EXAMPLES, encoder, LABELS)
  del features["label_ids"]
  path = str(tmp_path / "broken.tf_record")
  with pytest.raises(KeyError):
    records.write(path, features, LABELS, VOCAB, True)
  assert os.listdir(tmp_path) == []


def test_rewrite_replaces_file(tmp_path, encoder):
  path, _, _ = _write(tmp_path, encoder)
  _write(tmp_path, encoder, examples=EXAMPLES[:2])
  loaded, meta = records.load(path, 16)
  assert len(loaded["label_ids"]) == 2 and meta["num_examples"] == 2
  assert not any(name.endswith(".tmp") for name in os.listdir(tmp_path))


def test_encode_unknown_label(encoder):
  examples = EXAMPLES[:2] + [LabeledExample("fun", "neutral")]
  with pytest.raises(DataError) as info:
    records.encode(examples, encoder, LABELS, source="train.jsonl")
  assert info.value.path == "train.jsonl" and info.value.record == 2
  assert str(info.value).startswith("train.jsonl:2: unknown label 'neutral'")
  with pytest.raises(DataError, match="no examples"):
    records.encode([], encoder, LABELS, source="train.jsonl")


def test_encode_pre_encoded_examples(encoder):
  examples = [LabeledExample(None, "positive", input_ids=[2, 9, 3, 5, 3],
                             segment_ids=[0, 0, 0, 1, 1]),
              LabeledExample(None, "negative", input_ids=[2, 8, 3])]
  features = records.encode(examples, encoder, LABELS)
  assert features["input_word_ids"][0].tolist() == [2, 9, 3, 5, 3] + [0] * 11
  assert features["input_type_ids"][0].tolist() == [0, 0, 0, 1, 1] + [0] * 11
  assert features["input_mask"][1].tolist() == [1, 1, 1] + [0] * 13
  too_long = [LabeledExample(None, "positive", input_ids=list(range(17)))]
  with pytest.raises(DataError, match=r"^src:0: encoded example has 17 tokens > max_seq_length 16"):
    records.encode(too_long, encoder, LABELS, source="src")


def test_load_wrong_max_seq_length_with_metadata(tmp_path, encoder):
  path, _, _ = _write(tmp_path, encoder)
  with pytest.raises(DataError) as info:
    records.load(path, 32)
  assert info.value.path == path
  assert str(info.value) == (f"{path}: records have sequence length 16 but --max_seq_length "
                             "is 32")


def test_load_wrong_max_seq_length_without_metadata(tmp_path, encoder):
  path, _, _ = _write(tmp_path, encoder)
  os.remove(records.metadata_path(path))
  with pytest.raises(DataError) as info:
    records.load(path, 32)
  assert info.value.path == path and info.value.record == 0
  assert "input_ids has length 16 but --max_seq_length is 32" in str(info.value)
  loaded, meta = records.load(path, 16)  # still readable with the right length
  assert meta is None and len(loaded["label_ids"]) == 5
  assert loaded["domain_ids"].tolist() == [1, 0, 1, 2, 0]


def test_load_label_out_of_range(tmp_path):
  path = _write_raw(str(tmp_path / "r.tf_record"), [_row(0), _row(1), _row(2), _row(1)])
  with pytest.raises(DataError) as info:
    records.load(path, 16, num_labels=2)
  assert info.value.path == path and info.value.record == 2
  assert "label_ids 2 is not in [0, 2)" in str(info.value)
  assert records.load(path, 16, num_labels=3)[0]["label_ids"].tolist() == [0, 1, 2, 1]
  negative = _write_raw(str(tmp_path / "n.tf_record"), [_row(-1)])
  with pytest.raises(DataError, match=r"n\.tf_record:0: label_ids -1"):
    records.load(negative, 16, num_labels=2)


def test_load_label_out_of_range_uses_metadata_num_labels(tmp_path, encoder):
  features = records.encode(EXAMPLES, encoder, LABELS)
  features["label_ids"][3] = 2  # corrupt: the metadata says 2 labels
  path = str(tmp_path / "r.tf_record")
  records.write(path, features, LABELS + ["extra"], VOCAB, True)
  meta_path = records.metadata_path(path)
  with open(meta_path) as f:
    meta = json.load(f)
  meta["num_labels"] = 2
  with open(meta_path, "w") as f:
    json.dump(meta, f)
  with pytest.raises(DataError, match=r"r\.tf_record:3: label_ids 2 is not in \[0, 2\)"):
    records.load(path, 16)


def test_load_missing_feature(tmp_path):
  row = _row(0)
  del row["segment_ids"]
  path = _write_raw(str(tmp_path / "r.tf_record"), [_row(1), row])
  with pytest.raises(DataError, match=r"r\.tf_record:1: record has no feature 'segment_ids'"):
    records.load(path, 16)


def test_load_missing_empty_and_corrupt_files(tmp_path):
  missing = str(tmp_path / "missing.tf_record")
  with pytest.raises(DataError) as info:
    records.load(missing, 16)
  assert str(info.value) == f"{missing}: file not found"
  empty = tmp_path / "empty.tf_record"
  empty.write_bytes(b"")
  with pytest.raises(DataError) as info:
    records.load(str(empty), 16)
  assert str(info.value) == f"{empty}: no records"
  corrupt = tmp_path / "corrupt.tf_record"
  corrupt.write_bytes(b"this is not a tf_record at all, just some bytes")
  with pytest.raises(DataError, match=r"corrupt\.tf_record:record 0 \(0-based\): corrupt or "
                     "truncated tf_record"):
    records.load(str(corrupt), 16)
  # Cut inside the third record: the two before it read, the error names the third.
  whole = _write_raw(str(tmp_path / "whole.tf_record"), [_row(0), _row(1), _row(0)])
  truncated = tmp_path / "truncated.tf_record"
  truncated.write_bytes(open(whole, "rb").read()[:-10])
  with pytest.raises(DataError, match=r"truncated\.tf_record:record 2 \(0-based\): corrupt"):
    records.load(str(truncated), 16)


def test_leopard_original_tf_record(shared_dir):
  path = str(shared_dir / "data" / "leopard" / "tf_record" / "sentiment_electronics" /
             "sentiment_electronics_eval.tf_record")
  features, meta = records.load(path, 128, 2)
  assert meta is None
  assert sorted(features) == ["input_mask", "input_type_ids", "input_word_ids", "label_ids"]
  assert features["input_word_ids"].shape == (1000, 128)
  assert np.bincount(features["label_ids"]).tolist() == [500, 500]
  assert (features["input_word_ids"][:, 0] == 101).all()  # cased BERT-base [CLS]
  mask = features["input_mask"].astype(bool)
  assert ((features["input_word_ids"] != 0) == mask).all()
  with pytest.raises(DataError, match="input_ids has length 128 but --max_seq_length is 64"):
    records.load(path, 64, 2)


def test_trim_to_longest():
  mask = np.zeros([3, 128], np.int32)
  mask[0, :5] = 1
  mask[1, :37] = 1
  mask[2, :12] = 1
  batch = {"input_word_ids": mask * 7, "input_mask": mask, "input_type_ids": mask * 0,
           "label_ids": np.array([0, 1, 0], np.int32)}
  out = records.trim_to_longest({k: tf.constant(v) for k, v in batch.items()}, bucket=32)
  assert {k: v.shape.as_list() for k, v in out.items()} == {
      "input_word_ids": [3, 64], "input_mask": [3, 64], "input_type_ids": [3, 64],
      "label_ids": [3]}
  np.testing.assert_array_equal(out["input_mask"].numpy(), mask[:, :64])
  assert int(out["input_mask"].numpy().sum()) == int(mask.sum())  # nothing real cut off
  # Exactly a multiple stays; the full length caps the rounding up.
  mask[1, :] = 0
  mask[1, :32] = 1
  assert records.trim_to_longest({"input_mask": tf.constant(mask)})["input_mask"].shape[1] == 32
  assert records.trim_to_longest({"input_mask": tf.constant(mask)}, bucket=8)[
      "input_mask"].shape[1] == 32
  narrow = np.ones([2, 40], np.int32)
  narrow[1, 35:] = 0
  assert records.trim_to_longest({"input_mask": tf.constant(narrow)})["input_mask"].shape[1] == 40


def test_make_dataset_trims_batches(encoder):
  features = records.encode(EXAMPLES, encoder, LABELS)
  batches = list(records.make_dataset(features, 2, bucket=4))
  assert [b["input_word_ids"].shape.as_list() for b in batches] == [[2, 8], [2, 8], [1, 4]]
  assert np.concatenate([b["label_ids"].numpy() for b in batches]).tolist() == [1, 0, 1, 0, 1]


def _labels(*labels):
  return [LabeledExample("x", label) for label in labels]


def test_choose_label_list():
  train, evals = _labels("pos", "neg"), _labels("neg", "mid")
  assert datasets.choose_label_list([train, evals]) == ["mid", "neg", "pos"]
  # An explicit list (--label_list) is kept in its order; the data must fit it.
  assert datasets.choose_label_list([train], ["pos", "neg", "mid"]) == ["pos", "neg", "mid"]
  with pytest.raises(DataError) as info:
    datasets.choose_label_list([train, evals], ["pos", "neg"], source="eval.json")
  assert str(info.value) == "eval.json: labels ['mid'] are not in the label list ['pos', 'neg']"
  # A model's (checkpoint's) list is kept when the data fits it, so label ids stay the same ...
  assert datasets.choose_label_list([train], model=["pos", "neg"]) == ["pos", "neg"]
  # ... else a new head is trained on the data's sorted labels, unless the model must be used.
  assert datasets.choose_label_list([train, evals], model=["pos", "neg"]) == ["mid", "neg", "pos"]
  with pytest.raises(DataError, match="not in the model's label list"):
    datasets.choose_label_list([evals], model=["pos", "neg"], source="e", must_fit_model=True)
  with pytest.raises(DataError, match="need --label_list"):
    datasets.choose_label_list([[]], source="x.tf_record")


def test_load_features_checks_label_list_and_vocab(tmp_path, encoder):
  path, features, _ = _write(tmp_path, encoder)
  loaded = datasets.load_features(path, encoder, LABELS)
  np.testing.assert_array_equal(loaded["input_word_ids"], features["input_word_ids"])
  with pytest.raises(DataError, match="records use label list"):
    datasets.load_features(path, encoder, ["positive", "negative"])
  other = tokenization.BertInputEncoder(VOCAB[:-1] + ["zzz"], True, 16)
  with pytest.raises(DataError, match="different vocabulary"):
    datasets.load_features(path, other, LABELS)


def test_write_tf_record_cli_then_stream_and_finetune_input(tmp_path, tiny_google_dir, toy_task):
  # in this process (the program as a subprocess: test_cli.py)
  from tests import programs  # pylint: disable=import-outside-toplevel
  out = tmp_path / "train.tf_record"
  status, err = programs.run("data_prep/write_tf_record.py", f"--input={toy_task['train']}",
                             f"--output={out}", f"--bert_model={tiny_google_dir}",
                             "--max_seq_length=16")
  assert status == 0, err[-2000:]
  meta = records.read_metadata(str(out))
  assert meta["num_examples"] == 24 and meta["label_list"] == ["negative", "positive"]
  loaded, _ = records.load(str(out), 16)
  assert len(loaded["label_ids"]) == 24
  line = programs.error_line("data_prep/write_tf_record.py", f"--input={tmp_path}/nope.jsonl",
                             f"--output={tmp_path}/x.tf_record", f"--bert_model={tiny_google_dir}")
  assert "nope.jsonl" in line
  # Training straight from the records takes their label list from the .meta.json.
  from metabert_tf import finetune_job, training
  results = finetune_job.run_job(finetune_job.FinetuneJob(
      output_dir=str(tmp_path / "ft"), train_path=str(out), eval_path=toy_task["eval"],
      bert_model=tiny_google_dir, max_seq_length=16,
      train=training.FinetuneConfig(epochs=1, batch_size=8, progress=False)))
  assert results["label_list"] == ["negative", "positive"] and results["num_train_examples"] == 24
