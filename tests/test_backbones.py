"""Backbone loading: the exact MiniLM port, TF1/HF weight mapping, our own checkpoints.

Bad models and their errors: test_backbone_errors.py."""
import dataclasses
import math
import os
import re
from unittest import mock

import numpy as np
import pytest
import tensorflow as tf

from metabert_tf import backbones
from metabert_tf import checkpoints
from metabert_tf import classifier
from tests import tiny_models

CONFIG = tiny_models.CONFIG
H, A = CONFIG["hidden_size"], CONFIG["num_attention_heads"]
D = H // A


def _weights(seed=7):
  """Seeded TF1 weights, with LayerNorm gammas near 1 and wide FFN kernels, so activations are
  O(1) and tanh-GELU vs exact GELU shows in the outputs."""
  weights = tiny_models.random_google_weights(seed)
  for name in weights:
    if name.endswith("/gamma"):
      weights[name] = weights[name] + np.float32(1.0)
    elif name.endswith("intermediate/dense/kernel"):
      weights[name] = weights[name] * np.float32(5.0)
  return weights


@pytest.fixture(scope="module")
def weights():
  return _weights()


@pytest.fixture(scope="module")
def google_dir(tmp_path_factory, weights):
  return tiny_models.write_google_dir(str(tmp_path_factory.mktemp("google")), weights)


def _variables(encoder):
  """Model Garden variable name (without the model's own scope) -> numpy value."""
  return {re.sub(r"^[^/]*/|:0$", "", v.name): v.numpy() for v in encoder.variables}


# TF1 name -> (Model Garden name, reshape of the TF1 value), written out independently of
# backbones._weight_table.
_LAYER_MAP = {
    "attention/self/query/kernel": ("self_attention/query/kernel", [H, A, D]),
    "attention/self/query/bias": ("self_attention/query/bias", [A, D]),
    "attention/self/key/kernel": ("self_attention/key/kernel", [H, A, D]),
    "attention/self/key/bias": ("self_attention/key/bias", [A, D]),
    "attention/self/value/kernel": ("self_attention/value/kernel", [H, A, D]),
    "attention/self/value/bias": ("self_attention/value/bias", [A, D]),
    "attention/output/dense/kernel": ("self_attention/attention_output/kernel", [A, D, H]),
    "attention/output/dense/bias": ("self_attention/attention_output/bias", None),
    "attention/output/LayerNorm/gamma": ("self_attention_layer_norm/gamma", None),
    "attention/output/LayerNorm/beta": ("self_attention_layer_norm/beta", None),
    "intermediate/dense/kernel": ("intermediate/kernel", None),
    "intermediate/dense/bias": ("intermediate/bias", None),
    "output/dense/kernel": ("output/kernel", None),
    "output/dense/bias": ("output/bias", None),
    "output/LayerNorm/gamma": ("output_layer_norm/gamma", None),
    "output/LayerNorm/beta": ("output_layer_norm/beta", None),
}
_TOP_MAP = {
    "bert/embeddings/word_embeddings": "word_embeddings/embeddings",
    "bert/embeddings/position_embeddings": "position_embedding/embeddings",
    "bert/embeddings/token_type_embeddings": "type_embeddings/embeddings",
    "bert/embeddings/LayerNorm/gamma": "embeddings/layer_norm/gamma",
    "bert/embeddings/LayerNorm/beta": "embeddings/layer_norm/beta",
    "bert/pooler/dense/kernel": "pooler_transform/kernel",
    "bert/pooler/dense/bias": "pooler_transform/bias",
}


def _expected_model_garden(tf1_name, value):
  if tf1_name in _TOP_MAP:
    return _TOP_MAP[tf1_name], value
  match = re.fullmatch(r"bert/encoder/layer_(\d+)/(.*)", tf1_name)
  mg, shape = _LAYER_MAP[match.group(2)]
  expected = value if shape is None else value.reshape(shape)
  return f"transformer/layer_{match.group(1)}/{mg}", expected


