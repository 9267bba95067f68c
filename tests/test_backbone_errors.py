"""Backbone loading errors: each bad model directory, spec or config gets a one-line message
naming the file and what was expected; casing warnings."""
import os
import shutil
from unittest import mock

import pytest

from metabert_tf import backbones
from tests import tiny_models
from tests.test_backbones import CONFIG
from tests.test_backbones import google_dir  # noqa: F401  (fixture)
from tests.test_backbones import weights  # noqa: F401  (fixture)


def _copy(src, dst):
  shutil.copytree(src, dst)
  return str(dst)


def _load_error(spec, **kwargs):
  with pytest.raises(backbones.ConfigError) as info:
    backbones.load_backbone(spec, **kwargs)
  return str(info.value)


def test_error_missing_vocab(google_dir, tmp_path, weights):
  directory = _copy(google_dir, tmp_path / "g")
  os.remove(os.path.join(directory, "vocab.txt"))
  assert _load_error(directory) == f"{directory}: missing vocab.txt"
  hf = tiny_models.write_hf_dir(str(tmp_path / "hf"), weights)
  os.remove(os.path.join(hf, "vocab.txt"))
  assert _load_error(hf) == f"{hf}: missing vocab.txt"


def test_error_missing_checkpoint(google_dir, tmp_path, weights):
  directory = _copy(google_dir, tmp_path / "g")
  for name in os.listdir(directory):
    if name.startswith("bert_model.ckpt") or name == "checkpoint":
      os.remove(os.path.join(directory, name))
  message = _load_error(directory)
  assert message.startswith(directory) and "missing bert_model.ckpt.index" in message
  hf = tiny_models.write_hf_dir(str(tmp_path / "hf"), weights)
  os.remove(os.path.join(hf, "model.safetensors"))
  assert _load_error(hf) == f"{hf}: missing model.safetensors"


def test_error_vocab_size_mismatch(tmp_path, weights):
  directory = tiny_models.write_google_dir(str(tmp_path / "g"), weights,
                                           vocab=tiny_models.VOCAB[:-1])
  message = _load_error(directory)
  assert message == (f"{os.path.join(directory, 'vocab.txt')}: vocab has 49 tokens but "
                     "bert_config.json says vocab_size 50")
  hf = tiny_models.write_hf_dir(str(tmp_path / "hf"), weights, vocab=tiny_models.VOCAB + ["extra"])
  assert "vocab has 51 tokens but config.json says vocab_size 50" in _load_error(hf)


def test_error_weight_shapes_do_not_fit_config(tmp_path, weights):
  directory = tiny_models.write_google_dir(str(tmp_path / "g"), weights,
                                           config={**CONFIG, "intermediate_size": 40})
  message = _load_error(directory)
  assert message.startswith(os.path.join(directory, "bert_model.ckpt"))
  assert "bert/encoder/layer_0/intermediate/dense/kernel has shape [32, 37]" in message
  assert "the config needs [32, 40]" in message
  hf = tiny_models.write_hf_dir(str(tmp_path / "hf"), weights,
                                config={**CONFIG, "intermediate_size": 40})
  message = _load_error(hf)
  assert message.startswith(os.path.join(hf, "model.safetensors"))
  # Shapes in the file's own (transposed, [out, in]) layout.
  assert "encoder.layer.0.intermediate.dense.weight has shape [37, 32]" in message
  assert "the config needs [40, 32]" in message


def test_error_missing_weight(tmp_path, weights):
  partial = {k: v for k, v in weights.items() if k != "bert/encoder/layer_1/output/dense/bias"}
  directory = tiny_models.write_google_dir(str(tmp_path / "g"), partial)
  message = _load_error(directory)
  assert "checkpoint has no variable bert/encoder/layer_1/output/dense/bias" in message
  hf = tiny_models.write_hf_dir(str(tmp_path / "hf"), partial, prefix="bert.")
  assert "no tensor bert.encoder.layer.1.output.dense.bias" in _load_error(hf)


