"""BERT encoders from Model Garden, with weights from Google, Hugging Face or our checkpoints.

`load_backbone(spec)` accepts what `--bert_model` accepts:
  * the name of a bundled model (`minilm-l6`, the default), fetched into the model cache;
  * a Google BERT TF1 directory: bert_config.json, bert_model.ckpt.*, vocab.txt;
  * a Hugging Face BERT directory: config.json, model.safetensors, vocab.txt;
  * a checkpoint written by this toolkit (a prefix like `out/ckpt/meta.epoch-1.step-50`, or
    a directory holding such checkpoints: the newest is used). It records its config,
    vocabulary, casing and label map, so nothing else is needed.

Weights are mapped by one table (`_weight_table`): each Model Garden variable gets its TF1
name, its Hugging Face name and whether the HF tensor is a transposed Linear weight. The q/k/v
and attention-output kernels are then reshaped to Model Garden's per-head layout
([H,H] -> [H,A,H/A] and [A,H/A,H]), as `tf1_bert_checkpoint_converter_lib` does.
"""
import dataclasses
import json
import os
import re
from typing import Optional

from absl import logging
import numpy as np
import tensorflow as tf
import tf_keras
from official.nlp.modeling import networks

from metabert_tf import bert_config as bert_config_lib
from metabert_tf import checkpoints
from metabert_tf import fast_dropout
from metabert_tf import model_cache
from metabert_tf import tokenization

ConfigError = bert_config_lib.ConfigError


@dataclasses.dataclass
class BackboneSource:
  """What `--bert_model` points at, read without building the encoder (vocab, case, config)."""
  name: str
  kind: str            # "huggingface", "google" or "toolkit"
  weights: str         # safetensors file, TF1 checkpoint prefix or our checkpoint prefix
  config: bert_config_lib.BertConfig
  vocab: list
  lower_case: bool
  label_list: Optional[list] = None
  pooling: str = "pooler"  # the sentence representation the model was trained with

  def input_encoder(self, max_seq_length):
    self.check_max_seq_length(max_seq_length)
    return tokenization.BertInputEncoder(self.vocab, self.lower_case, max_seq_length)

  def check_max_seq_length(self, max_seq_length):
    if max_seq_length < tokenization.MIN_SEQ_LENGTH:
      raise ConfigError(f"--max_seq_length must be at least {tokenization.MIN_SEQ_LENGTH} "
                        f"([CLS] a [SEP] b [SEP] with a few tokens each), got {max_seq_length}")
    if max_seq_length > self.config.max_position_embeddings:
      raise ConfigError(f"max_seq_length {max_seq_length} exceeds the model's "
                        f"max_position_embeddings {self.config.max_position_embeddings}")

  @property
  def checkpoint_prefix(self):
    """Our own checkpoints also hold a classifier head (and its label list)."""
    return self.weights if self.kind == "toolkit" else None


@dataclasses.dataclass
class Backbone(BackboneSource):
  """A BackboneSource with its Model Garden encoder built and its weights loaded."""
  encoder: Optional[networks.BertEncoderV2] = None


def build_encoder(config: bert_config_lib.BertConfig, dropout=True):
  """A Model Garden BertEncoderV2 shaped exactly like `config` (type_vocab_size included)."""
  encoder = networks.BertEncoderV2(
      vocab_size=config.vocab_size,
      hidden_size=config.hidden_size,
      num_layers=config.num_hidden_layers,
      num_attention_heads=config.num_attention_heads,
      max_sequence_length=config.max_position_embeddings,
      type_vocab_size=config.type_vocab_size,
      inner_dim=config.intermediate_size,
      inner_activation=config.activation,
      output_dropout=config.hidden_dropout_prob if dropout else 0.0,
      attention_dropout=config.attention_probs_dropout_prob if dropout else 0.0,
      initializer=tf_keras.initializers.TruncatedNormal(stddev=config.initializer_range))
  dummy = tf.zeros([1, 2], tf.int32)
  encoder(dict(input_word_ids=dummy, input_mask=tf.ones_like(dummy), input_type_ids=dummy))
  fast_dropout.install(encoder)
  return encoder