def _assert_weights_loaded(encoder, weights):
  variables = _variables(encoder)
  seen = set()
  for tf1_name, value in weights.items():
    mg_name, expected = _expected_model_garden(tf1_name, value)
    assert mg_name in variables, (tf1_name, mg_name, sorted(variables))
    assert variables[mg_name].shape == expected.shape, (tf1_name, variables[mg_name].shape)
    np.testing.assert_array_equal(variables[mg_name], expected, err_msg=tf1_name)
    seen.add(mg_name)
  assert seen == set(variables), sorted(set(variables) - seen)  # every variable set exactly once
  assert len(weights) == len(variables)


# -- a small independent numpy BERT ---------------------------------------------------------------

def _gelu_exact(x):
  return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def _gelu_tanh(x):
  return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def _layer_norm(x, gamma, beta, eps=1e-12):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * gamma + beta


def _numpy_bert(w, ids, mask, types, gelu):
  w = {k: v.astype(np.float64) for k, v in w.items()}
  batch, seq = ids.shape
  x = (w["bert/embeddings/word_embeddings"][ids] + w["bert/embeddings/position_embeddings"][:seq]
       + w["bert/embeddings/token_type_embeddings"][types])
  x = _layer_norm(x, w["bert/embeddings/LayerNorm/gamma"], w["bert/embeddings/LayerNorm/beta"])
  attention_bias = (1.0 - mask[:, None, None, :]) * -1e9
  for layer in range(CONFIG["num_hidden_layers"]):
    p = f"bert/encoder/layer_{layer}/"
    def heads(name):
      y = x @ w[p + f"attention/self/{name}/kernel"] + w[p + f"attention/self/{name}/bias"]
      return y.reshape(batch, seq, A, D).transpose(0, 2, 1, 3)
    q, k, v = heads("query"), heads("key"), heads("value")
    scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(D) + attention_bias
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, seq, H)
    attention = (context @ w[p + "attention/output/dense/kernel"]
                 + w[p + "attention/output/dense/bias"])
    x = _layer_norm(x + attention, w[p + "attention/output/LayerNorm/gamma"],
                    w[p + "attention/output/LayerNorm/beta"])
    inner = gelu(x @ w[p + "intermediate/dense/kernel"] + w[p + "intermediate/dense/bias"])
    out = inner @ w[p + "output/dense/kernel"] + w[p + "output/dense/bias"]
    x = _layer_norm(x + out, w[p + "output/LayerNorm/gamma"], w[p + "output/LayerNorm/beta"])
  pooled = np.tanh(x[:, 0] @ w["bert/pooler/dense/kernel"] + w["bert/pooler/dense/bias"])
  return x, pooled


_IDS = np.array([[2, 9, 13, 7, 30, 3, 0, 0], [2, 40, 42, 3, 6, 11, 44, 3]], np.int32)
_MASK = np.array([[1, 1, 1, 1, 1, 1, 0, 0], [1] * 8], np.int32)
_TYPES = np.array([[0] * 8, [0, 0, 0, 0, 1, 1, 1, 1]], np.int32)


def _run(encoder):
  out = encoder(dict(input_word_ids=_IDS, input_mask=_MASK, input_type_ids=_TYPES), training=False)
  return out["sequence_output"].numpy(), out["pooled_output"].numpy()


def _assert_forward_matches(encoder, weights, gelu, other_gelu):
  sequence, pooled = _run(encoder)
  want_sequence, want_pooled = _numpy_bert(weights, _IDS, _MASK, _TYPES, gelu)
  valid = _MASK.astype(bool)
  assert np.abs(sequence[valid] - want_sequence[valid]).max() < 2e-5  # measured 2e-6
  assert np.abs(pooled - want_pooled).max() < 2e-5
  # The other GELU is measurably off (2.8e-4 with these weights): the check has teeth.
  wrong_sequence, _ = _numpy_bert(weights, _IDS, _MASK, _TYPES, other_gelu)
  assert np.abs(sequence[valid] - wrong_sequence[valid]).max() > 1e-4