def test_error_bad_specs(tmp_path):
  missing = str(tmp_path / "no_such_model")
  message = _load_error(missing)
  assert message.startswith(f"--bert_model {missing!r}: neither a bundled model (minilm-l6)")
  assert "nor an existing path" in message
  message = _load_error("minilm-l12")  # not a bundled name
  assert "'minilm-l12'" in message and "minilm-l6" in message
  empty = tmp_path / "empty"
  empty.mkdir()
  assert "no config.json (Hugging Face) or bert_config.json" in _load_error(str(empty))
  a_file = tmp_path / "weights.bin"
  a_file.write_bytes(b"x")
  assert "not a model directory or a metabert-tf checkpoint" in _load_error(str(a_file))


def test_error_bad_config(tmp_path, weights):
  directory = tiny_models.write_google_dir(str(tmp_path / "g"), weights,
                                           config={**CONFIG, "num_attention_heads": 5})
  assert "not a multiple of num_attention_heads 5" in _load_error(directory)


def test_input_encoder_rejects_too_long_and_too_short_sequences(google_dir):
  backbone = backbones.load_backbone(google_dir)
  assert backbone.input_encoder(64).max_seq_length == 64
  with pytest.raises(backbones.ConfigError, match="exceeds the model's max_position_embeddings 64"):
    backbone.input_encoder(65)
  with pytest.raises(backbones.ConfigError, match="--max_seq_length must be at least 8"):
    backbone.input_encoder(7)


def _truncate(path, keep=0.5):
  data = open(path, "rb").read()
  with open(path, "wb") as f:
    f.write(data[:int(len(data) * keep)])


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_error_corrupt_safetensors_names_the_file(tmp_path, weights, damage):
  directory = tiny_models.write_hf_dir(str(tmp_path / "hf"), weights)
  path = os.path.join(directory, "model.safetensors")
  if damage == "truncated":
    _truncate(path)
  else:
    with open(path, "wb") as f:
      f.write(os.urandom(3000))
  message = _load_error(directory)
  assert message.startswith(f"{path}: cannot read the weights, the file is truncated or corrupt")
  assert "SafetensorError" in message


def test_error_truncated_google_checkpoint_names_the_file(google_dir, tmp_path):
  directory = _copy(google_dir, tmp_path / "g")
  _truncate(os.path.join(directory, "bert_model.ckpt.data-00000-of-00001"))
  message = _load_error(directory)
  assert message.startswith(os.path.join(directory, "bert_model.ckpt") + ": cannot read the "
                            "weights, the file is truncated or corrupt"), message


def test_error_truncated_toolkit_checkpoint_names_the_file(google_dir, tmp_path):
  from metabert_tf import checkpoints
  from metabert_tf import classifier
  backbone = backbones.load_backbone(google_dir)
  model = classifier.Classifier(backbone.encoder, 2).build_all()
  metadata = checkpoints.metadata_variable(backbone.config, backbone.vocab, True, ["a", "b"], 16)
  prefix = checkpoints.model_checkpoint(model, metadata).write(str(tmp_path / "ckpt" / "m-1"))
  _truncate(prefix + ".data-00000-of-00001", keep=0.3)
  message = _load_error(prefix)
  assert message.startswith(f"{prefix}: cannot read the weights, the file is truncated"), message


# -- (e) case warnings ----------------------------------------------------------------------------

def test_cased_google_vocab_warns_when_lower_casing(tmp_path, weights):
  cased = tiny_models.VOCAB[:5] + [w.capitalize() for w in tiny_models.WORDS]
  directory = tiny_models.write_google_dir(str(tmp_path / "cased"), weights, vocab=cased)
  with mock.patch("absl.logging.warning") as warning:
    backbone = backbones.load_backbone(directory, do_lower_case=True)
  assert backbone.lower_case is True
  assert warning.call_count == 1
  template, *args = warning.call_args[0]
  assert "has a cased vocabulary" in template and directory in args
  with mock.patch("absl.logging.warning") as warning:
    assert backbones.load_backbone(directory).lower_case is False  # guessed from the vocab
  warning.assert_not_called()
