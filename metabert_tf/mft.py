"""Meta Fine-Tuning (Wang et al., EMNLP 2020): one model trained on all domains, weighted
towards typical examples, while its layers are pushed to hide the domain. Then the extra layers
are dropped and the model is fine-tuned per domain as usual (run_finetune.py --bert_model).

With t_i the typicality of example i (typicality.py, computed once from the starting model),
the loss of a batch B is

  L = 1/|B| sum_i t_i CE(W h_i + b, y_i)                                  (L_TLC)
    + lambda * 1/|B| sum_i t_i * 1/|S| sum_{l in S} CE(D_l(m_{i,l} + E[d_i]), z_{i,l})   (L_SDC)

h_i: the classifier's sentence features; S: the corruption layers (1-based; default three
evenly spaced layers ending at the top); m_{i,l}: the mean of layer l's token vectors without
[CLS] and padding; E[d_i]: a learned embedding of example i's TRUE domain; D_l: a domain
classifier per layer; z_{.,l}: the batch's domain labels shuffled, a fresh shuffle per layer
and step. Learning to predict a shuffled domain from features that already carry the true one
teaches the encoder nothing about the domain: the loss pushes layer l towards features from
which the domain cannot be told (domain corruption).

Variants: full; dc (t_i = 1: domain corruption only); tw (lambda = 0: typicality weighting only).
Where Alibaba's released code differs (../shared/NOTES.md section 4), each difference is an
option of MFTConfig: typicality_formula="easytransfer", shared_domain_classifier (one D for
every layer), layer_mean="all" (every position, [CLS] and padding included) and
weight_corruption=False (L_SDC without t_i).
"""
import dataclasses
import hashlib
import json
import os
from typing import List, Optional

from absl import logging
import numpy as np
import tensorflow as tf
import tf_keras

from metabert_tf import classifier
from metabert_tf import evaluation
from metabert_tf import io_utils
from metabert_tf import objectives
from metabert_tf import typicality
from metabert_tf.errors import ConfigError

VARIANTS = ("full", "dc", "tw")
LAYER_MEANS = ("tokens", "all")


@dataclasses.dataclass
class MFTConfig:
  variant: str = "full"
  alpha: float = 0.5                  # weight of the own-domain term of t_i
  num_prototypes: int = 1             # > 1: k-means prototypes per (domain, class)
  corruption_weight: float = 0.1      # lambda
  corruption_layers: Optional[List[int]] = None  # 1-based; None: default_layers(L)
  typicality_formula: str = "paper"   # or "easytransfer"
  shared_domain_classifier: bool = False
  layer_mean: str = "tokens"          # or "all"
  weight_corruption: bool = True
  seed: int = 0

  @property
  def uses_typicality(self):
    return self.variant in ("full", "tw")

  @property
  def uses_corruption(self):
    return self.variant in ("full", "dc") and self.corruption_weight > 0


def default_layers(num_layers):
  """Three evenly spaced layers ending at the top, 1-based: {2,4,6} of 6, {4,8,12} of 12."""
  return sorted({max(1, round(num_layers * i / 3)) for i in (1, 2, 3)})


# MFTConfig's fields by the command-line flag that sets each (mft_flags.py).
FLAG_NAMES = {"variant": "mft_variant", "alpha": "mft_alpha", "num_prototypes": "mft_prototypes",
              "corruption_weight": "mft_lambda", "corruption_layers": "corruption_layers",
              "typicality_formula": "mft_typicality",
              "shared_domain_classifier": "mft_shared_domain_classifier",
              "layer_mean": "mft_layer_mean", "weight_corruption": "mft_weight_corruption"}


def _error(message, field):
  return ConfigError(message, field=field, flag=FLAG_NAMES.get(field))


def check_config(config, num_layers):
  """A ConfigError naming the MFTConfig field (and its flag) of a bad setting."""
  if config.variant not in VARIANTS:
    raise _error(f"must be one of {VARIANTS}, got {config.variant!r}", "variant")
  if config.layer_mean not in LAYER_MEANS:
    raise _error(f"must be one of {LAYER_MEANS}, got {config.layer_mean!r}", "layer_mean")
  if config.typicality_formula not in typicality.FORMULAS:
    raise _error(f"must be one of {typicality.FORMULAS}", "typicality_formula")
  if not 0.0 <= config.alpha <= 1.0:
    raise _error(f"must be in [0, 1], got {config.alpha}", "alpha")
  if config.num_prototypes < 1:
    raise _error(f"must be >= 1, got {config.num_prototypes}", "num_prototypes")
  if config.corruption_weight < 0:
    raise _error(f"must be >= 0, got {config.corruption_weight}", "corruption_weight")
  bad = [l for l in config.corruption_layers or [] if not 1 <= l <= num_layers]
  if bad:
    raise _error(f"{bad} are not layers of this {num_layers}-layer "
                 f"model (1-based: 1..{num_layers})", "corruption_layers")


