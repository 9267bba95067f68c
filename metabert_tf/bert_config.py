"""BERT hyper-parameters read from Google's `bert_config.json` or Hugging Face's `config.json`.

The same file name/keys mean different activations: Google BERT's "gelu" is the tanh
approximation, Hugging Face's "gelu" is the exact erf GELU ("gelu_new" is the approximation).
We store the resolved choice explicitly as `gelu_exact` / `gelu_tanh` so a config never
changes meaning when it travels.
"""
import dataclasses
import json
import os

import tensorflow as tf

from metabert_tf.errors import ConfigError  # noqa: F401  (raised here; importable from here)


def _gelu(approximate):
  def gelu(x):
    # In float32 even under mixed bfloat16: bf16 element-wise maths is slow on CPU, and GELU
    # (erf, exp and their gradient) was ~10% of a bf16 step; the casts cost less than that.
    return tf.cast(tf.nn.gelu(tf.cast(x, tf.float32), approximate=approximate), x.dtype)
  return gelu


_ACTIVATIONS = {
    "gelu_exact": _gelu(approximate=False),
    "gelu_tanh": _gelu(approximate=True),
    "relu": tf.nn.relu,
}


@dataclasses.dataclass(frozen=True)
class BertConfig:
  vocab_size: int
  hidden_size: int = 768
  num_hidden_layers: int = 12
  num_attention_heads: int = 12
  intermediate_size: int = 3072
  hidden_act: str = "gelu_exact"
  hidden_dropout_prob: float = 0.1
  attention_probs_dropout_prob: float = 0.1
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  initializer_range: float = 0.02

  def __post_init__(self):
    if self.hidden_act not in _ACTIVATIONS:
      raise ConfigError(f"hidden_act {self.hidden_act!r} is not one of {sorted(_ACTIVATIONS)}")
    if self.hidden_size % self.num_attention_heads:
      raise ConfigError(f"hidden_size {self.hidden_size} is not a multiple of "
                        f"num_attention_heads {self.num_attention_heads}")

  @property
  def activation(self):
    return _ACTIVATIONS[self.hidden_act]

  def to_json(self):
    return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

  @classmethod
  def from_dict(cls, raw, source, flavor):
    """`flavor` is "google" or "huggingface"; it decides what "gelu" means."""
    act = raw.get("hidden_act", "gelu")
    if act == "gelu":
      act = "gelu_tanh" if flavor == "google" else "gelu_exact"
    elif act in ("gelu_new", "gelu_pytorch_tanh"):
      act = "gelu_tanh"
    fields = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in raw.items() if k in fields}
    values["hidden_act"] = act
    if "vocab_size" not in values:
      raise ConfigError(f"{source}: no vocab_size")
    if raw.get("model_type", "bert") != "bert":
      raise ConfigError(f"{source}: model_type {raw['model_type']!r} is not a BERT model")
    try:
      return cls(**values)
    except (TypeError, ConfigError) as e:
      raise ConfigError(f"{source}: {e}") from None

  @classmethod
  def from_json_file(cls, path, flavor):
    try:
      with open(path, encoding="utf-8") as f:
        raw = json.load(f)
    except FileNotFoundError:
      raise ConfigError(f"{path}: file not found") from None
    except json.JSONDecodeError as e:
      raise ConfigError(f"{path}: not valid JSON ({e})") from None
    return cls.from_dict(raw, path, flavor)


def read_vocab(path):
  """Reads a WordPiece vocab file: one token per line, the line number is the id."""
  if not os.path.isfile(path):
    raise ConfigError(f"{path}: vocab file not found")
  with open(path, encoding="utf-8") as f:
    vocab = [line.rstrip("\n").rstrip("\r") for line in f]
  while vocab and vocab[-1] == "":
    vocab.pop()
  for special in ("[CLS]", "[SEP]", "[UNK]", "[PAD]"):
    if special not in vocab:
      raise ConfigError(f"{path}: vocab has no {special} token")
  return vocab
