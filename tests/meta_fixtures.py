"""Builds a MetaTrainer over a tiny BERT and toy multi-domain data, for the meta-learning tests."""
import dataclasses

import tensorflow as tf

from metabert_tf import backbones
from metabert_tf import checkpoints
from metabert_tf import records
from metabert_tf import runtime
from metabert_tf.meta import algorithms
from metabert_tf.meta import engine
from metabert_tf.meta import episodes
from tests import tiny_models

LABELS = ["negative", "positive"]
DOMAINS = ["a", "b", "c"]


def toy_features(backbone, seq_len=16):
  examples = tiny_models.toy_domain_examples(DOMAINS)
  return records.encode(examples, backbone.input_encoder(seq_len), LABELS, DOMAINS)


def make_trainer(model_dir, output_dir, algorithm, strategy=None, labels=LABELS, features=None,
                 test_exclude=None, **overrides):
  runtime.set_seed(0)  # the classifier head's initialisation, as run_meta_train.py does
  strategy = strategy or tf.distribute.get_strategy()
  with strategy.scope():  # meta weights are created under the strategy, as in run_meta_train.py
    backbone = backbones.load_backbone(model_dir, dropout=False)
  fields = dict(episodes=episodes.EpisodeConfig(num_support=4, num_query=2), num_train_task=4,
                num_test_task=0, outer_batch_size=2, inner_batch_size=2, inner_update_step=1,
                inner_update_step_eval=1, epochs=1, dropout=False, progress=False)
  settings = dict(inner_update_lr=0.05, inner_optimizer="sgd", outer_update_lr=0.01)
  # Overrides go to the algorithm's Config where it has the field, else to MetaConfig.
  own = {f.name for f in dataclasses.fields(algorithm.Config)}
  for key, value in overrides.items():
    (settings if key in own else fields)[key] = value
  config = engine.MetaConfig(**fields, algorithm=algorithms.config_from(algorithm.Config, **settings))
  metadata = checkpoints.metadata_variable(backbone.config, backbone.vocab, backbone.lower_case,
                                           labels, 16, pooling="pooler")
  features = toy_features(backbone) if features is None else features
  return engine.MetaTrainer(
      strategy, algorithm.Algorithm(config.algorithm), config, backbone,
      engine.MetaTasks(features, labels, DOMAINS, ["a", "b"], ["c"], test_exclude=test_exclude),
      str(output_dir), metadata, pooling="pooler")


def meta_values(trainer):
  return [v.numpy().copy() for v in trainer.meta_vars]
