"""The Python API (metabert_tf/api.py): fit / predict / save / load, its errors, a LEOPARD-family
checkpoint through it and through run_finetune.py, and meta_train for each kind of algorithm."""
import json

import numpy as np
import pytest
import tensorflow as tf

import metabert_tf
from metabert_tf import FewShotClassifier
from metabert_tf import meta_train
from metabert_tf import predict
from metabert_tf.errors import ConfigError
from metabert_tf.errors import DataError
from tests import programs
from tests import tiny_models
from tests.test_leopard_finetune import leopard_ckpt  # noqa: F401  (a fixture)

RECIPE = dict(epochs=2, batch_size=4, learning_rate=1e-3, progress=False)


def _toy(tmp_path, n_per_label=6):
  paths = tiny_models.write_toy_task(str(tmp_path / "task"), n_per_label=n_per_label)
  rows = {}
  for split, path in paths.items():
    with open(path) as f:
      data = [json.loads(line) for line in f]
    rows[split] = ([r["text"] for r in data], [r["label"] for r in data])
  return paths, rows


def test_fit_predict_save_and_load_give_the_same_probabilities(tiny_google_dir, tmp_path):
  _, rows = _toy(tmp_path)
  texts, labels = rows["train"]
  clf = FewShotClassifier.from_pretrained(tiny_google_dir, max_seq_length=16)
  assert clf.fit(texts, labels, **RECIPE) is clf
  assert clf.labels == ["negative", "positive"]
  probabilities = clf.predict_proba(rows["eval"][0])
  assert probabilities.shape == (len(rows["eval"][0]), 2) and probabilities.dtype == np.float32
  np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
  predicted = clf.predict(rows["eval"][0])
  assert predicted == [clf.labels[i] for i in probabilities.argmax(axis=1)]
  metrics = clf.evaluate(*rows["eval"])
  assert metrics["accuracy"] == np.mean(np.array(predicted) == np.array(rows["eval"][1]))
  assert set(metrics) == {"accuracy", "macro_f1", "num_examples"}
  assert clf.train_results["train_steps"] == 2 * 3  # 12 examples, batch 4, 2 epochs

  saved = clf.save(str(tmp_path / "saved"))
  again = FewShotClassifier.from_pretrained(saved, max_seq_length=16)
  assert again.labels == clf.labels
  np.testing.assert_array_equal(again.predict_proba(rows["eval"][0]), probabilities)
  clf.save(saved)  # a save replaces an earlier one
  # The export serves the same classifier from raw strings.
  export_dir = again.export(str(tmp_path / "export"))
  served = predict.predict(export_dir, [(t, None) for t in rows["eval"][0]], progress=False)
  np.testing.assert_allclose([r["probabilities"] for r in served], probabilities, atol=1e-5)


def test_fit_starts_from_the_pretrained_weights_each_time_and_resumes_in_output_dir(
    tiny_google_dir, tmp_path):
  _, rows = _toy(tmp_path)
  clf = FewShotClassifier.from_pretrained(tiny_google_dir, max_seq_length=16)
  first = clf.fit(*rows["train"], **RECIPE).predict_proba(rows["eval"][0])
  second = clf.fit(*rows["train"], **RECIPE).predict_proba(rows["eval"][0])
  np.testing.assert_allclose(first, second, atol=1e-6)
  out = tmp_path / "run"
  kept = clf.fit(*rows["train"], output_dir=str(out), **RECIPE).predict_proba(rows["eval"][0])
  assert tf.train.latest_checkpoint(str(out / "ckpt"))
  np.testing.assert_allclose(kept, first, atol=1e-6)
  # Finished: the same call reads the final checkpoint back instead of training again.
  resumed = clf.fit(*rows["train"], output_dir=str(out), **{**RECIPE, "progress": True})
  assert resumed.train_results["train_seconds"] < 5
  np.testing.assert_allclose(resumed.predict_proba(rows["eval"][0]), kept, atol=1e-6)
  # Other examples or another recipe in that output_dir are refused, not silently resumed.
  texts, labels = rows["train"]
  with pytest.raises(ConfigError, match=r"holds a run with other settings \(examples\)"):
    clf.fit(texts, labels[::-1], output_dir=str(out), **RECIPE)
  with pytest.raises(ConfigError, match=r"other settings \(train\)"):
    clf.fit(texts, labels, output_dir=str(out), **{**RECIPE, "epochs": 3})