# -- (a) the exact MiniLM port --------------------------------------------------------------------

def test_minilm_matches_reference_outputs(shared_dir, minilm_dir):
  reference = np.load(shared_dir / "fixtures" / "minilm_l6_reference.npz")
  backbone = backbones.load_backbone(minilm_dir, dropout=False)
  assert backbone.config.hidden_act == "gelu_exact"
  assert backbone.lower_case is True
  assert (backbone.config.num_hidden_layers, backbone.config.hidden_size) == (6, 384)
  assert len(backbone.vocab) == 30522
  out = backbone.encoder(dict(input_word_ids=reference["input_ids"],
                              input_mask=reference["input_mask"],
                              input_type_ids=reference["segment_ids"]), training=False)
  sequence_diff = np.abs(out["sequence_output"].numpy() - reference["sequence_output"]).max()
  pooled_diff = np.abs(out["pooled_output"].numpy() - reference["pooled_output"]).max()
  assert sequence_diff < 5e-4, sequence_diff
  assert pooled_diff < 5e-4, pooled_diff


# -- (b) Google TF1 checkpoints -------------------------------------------------------------------

def test_google_checkpoint_every_weight_in_place(google_dir, weights):
  backbone = backbones.load_backbone(google_dir, dropout=False)
  assert backbone.config.hidden_act == "gelu_tanh"  # Google BERT's "gelu" is the tanh form
  assert backbone.vocab == tiny_models.VOCAB
  assert backbone.lower_case is True  # uncased vocab, do_lower_case not given
  assert backbone.label_list is None and backbone.checkpoint_prefix is None
  _assert_weights_loaded(backbone.encoder, weights)
  _assert_forward_matches(backbone.encoder, weights, _gelu_tanh, _gelu_exact)


def test_google_checkpoint_with_model_ckpt_name(tmp_path, weights):
  directory = tiny_models.write_google_dir(str(tmp_path / "g"), weights)
  for name in os.listdir(directory):
    if name.startswith("bert_model.ckpt"):
      os.rename(os.path.join(directory, name),
                os.path.join(directory, name.replace("bert_model.ckpt", "model.ckpt")))
  _assert_weights_loaded(backbones.load_backbone(directory).encoder, weights)


# -- (c) Hugging Face safetensors -----------------------------------------------------------------

@pytest.mark.parametrize("prefix,old_norm_names", [("", False), ("bert.", False), ("bert.", True)])
def test_huggingface_dir_loads_same_weights(tmp_path, weights, google_dir, prefix, old_norm_names):
  directory = tiny_models.write_hf_dir(str(tmp_path / "hf"), weights, prefix=prefix)
  if old_norm_names:  # old HF checkpoints call LayerNorm parameters gamma/beta
    from safetensors.numpy import load_file, save_file
    path = os.path.join(directory, "model.safetensors")
    tensors = load_file(path)
    renamed = {re.sub(r"LayerNorm\.weight$", "LayerNorm.gamma",
                      re.sub(r"LayerNorm\.bias$", "LayerNorm.beta", k)): v
               for k, v in tensors.items()}
    assert any(k.endswith("LayerNorm.gamma") for k in renamed)
    save_file(renamed, path)
  hf = backbones.load_backbone(directory, dropout=False)
  assert hf.config.hidden_act == "gelu_exact"  # HF's "gelu" is the exact erf GELU
  _assert_weights_loaded(hf.encoder, weights)
  google = backbones.load_backbone(google_dir, dropout=False)
  for (name, a), (_, b) in zip(sorted(_variables(hf.encoder).items()),
                               sorted(_variables(google.encoder).items())):
    np.testing.assert_array_equal(a, b, err_msg=name)
  assert hf.config == dataclasses.replace(google.config, hidden_act="gelu_exact")
  _assert_forward_matches(hf.encoder, weights, _gelu_exact, _gelu_tanh)


