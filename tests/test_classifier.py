"""The classifier's sentence representation: BERT's pooler or the masked mean of tokens."""
import os

import numpy as np
import pytest
import tensorflow as tf

from metabert_tf import backbones
from metabert_tf import classifier
from tests import tiny_models


def _features(ids, mask):
  return dict(input_word_ids=tf.constant(ids), input_mask=tf.constant(mask),
              input_type_ids=tf.zeros_like(tf.constant(ids)))


def test_mean_pooling_matches_sentence_transformers_reference(minilm_dir, shared_dir):
  ref = np.load(shared_dir / "fixtures/minilm_l6_reference.npz")
  backbone = backbones.load_backbone("minilm-l6", dropout=False)
  assert backbone.pooling == "mean"
  model = classifier.Classifier(backbone.encoder, 2, pooling="mean").build_all()
  captured = {}
  model.head.call = lambda x: captured.setdefault("pooled", x) @ tf.zeros([384, 2])
  model(dict(input_word_ids=ref["input_ids"], input_mask=ref["input_mask"],
             input_type_ids=ref["segment_ids"]))
  np.testing.assert_allclose(captured["pooled"].numpy(), ref["mean_pooled"], atol=5e-4)


def test_mean_pooling_ignores_padding_and_pooler_differs(tiny_google_dir):
  backbone = backbones.load_backbone(tiny_google_dir, dropout=False)
  assert backbone.pooling == "pooler"  # Google BERT: the [CLS] pooler
  mean = classifier.Classifier(backbone.encoder, 2, pooling="mean").build_all()
  pooler = classifier.Classifier(backbone.encoder, 2, pooling="pooler").build_all()
  pooler.head.set_weights(mean.head.get_weights())
  short = _features([[2, 7, 8, 3]], [[1, 1, 1, 1]])
  padded = _features([[2, 7, 8, 3, 0, 0]], [[1, 1, 1, 1, 0, 0]])
  np.testing.assert_allclose(mean(short).numpy(), mean(padded).numpy(), atol=1e-5)
  assert np.abs(mean(short).numpy() - pooler(short).numpy()).max() > 1e-4
  with pytest.raises(ValueError, match="pooling"):
    classifier.Classifier(backbone.encoder, 2, pooling="max")


def test_sentence_transformers_export_defaults_to_mean(tmp_path):
  directory = tiny_models.write_hf_dir(str(tmp_path / "st"))
  assert backbones.describe_backbone(directory).pooling == "pooler"
  open(os.path.join(directory, "modules.json"), "w").write("[]")
  assert backbones.describe_backbone(directory).pooling == "mean"