def test_bad_input_raises_the_library_errors_with_the_cli_words(tiny_google_dir, tmp_path):
  _, rows = _toy(tmp_path)
  texts, labels = rows["train"]
  clf = FewShotClassifier.from_pretrained(tiny_google_dir, max_seq_length=16)
  with pytest.raises(ConfigError, match="has no trained classifier: call fit"):
    clf.predict(["good"])
  with pytest.raises(ConfigError, match="^epochs must be >= 1, got 0$"):
    clf.fit(texts, labels, epochs=0)
  with pytest.raises(ConfigError, match="epoch is not a setting of fit .*epochs, batch_size"):
    clf.fit(texts, labels, epoch=1)
  with pytest.raises(ConfigError, match="head_init must be one of random, prototypes"):
    clf.fit(texts, labels, head_init="zeros")
  with pytest.raises(DataError, match="labels: has 3 items, texts has 12"):
    clf.fit(texts, labels[:3])
  with pytest.raises(DataError, match=r"texts:\[1\]: expected a str, got NoneType"):
    clf.fit(["good", None], ["a", "b"])
  with pytest.raises(DataError, match="texts: expected a list, got str"):
    clf.fit("good", ["a"])
  with pytest.raises(DataError, match="training data with one label"):
    clf.fit(texts, ["positive"] * len(texts), **RECIPE)
  with pytest.raises(ConfigError, match="max_seq_length must be >= 8, got 4"):
    FewShotClassifier.from_pretrained(tiny_google_dir, max_seq_length=4)
  with pytest.raises(ConfigError):
    FewShotClassifier.from_pretrained(str(tmp_path / "no_such_model"))
  clf.fit(texts, labels, **RECIPE)
  with pytest.raises(DataError, match=r"labels \['neutral'\] are not among the classes"):
    clf.evaluate(["good"], ["neutral"])
  (tmp_path / "busy").mkdir()
  (tmp_path / "busy" / "notes.txt").write_text("mine")
  with pytest.raises(ConfigError, match="exists and is not a saved model"):
    clf.save(str(tmp_path / "busy"))
  # Integer labels are label names too.
  clf.fit(texts, [int(label == "positive") for label in labels], **RECIPE)
  assert clf.labels == ["0", "1"]


def test_a_leopard_checkpoint_through_the_api_equals_run_finetune(leopard_ckpt, tmp_path):  # noqa: F811
  paths, rows = _toy(tmp_path)
  status, err = programs.run(
      "run_finetune.py", f"--bert_model={leopard_ckpt}", f"--train_file={paths['train']}",
      f"--output_dir={tmp_path / 'cli'}", "--max_seq_length=16", "--epochs=2", "--batch_size=4",
      "--learning_rate=1e-3", "--noprogress", f"--export_dir={tmp_path / 'cli_export'}")
  assert status == 0, err[-2000:]
  cli = predict.predict(str(tmp_path / "cli_export"), [(t, None) for t in rows["eval"][0]],
                        progress=False)
  clf = FewShotClassifier.from_pretrained(leopard_ckpt, max_seq_length=16)
  clf.fit(*rows["train"], **RECIPE)
  assert "class_rows" in [w.name.split("/")[-1].split(":")[0]
                          for w in clf._built.model.head.weights]  # the generated head
  np.testing.assert_allclose(clf.predict_proba(rows["eval"][0]),
                             [r["probabilities"] for r in cli], atol=1e-5)


@pytest.mark.slow
def test_meta_train_each_kind_of_algorithm_then_fit_from_its_checkpoint(tiny_google_dir,
                                                                       tmp_path):
  examples = [{"text": e.text_a, "label": e.label, "domain": e.domain}
              for e in tiny_models.toy_domain_examples()]
  model = dict(bert_model=tiny_google_dir, max_seq_length=16, progress=False)
  leopard = meta_train("leopard", examples, str(tmp_path / "leopard"), num_train_task=2,
                       outer_batch_size=2, meta_batchsz=4, num_batches=2, num_query=2,
                       label_emb_size=8, **model)
  mix = meta_train("mix", examples, str(tmp_path / "mix"), epochs=1, batch_size=8, **model)
  texts = [e["text"] for e in examples[:12]]
  labels = [e["label"] for e in examples[:12]]
  for ckpt in (leopard, mix):  # the episodic kind (reptile, fomaml): below
    clf = FewShotClassifier.from_pretrained(ckpt, max_seq_length=16).fit(texts, labels,
                                                                         **RECIPE)
    assert clf.predict_proba(texts).shape == (12, 2)
  # The same call again resumes the finished run (same checkpoint, no new training).
  assert meta_train("leopard", examples, str(tmp_path / "leopard"), num_train_task=2,
                    outer_batch_size=2, meta_batchsz=4, num_batches=2, num_query=2,
                    label_emb_size=8, **model) == leopard
  with pytest.raises(ConfigError, match="holds a run with other settings"):
    meta_train("leopard", examples, str(tmp_path / "leopard"), num_train_task=4,
               outer_batch_size=2, meta_batchsz=4, num_batches=2, num_query=2,
               label_emb_size=8, **model)
  with pytest.raises(ConfigError, match=r"holds a run with other settings \(examples\)"):
    meta_train("leopard", examples[::-1], str(tmp_path / "leopard"), num_train_task=2,
               outer_batch_size=2, meta_batchsz=4, num_batches=2, num_query=2,
               label_emb_size=8, **model)  # other examples, written to the same data.json
  with pytest.raises(ConfigError, match="num_support is not a setting of leopard"):
    meta_train("leopard", examples, str(tmp_path / "x"), num_support=4, **model)
  with pytest.raises(ConfigError, match="meta_batchsz .* must be a multiple of num_batches"):
    meta_train("leopard", examples, str(tmp_path / "x"), meta_batchsz=5, num_batches=2,
               **model)
  with pytest.raises(ConfigError, match="algorithm must be one of"):
    meta_train("maml", examples, str(tmp_path / "x"), **model)
  with pytest.raises(DataError, match=r"data:\[0\]: expected data specs, or examples"):
    meta_train("leopard", [{"txt": "a"}], str(tmp_path / "x"), **model)