def test_huggingface_lower_case_from_tokenizer_config(tmp_path, weights):
  directory = tiny_models.write_hf_dir(str(tmp_path / "hf"), weights, lower_case=False)
  with mock.patch("absl.logging.warning") as warning:
    backbone = backbones.load_backbone(directory)
  assert backbone.lower_case is False
  assert warning.call_count == 1 and "uncased vocabulary" in warning.call_args[0][0]
  os.remove(os.path.join(directory, "tokenizer_config.json"))
  assert backbones.load_backbone(directory).lower_case is True  # guessed from the vocab
  assert backbones.load_backbone(directory, do_lower_case=False).lower_case is False


def test_huggingface_gelu_new_is_tanh(tmp_path, weights):
  directory = tiny_models.write_hf_dir(str(tmp_path / "hf"), weights,
                                       config={**CONFIG, "hidden_act": "gelu_new"})
  assert backbones.load_backbone(directory).config.hidden_act == "gelu_tanh"


# -- (d) clear errors -----------------------------------------------------------------------------

# -- (f) our own checkpoints ----------------------------------------------------------------------

def test_toolkit_checkpoint_round_trip(tmp_path, google_dir):
  source = backbones.load_backbone(google_dir)
  model = classifier.Classifier(source.encoder, num_labels=3).build_all()
  labels = ["negative", "neutral", "positive"]
  metadata = checkpoints.metadata_variable(source.config, source.vocab, source.lower_case,
                                           labels, max_seq_length=16)
  checkpoint = tf.train.Checkpoint(encoder=model.encoder, head=model.head, metadata=metadata)
  first_prefix = checkpoint.write(str(tmp_path / "single" / "meta.epoch-1.step-5"))
  first = _variables(model.encoder)
  first_head = model.head.kernel.numpy()

  # A directory of checkpoints: the newest one is used.
  manager = tf.train.CheckpointManager(checkpoint, str(tmp_path / "out" / "ckpt"), max_to_keep=3,
                                       checkpoint_name="finetune")
  manager.save(checkpoint_number=1)
  for v in model.encoder.variables + model.head.variables:
    v.assign_add(tf.ones_like(v))
  newest_prefix = manager.save(checkpoint_number=2)
  newest = _variables(model.encoder)

  assert checkpoints.is_toolkit_checkpoint(first_prefix)
  assert not checkpoints.is_toolkit_checkpoint(os.path.join(google_dir, "bert_model.ckpt"))
  loaded = backbones.load_backbone(first_prefix)
  assert loaded.vocab == tiny_models.VOCAB and loaded.lower_case is True
  assert loaded.label_list == labels
  assert loaded.config == source.config
  assert loaded.checkpoint_prefix == first_prefix and loaded.name == first_prefix and loaded.kind == "toolkit"
  got = _variables(loaded.encoder)
  assert sorted(got) == sorted(first)
  for name in first:
    np.testing.assert_array_equal(got[name], first[name], err_msg=name)
  assert checkpoints.read_metadata(first_prefix)["max_seq_length"] == 16

  for spec in (str(tmp_path / "out"), str(tmp_path / "out" / "ckpt")):
    loaded = backbones.load_backbone(spec)
    assert loaded.checkpoint_prefix == newest_prefix, spec
    got = _variables(loaded.encoder)
    for name in newest:
      np.testing.assert_array_equal(got[name], newest[name], err_msg=name)
    assert not np.array_equal(got["pooler_transform/bias"], first["pooler_transform/bias"])

  # The head is restorable from the prefix the backbone reports.
  fresh = classifier.Classifier(backbones.build_encoder(source.config), num_labels=3).build_all()
  tf.train.Checkpoint(head=fresh.head).read(first_prefix).expect_partial()
  np.testing.assert_array_equal(fresh.head.kernel.numpy(), first_head)

  # do_lower_case overrides the recorded casing (and warns: the vocab is uncased).
  with mock.patch("absl.logging.warning") as warning:
    assert backbones.load_backbone(first_prefix, do_lower_case=False).lower_case is False
  assert warning.call_count == 1