def _weight_table(encoder, num_layers):
  """[(variable, tf1_name, hf_name, hf_is_linear_weight)] for every encoder variable."""
  by_name = {re.sub(r"^[^/]*/|:0$", "", v.name): v for v in encoder.variables}
  rows = [
      ("word_embeddings/embeddings", "bert/embeddings/word_embeddings",
       "embeddings.word_embeddings.weight", False),
      ("position_embedding/embeddings", "bert/embeddings/position_embeddings",
       "embeddings.position_embeddings.weight", False),
      ("type_embeddings/embeddings", "bert/embeddings/token_type_embeddings",
       "embeddings.token_type_embeddings.weight", False),
      ("embeddings/layer_norm/gamma", "bert/embeddings/LayerNorm/gamma",
       "embeddings.LayerNorm.weight", False),
      ("embeddings/layer_norm/beta", "bert/embeddings/LayerNorm/beta",
       "embeddings.LayerNorm.bias", False),
      ("pooler_transform/kernel", "bert/pooler/dense/kernel", "pooler.dense.weight", True),
      ("pooler_transform/bias", "bert/pooler/dense/bias", "pooler.dense.bias", False),
  ]
  per_layer = [  # (Model Garden, TF1, Hugging Face) sub-names of one transformer layer
      ("self_attention/query", "attention/self/query", "attention.self.query"),
      ("self_attention/key", "attention/self/key", "attention.self.key"),
      ("self_attention/value", "attention/self/value", "attention.self.value"),
      ("self_attention/attention_output", "attention/output/dense", "attention.output.dense"),
      ("intermediate", "intermediate/dense", "intermediate.dense"),
      ("output", "output/dense", "output.dense"),
  ]
  norms = [("self_attention_layer_norm", "attention/output/LayerNorm", "attention.output.LayerNorm"),
           ("output_layer_norm", "output/LayerNorm", "output.LayerNorm")]
  for i in range(num_layers):
    mg, t1, hf = f"transformer/layer_{i}/", f"bert/encoder/layer_{i}/", f"encoder.layer.{i}."
    for m, t, h in per_layer:
      rows.append((mg + m + "/kernel", t1 + t + "/kernel", hf + h + ".weight", True))
      rows.append((mg + m + "/bias", t1 + t + "/bias", hf + h + ".bias", False))
    for m, t, h in norms:
      rows.append((mg + m + "/gamma", t1 + t + "/gamma", hf + h + ".weight", False))
      rows.append((mg + m + "/beta", t1 + t + "/beta", hf + h + ".bias", False))
  missing = sorted(set(by_name) - {r[0] for r in rows})
  if missing:
    raise AssertionError(f"weight table does not cover encoder variables {missing}")
  return [(by_name[mg], t1, hf, linear) for mg, t1, hf, linear in rows]


def _source_shape(variable):
  """The TF1 shape of a variable: per-head kernels/biases are stored flat ([H,H], [H])."""
  shape = variable.shape.as_list()
  if len(shape) == 3 and "attention_output" in variable.name:
    return [shape[0] * shape[1], shape[2]]
  if len(shape) == 3:
    return [shape[0], shape[1] * shape[2]]
  if len(shape) == 2 and "self_attention/" in variable.name and "bias" in variable.name:
    return [shape[0] * shape[1]]
  return shape


def _assign(variable, value, source_name, source, transposed=False):
  """Assigns a TF1-layout value; `transposed` says the file holds its transpose (HF Linear)."""
  value = np.asarray(value)
  want = _source_shape(variable)
  if list(value.shape) != want:
    has, want = (value.shape[::-1], want[::-1]) if transposed else (value.shape, want)
    raise ConfigError(f"{source}: weight {source_name} has shape {list(has)}, but the config "
                      f"needs {list(want)}")
  variable.assign(value.reshape(variable.shape).astype(variable.dtype.as_numpy_dtype))


def load_google_checkpoint(encoder, ckpt_prefix, num_layers):
  with checkpoints.reading_weights(ckpt_prefix):
    reader = tf.train.load_checkpoint(ckpt_prefix)
    available = reader.get_variable_to_shape_map()
    for variable, tf1_name, _, _ in _weight_table(encoder, num_layers):
      if tf1_name not in available:
        raise ConfigError(f"{ckpt_prefix}: checkpoint has no variable {tf1_name}")
      _assign(variable, reader.get_tensor(tf1_name), tf1_name, ckpt_prefix)