@pytest.mark.slow
def test_meta_train_the_other_algorithms_and_their_bad_settings(tiny_google_dir, tmp_path):
  """reptile, fine-tuned from, and the supervised methods through the API (leopard and mix:
  above; fomaml is reptile's kind), and each kind of bad setting raising the library's error
  under the API's own name."""
  examples = [{"text": e.text_a, "label": e.label, "domain": e.domain}
              for e in tiny_models.toy_domain_examples()]
  model = dict(bert_model=tiny_google_dir, max_seq_length=16, progress=False)
  domains = tiny_models.write_domain_json(str(tmp_path / "toy.json"))
  episodes = dict(num_train_task=2, outer_batch_size=2, num_support=4, num_query=2,
                  inner_update_step=1, epochs=1, num_test_task=0, inner_batch_size=2)
  checkpoints = [meta_train("reptile", domains, str(tmp_path / "reptile"), **episodes, **model)]
  for method in ("mft", "mtl", "adv"):
    checkpoints.append(meta_train(method, examples, str(tmp_path / method), epochs=1,
                                  batch_size=8, **model))
  for ckpt in checkpoints:
    assert FewShotClassifier.from_pretrained(ckpt, max_seq_length=16).labels is not None
  texts = [e["text"] for e in examples[:12]]
  labels = [e["label"] for e in examples[:12]]
  clf = FewShotClassifier.from_pretrained(checkpoints[0], max_seq_length=16).fit(texts, labels,
                                                                                **RECIPE)
  assert clf.predict_proba(texts).shape == (12, 2)
  bad = [("mft", dict(alpha=1.5), "alpha", r"^alpha must be"),
         ("mft", dict(corruption_weight=-1.0), "corruption_weight", "^corruption_weight must"),
         ("mft", dict(variant="half"), "variant", "^variant must be one of"),
         ("reptile", dict(variant="fast"), "variant", "^variant must be one of classic"),
         ("fomaml", dict(inner_optimizer="rmsprop"), "inner_optimizer", "must be adam or sgd")]
  for algorithm, setting, field, message in bad:
    data = examples if algorithm == "mft" else domains
    with pytest.raises(ConfigError, match=message) as raised:
      meta_train(algorithm, data, str(tmp_path / "bad"), **episodes if algorithm != "mft" else {},
                 **setting, **model)
    assert raised.value.field == field, algorithm


def test_meta_train_of_one_multidomain_file_takes_a_list_of_one(tmp_path):
  """fomaml, reptile and the supervised methods read one file: a list of one is that file
  (here a missing one, named in the error), a list of two is refused."""
  missing = str(tmp_path / "missing.json")
  for algorithm in ("fomaml", "mix"):
    with pytest.raises(DataError, match=f"{missing}: (no such file|file or directory not found)"):
      meta_train(algorithm, [missing], str(tmp_path / algorithm), progress=False)
    with pytest.raises(DataError, match=f"{algorithm} trains on one multi-domain data spec, got 2"):
      meta_train(algorithm, [missing, missing], str(tmp_path / algorithm), progress=False)
    for setting, value in (("precision", "fp16"), ("pooling", "cls")):  # checked before any load
      with pytest.raises(ConfigError, match=f"must be .*, got '{value}'") as raised:
        meta_train(algorithm, missing, str(tmp_path / algorithm), **{setting: value})
      assert raised.value.field == setting


def test_the_package_exports_the_api():
  assert metabert_tf.FewShotClassifier is FewShotClassifier
  assert set(metabert_tf.__all__) >= {"FewShotClassifier", "meta_train"}
  with pytest.raises(AttributeError):
    metabert_tf.no_such_name  # noqa: B018


def test_fit_prototypes_classifies_by_the_nearest_class_mean_without_training(tiny_google_dir,
                                                                            tmp_path):
  _, rows = _toy(tmp_path)
  texts = rows["train"][0][:4]  # one example per class: its own mean, at distance 0
  labels = ["a", "b", "c", "d"]
  clf = FewShotClassifier.from_pretrained(tiny_google_dir, max_seq_length=16)
  assert clf.fit_prototypes(texts, labels) is clf
  assert clf.train_results["train_steps"] == 0
  assert clf.predict(texts) == labels
  again = FewShotClassifier.from_pretrained(clf.save(str(tmp_path / "saved")), max_seq_length=16)
  np.testing.assert_array_equal(again.predict_proba(texts), clf.predict_proba(texts))
  with pytest.raises(DataError, match="labels"):
    clf.fit_prototypes(texts, ["a"] * 4)