class MFTObjective(objectives.CrossEntropy):
  """The MFT loss (module docstring) as a hook of the supervised trainer."""

  name = "mft"

  def __init__(self, config, num_domains, num_layers):
    check_config(config, num_layers)
    self.config, self.num_domains = config, num_domains
    self.layers = list(config.corruption_layers or default_layers(num_layers))

  def build(self, model):
    hidden = model.encoder.get_config()["hidden_size"]
    init = lambda: tf_keras.initializers.TruncatedNormal(stddev=0.02)  # noqa: E731 (one each)
    self.domain_embedding = tf_keras.layers.Embedding(
        self.num_domains, hidden, embeddings_initializer=init(), name="mft_domain_embedding")
    self.domain_embedding.build([None])
    count = 1 if self.config.shared_domain_classifier else len(self.layers)
    self.domain_classifiers = [tf_keras.layers.Dense(self.num_domains, kernel_initializer=init(),
                                                     name=f"mft_domain_classifier_{j}")
                               for j in range(count)]
    for layer in self.domain_classifiers:
      layer.build([None, hidden])

  def extras(self):
    if not self.config.uses_corruption:
      return {}
    layers = {layer.name: layer for layer in self.domain_classifiers}
    return {"mft_domain_embedding": self.domain_embedding, **layers}

  def prepare_batch(self, batch, step):
    if not self.config.uses_corruption:
      return batch
    step = tf.cast(step, tf.int64)
    batch = dict(batch)
    batch["corrupt_domain_ids"] = tf.stack([
        tf.random.experimental.stateless_shuffle(
            batch["domain_ids"], seed=tf.stack([tf.constant(self.config.seed * 1009 + j, tf.int64),
                                                step]))
        for j in range(len(self.layers))], axis=1)
    return batch

  def per_example_loss(self, model, batch):
    pooled, outputs = model.encode(batch, training=True)
    loss = self.weighted(batch, objectives.cross_entropy(batch["label_ids"],
                                                         model.classify(pooled, training=True)))
    if not self.config.uses_corruption:
      return loss
    return loss + self.config.corruption_weight * self.corruption_loss(batch, outputs)

  def corruption_loss(self, batch, outputs):
    """L_SDC per example: mean over the corruption layers (times t_i with weight_corruption)."""
    mask = batch["input_mask"]
    if self.config.layer_mean == "tokens":  # leave [CLS] (position 0) out with the padding
      mask = mask * tf.concat([tf.zeros_like(mask[:, :1]), tf.ones_like(mask[:, 1:])], axis=1)
    else:
      mask = tf.ones_like(mask)
    true_domain = self.domain_embedding(batch["domain_ids"])
    losses = []
    for j, layer in enumerate(self.layers):
      tokens = outputs["encoder_outputs"][layer - 1]
      features = classifier.masked_mean(tokens, mask) + tf.cast(true_domain, tokens.dtype)
      domain_classifier = self.domain_classifiers[0 if self.config.shared_domain_classifier else j]
      logits = tf.cast(domain_classifier(features), tf.float32)
      losses.append(objectives.cross_entropy(batch["corrupt_domain_ids"][:, j], logits))
    loss = tf.add_n(losses) / len(losses)
    return self.weighted(batch, loss) if self.config.weight_corruption else loss


# ---- the typicality pre-pass ----------------------------------------------------------------

def fingerprint(model, features, config):
  """What the scores depend on: the data, the starting model's weights and the settings."""
  digest = hashlib.sha256()
  for name in ("input_word_ids", "input_mask", "input_type_ids", "label_ids", "domain_ids"):
    digest.update(np.ascontiguousarray(features[name]).tobytes())
  for variable in model.encoder.weights:
    digest.update(variable.numpy().tobytes())
  digest.update(json.dumps([model.pooling, config.alpha, config.num_prototypes,
                            config.typicality_formula, config.seed]).encode())
  return digest.hexdigest()[:32]


def sentence_features(model, batch):
  """The features typicality is computed from: the classifier's pooled sentence vectors."""
  return model.encode(batch, training=False)[0]


def typicality_scores(model, features, config, path, batch_size=64, progress=True):
  """t_i for every example, from the sentence features of `model` (the starting model).

  Written to `path` with a fingerprint of data, model and settings, and read back on resume;
  a file with another fingerprint is an error, never reused."""
  key = fingerprint(model, features, config)
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      saved = json.load(f)
    if saved.get("fingerprint") != key:
      raise ConfigError(f"{path}: typicality scores of other data, another starting model or "
                        "other settings; delete the file or pass --overwrite_output_dir")
    logging.info("Typicality scores reused from %s", path)
    return np.asarray(saved["scores"], np.float32)
  embeddings = evaluation.predict_logits(
      model, features, batch_size, progress, desc="typicality",
      forward=sentence_features)
  scores = typicality.typicality(embeddings, features["label_ids"], features["domain_ids"],
                                 config.alpha, config.num_prototypes, config.typicality_formula,
                                 config.seed)
  # A negative cosine would turn the weight into gradient ascent on that example: floor at 0.
  scores = np.maximum(scores, 0.0)
  io_utils.atomic_write_json(path, {"fingerprint": key, "scores": scores.tolist(),
                                    "config": dataclasses.asdict(config)})
  logging.info("Typicality of %d examples: mean %.4f, min %.4f, max %.4f", len(scores),
               scores.mean(), scores.min(), scores.max())
  return scores