def load_huggingface_safetensors(encoder, path, num_layers):
  import safetensors
  from safetensors.numpy import load_file
  with checkpoints.reading_weights(path, safetensors.SafetensorError):
    tensors = load_file(path)
  prefix = "bert." if any(k.startswith("bert.") for k in tensors) else ""
  # Old HF checkpoints name LayerNorm parameters gamma/beta.
  tensors = {re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight",
                    re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", k)): v for k, v in tensors.items()}
  for variable, _, hf_name, linear in _weight_table(encoder, num_layers):
    name = prefix + hf_name
    if name not in tensors:
      raise ConfigError(f"{path}: no tensor {name}")
    value = tensors[name].T if linear else tensors[name]
    _assign(variable, value, name, path, transposed=linear)


def _read_vocab_checked(path, config, source):
  vocab = bert_config_lib.read_vocab(path)
  if len(vocab) != config.vocab_size:
    raise ConfigError(f"{path}: vocab has {len(vocab)} tokens but {source} says "
                      f"vocab_size {config.vocab_size}")
  return vocab


def _require(directory, *names):
  for name in names:
    if not os.path.exists(os.path.join(directory, name)):
      raise ConfigError(f"{directory}: missing {name}")


def _google_ckpt_prefix(directory):
  for name in ("bert_model.ckpt", "model.ckpt"):
    if os.path.exists(os.path.join(directory, name + ".index")):
      return os.path.join(directory, name)
  latest = tf.train.latest_checkpoint(directory)
  if latest is None:
    raise ConfigError(f"{directory}: missing bert_model.ckpt.index (a Google BERT checkpoint)")
  return latest


def describe_backbone(spec=model_cache.DEFAULT_MODEL, do_lower_case=None):
  """Resolves a `--bert_model` value (see module docstring) without loading weights."""
  if spec in model_cache.BUNDLED_MODELS:
    source = _describe_directory(model_cache.bundled_model_dir(spec), do_lower_case, spec)
    source.pooling = model_cache.BUNDLED_MODELS[spec].get("pooling", "pooler")
  elif checkpoints.is_toolkit_checkpoint(spec):
    prefix = checkpoints.resolve_prefix(spec)
    meta = checkpoints.read_metadata(prefix)
    lower = meta["lower_case"] if do_lower_case is None else do_lower_case
    source = BackboneSource(prefix, "toolkit", prefix, bert_config_lib.BertConfig(
        **meta["bert_config"]), meta["vocab"], lower, meta.get("label_list"),
        meta.get("pooling", "pooler"))
  elif not os.path.exists(spec) and not os.path.exists(spec + ".index"):
    raise ConfigError(f"--bert_model {spec!r}: neither a bundled model "
                      f"({', '.join(model_cache.BUNDLED_MODELS)}) nor an existing path")
  elif not os.path.isdir(spec):
    raise ConfigError(f"--bert_model {spec!r}: not a model directory or a metabert-tf checkpoint")
  else:
    source = _describe_directory(spec, do_lower_case, spec)
  tokenization.check_case_matches_vocab(source.vocab, source.lower_case, source.name)
  return source


def _describe_directory(directory, do_lower_case, name):
  if os.path.exists(os.path.join(directory, "config.json")):  # Hugging Face layout
    _require(directory, "model.safetensors", "vocab.txt")
    config = bert_config_lib.BertConfig.from_json_file(
        os.path.join(directory, "config.json"), flavor="huggingface")
    vocab = _read_vocab_checked(os.path.join(directory, "vocab.txt"), config, "config.json")
    lower = _huggingface_lower_case(directory, vocab) if do_lower_case is None else do_lower_case
    # sentence-transformers exports (modules.json) were trained with mean pooling.
    pooling = "mean" if os.path.exists(os.path.join(directory, "modules.json")) else "pooler"
    return BackboneSource(name, "huggingface", os.path.join(directory, "model.safetensors"),
                          config, vocab, lower, pooling=pooling)
  if os.path.exists(os.path.join(directory, "bert_config.json")):  # Google layout
    _require(directory, "vocab.txt")
    config = bert_config_lib.BertConfig.from_json_file(
        os.path.join(directory, "bert_config.json"), flavor="google")
    vocab = _read_vocab_checked(os.path.join(directory, "vocab.txt"), config, "bert_config.json")
    lower = (not tokenization.vocab_is_cased(vocab)) if do_lower_case is None else do_lower_case
    return BackboneSource(name, "google", _google_ckpt_prefix(directory), config, vocab, lower)
  raise ConfigError(f"{directory}: no config.json (Hugging Face) or bert_config.json "
                    "(Google BERT) and no metabert-tf checkpoint")


def check_readable(spec, do_lower_case=None, max_seq_length=None):
  """Reads every weight of `spec` into a throw-away encoder (and checks max_seq_length), so a
  model that cannot be read fails before an entry point creates its output directory. Returns
  the BackboneSource."""
  source = describe_backbone(spec, do_lower_case)
  if max_seq_length is not None:
    source.check_max_seq_length(max_seq_length)
  load_backbone(spec, do_lower_case, dropout=False)
  return source


def load_backbone(spec=model_cache.DEFAULT_MODEL, do_lower_case=None, dropout=True):
  """Resolves a `--bert_model` value into a Backbone with its weights loaded."""
  source = describe_backbone(spec, do_lower_case)
  config = source.config
  encoder = build_encoder(config, dropout)
  if source.kind == "huggingface":
    load_huggingface_safetensors(encoder, source.weights, config.num_hidden_layers)
  elif source.kind == "google":
    load_google_checkpoint(encoder, source.weights, config.num_hidden_layers)
  else:
    with checkpoints.reading_weights(source.weights):
      status = tf.train.Checkpoint(encoder=encoder).read(source.weights)
      status.expect_partial()
      status.assert_existing_objects_matched()
  logging.info("Loaded %s (%s): %d layers, hidden %d, vocab %d, lower_case=%s, labels %s",
               source.name, source.kind, config.num_hidden_layers, config.hidden_size,
               config.vocab_size, source.lower_case, source.label_list)
  return Backbone(**{f.name: getattr(source, f.name) for f in dataclasses.fields(source)},
                  encoder=encoder)


def _huggingface_lower_case(directory, vocab):
  path = os.path.join(directory, "tokenizer_config.json")
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      value = json.load(f).get("do_lower_case")
    if value is not None:
      return bool(value)
  return not tokenization.vocab_is_cased(vocab)
