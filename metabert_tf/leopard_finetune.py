"""Fine-tuning a LEOPARD / SMLMT / Hybrid-SMLMT checkpoint on a new task, as the original does
(run_classifier_pretrain.py --do_eval with --warp_layers=false):

* the model is the meta-trained encoder and GeneratedSoftmaxHead (its task-feature MLP h and
  softmax generator g), with N class rows;
* the class rows are generated from the first training batch (row c = mean of g over its class-c
  examples), then trained with everything else;
* every weight but g's is updated by SGD with the learned inner rate of its group (embeddings,
  each encoder layer, pooler, each layer of h, the class rows), times a schedule of linear
  warm-up (10%) then linear decay, the gradient clipped to global norm 1.0 (the trainer's);
* a model meta-trained with warp layers (SMLMT, Hybrid-SMLMT) is fine-tuned with them, as the
  release's run_finetune.sh does: the feed-forward blocks are not trained (nor in the clip's
  norm), h is in the norm at rate 0; LEOPARD (no warp layers) trains everything but g.
* the class rows are generated with dropout on, as the original's first step.

The original's per-K epochs and batch sizes (as multiples of N) are in
configs/leopard_per_k.json (experiments/recipes.py reads them; run_finetune.py --per_k_config).
"""
import re

from absl import logging
import numpy as np
import tensorflow as tf
import tf_keras

from metabert_tf import checkpoints
from metabert_tf import classifier
from metabert_tf import records
from metabert_tf.errors import ConfigError
from metabert_tf.meta import leopard
from metabert_tf.meta import learner as learner_lib

HEAD = "generated_softmax"  # the `head` a fine-tuned model's checkpoint metadata records


def _key(variable):
  # A mirrored variable's copy on replica r is named ".../kernel/replica_r:0".
  return re.sub(r"(/replica_\d+)?:\d+$", "", variable.name)


class LearnedRateSGD(tf_keras.optimizers.legacy.SGD):
  """SGD whose step for a variable is schedule(step) x that variable's learned rate."""

  def __init__(self, rates, schedule, name="LearnedRateSGD"):
    super().__init__(learning_rate=schedule, name=name)
    self._rates = rates  # {_key(variable): rate}

  def _resource_apply_dense(self, grad, var, apply_state=None):
    rate = self._decayed_lr(var.dtype) * self._rates[_key(var)]
    return tf.raw_ops.ResourceApplyGradientDescent(var=var.handle, alpha=rate, delta=grad)

  def _resource_apply_sparse(self, grad, var, indices, apply_state=None):
    rate = self._decayed_lr(var.dtype) * self._rates[_key(var)]
    return tf.raw_ops.ResourceScatterAdd(resource=var.handle, indices=indices,
                                         updates=-rate * grad)

  def _resource_apply_sparse_duplicate_indices(self, grad, handle, indices, **kwargs):
    # Keras' SGD overrides this with its own update at the schedule's rate, which would skip
    # the learned rate of the embeddings (sparse gradients): sum duplicates, then ours.
    unique, positions = tf.unique(indices)
    summed = tf.math.unsorted_segment_sum(grad, positions, tf.shape(unique)[0])
    return self._resource_apply_sparse(summed, handle, unique, **kwargs)


def build(strategy, backbone, num_classes, pooling, dropout=True):
  """(the classifier, {variable key: learned rate}, the variables to train) from a
  LEOPARD-family checkpoint; from a model fine-tuned from one, (the classifier with its trained
  class rows, None, None)."""
  meta = checkpoints.read_metadata(backbone.checkpoint_prefix)
  prefix = backbone.checkpoint_prefix
  reader = tf.train.load_checkpoint(prefix)
  rows_shape = reader.get_variable_to_shape_map()["head/class_rows/.ATTRIBUTES/VARIABLE_VALUE"]
  fine_tuned = meta.get("head") == HEAD
  init = meta.get("head_init", "released") if fine_tuned else meta_config(meta).head_init
  with strategy.scope():
    head = classifier.GeneratedSoftmaxHead(backbone.config.hidden_size, num_classes,
                                           rows_shape[1] - 1, rows_trainable=True, init=init)
    model = classifier.Classifier(backbone.encoder, num_classes, pooling=pooling,
                                  dropout_rate=0.1 if dropout else 0.0, head=head).build_all()
  if fine_tuned and rows_shape[0] != num_classes:
    raise ConfigError(f"{prefix}: a fine-tuned model of {rows_shape[0]} classes; fine-tune from "
                     "the meta-trained checkpoint for a task of another label list")
  parts = tf.Module()  # h and g; the class rows only of a fine-tuned model (a task's N differs)
  parts.task_mlp, parts.generator = head.task_mlp, head.generator
  if fine_tuned:
    parts.class_rows = head.class_rows
  with checkpoints.reading_weights(prefix):
    tf.train.Checkpoint(head=parts).read(prefix).expect_partial().assert_existing_objects_matched()
  if fine_tuned:
    return model, None, None
  rates = reader.get_tensor("inner_rates/rates/.ATTRIBUTES/VARIABLE_VALUE")
  config = meta_config(meta)
  warp = config.warp_layers
  canonical = [learner_lib.canonical(v.name) for v in model.trainable_variables]
  groups = [leopard.rate_group(n) for n in canonical]
  names = leopard.ordered_groups(groups)
  if len(names) != len(rates):
    raise ConfigError(f"{prefix}: {len(rates)} learned rates, the model has {len(names)} groups")
  # The weights the inner loop adapted (the generator g too: in the clip's norm, at rate 0).
  variables = [v for v, n, g in zip(model.trainable_variables, canonical, groups)
               if g is None or leopard.adapts(n, g, config)]
  by_variable = {_key(v): float(rates[names.index(g)]) if leopard.moves(g, warp) else 0.0
                 for v, g in zip(model.trainable_variables, groups)}
  logging.info("Learned inner rates of %s (%s, warp layers %s): %s", prefix,
               meta.get("algorithm"), warp, ", ".join(f"{n} {r:.3g}" for n, r in zip(names, rates)))
  return model, by_variable, variables


def meta_config(meta):
  """The leopard.Config a checkpoint was meta-trained with (older checkpoints record only
  warp_layers: the rest at its defaults)."""
  if meta.get("algorithm_config"):  # checkpoints from before head_init had the released head
    return leopard.Config(**{"head_init": "released", **meta["algorithm_config"]})
  return leopard.Config(warp_layers=bool(meta.get("warp_layers")), head_init="released")


def optimizer(rates, total_steps, warmup_proportion=0.1):
  # The schedule multiplies each variable's learned rate: it peaks at 1.
  return LearnedRateSGD(rates, leopard.warmup_linear_decay(1.0, total_steps, warmup_proportion))


def generate_class_rows(model, features, batch_size, seed):
  """Sets the class rows from a first batch: `batch_size` training examples drawn by `seed`."""
  n = len(features["label_ids"])
  idx = np.sort(np.random.default_rng([seed, 5]).permutation(n)[:batch_size])
  batch = records.trim_to_longest({k: v[idx] for k, v in features.items()
                                   if k in records.MODEL_INPUTS + ("label_ids",)})
  pooled, _ = model.encode(batch, training=True)  # dropout on, as the original's first step
  rows = model.head.generate(model.dropout(pooled, training=True), batch["label_ids"])
  model.head.class_rows.assign(rows)
  missing = sorted(set(range(model.head.max_classes)) - set(batch["label_ids"].tolist()))
  if missing:
    logging.warning("Classes %s are not in the first batch: their rows start at zero", missing)
