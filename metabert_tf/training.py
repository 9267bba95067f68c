"""Supervised fine-tuning under a tf.distribute strategy, resumable at any step.

The loop is Google BERT's run_classifier recipe: AdamW (Model Garden's AdamWeightDecay) with
10% linear warm-up then linear decay, global-norm clipping at 1.0, cross-entropy on float32
logits. The data order of epoch e is a shuffle seeded by seed + e, so a run killed after step s
and restarted from its checkpoint replays exactly the batches an uninterrupted run would.

The loss is a hook (`objective`, see objectives.py): plain fine-tuning, MFT and the
multi-domain baselines share this loop and differ only in their objective.
"""
import dataclasses
import json
import math
import os
import time

from absl import logging
import numpy as np
import tensorflow as tf
from official.nlp import optimization
from tqdm import tqdm

from metabert_tf import checkpoints
from metabert_tf import io_utils
from metabert_tf import objectives
from metabert_tf import records
from metabert_tf import runtime


# save_every_steps for short runs that only need the final model (the grid drivers' runs):
# a checkpoint per epoch of a 50-step run would cost more time than it could save.
SAVE_AT_END_ONLY = 2 ** 62


@dataclasses.dataclass
class FinetuneConfig:
  epochs: int = 10
  batch_size: int = 16
  learning_rate: float = 2e-5
  warmup_proportion: float = 0.1
  save_every_steps: int = 0   # 0: at the end of every epoch
  seed: int = 0
  progress: bool = True


def finetune(strategy, model, train_features, output_dir, config, metadata, objective=None,
             make_optimizer=None, variables=None):
  """Fine-tunes `model` (built under `strategy.scope()`) and returns training statistics.

  `objective` (default: objectives.CrossEntropy) gives the per-example loss; the layers it
  adds are trained with the model and checkpointed beside it (in the final checkpoint too).
  `make_optimizer(total_steps)` replaces BERT's AdamW (LEOPARD's learned-rate SGD);
  `variables`, the model's weights to train (default: all of its trainable ones)."""
  objective = objective or objectives.CrossEntropy()
  n = len(train_features["label_ids"])
  steps_per_epoch = math.ceil(n / config.batch_size)
  total_steps = steps_per_epoch * config.epochs
  with strategy.scope():
    optimizer = (make_optimizer(total_steps) if make_optimizer else optimization.create_optimizer(
        config.learning_rate, total_steps, int(config.warmup_proportion * total_steps)))
    step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
    objective.build(model)
  # Resume checkpoints carry the optimizer (its Adam slots are 2/3 of the size); the final
  # one is weights only: what --bert_model and a re-run of a finished run need.
  extras = objective.extras()
  checkpoint = checkpoints.model_checkpoint(model, metadata, optimizer=optimizer, step=step,
                                            **extras)
  weights = checkpoints.model_checkpoint(model, metadata, step=step, **extras)
  ckpt_dir = os.path.join(output_dir, "ckpt")
  if runtime.is_chief(strategy):
    io_utils.remove_leftovers(ckpt_dir)
  latest = tf.train.latest_checkpoint(ckpt_dir)  # every worker resumes from the chief's
  if latest:
    if checkpoints.has_optimizer(latest):
      checkpoint.restore(latest).assert_existing_objects_matched()
    else:
      weights.read(latest).assert_existing_objects_matched()
    logging.info("Resumed from %s at step %d", latest, int(step.numpy()))
  train_step = _make_train_step(strategy, model, optimizer, objective, variables)
  writer = (tf.summary.create_file_writer(os.path.join(output_dir, "tensorboard"))
            if runtime.is_chief(strategy) else tf.summary.create_noop_writer())
  save_every = config.save_every_steps or steps_per_epoch
  resumed_at = int(step.numpy())
  trend = LossTrend(output_dir, total_steps, steps_per_epoch, runtime.is_chief(strategy),
                    resumed_at)
  start = time.time()
  examples_seen = 0
  with runtime.chief_keeps(ckpt_dir, strategy) as save_dir, writer.as_default(), tqdm(
      total=total_steps, initial=int(step.numpy()), desc="fine-tune", unit="step",
      disable=not config.progress) as bar:
    manager = tf.train.CheckpointManager(checkpoint, save_dir, max_to_keep=2,
                                         checkpoint_name="finetune")
    while int(step.numpy()) < total_steps:
      epoch, done_in_epoch = divmod(int(step.numpy()), steps_per_epoch)
      first = epoch * steps_per_epoch  # the global step of the epoch's first batch
      data = records.make_dataset(train_features, config.batch_size, shuffle=True,
                                  seed=config.seed + epoch).enumerate(first).skip(done_in_epoch)
      data = data.map(lambda i, batch: objective.prepare_batch(batch, i))
      for batch in strategy.experimental_distribute_dataset(data):
        loss = float(train_step(batch))
        within = int(step.numpy()) % steps_per_epoch
        examples_seen += min(config.batch_size, n - within * config.batch_size)
        step.assign_add(1)
        s = int(step.numpy())
        tf.summary.scalar("train/loss", loss, step=s)
        trend.add(s, loss)
        bar.update(1)
        bar.set_postfix(epoch=epoch + 1, loss=f"{loss:.4f}")
        if s == total_steps:
          _save_final(weights, save_dir, s)
        elif s % save_every == 0:
          manager.save(checkpoint_number=s)
  seconds = time.time() - start
  logging.info("Fine-tuned %d steps in %.1fs", total_steps, seconds)
  # a resumed run's seconds and examples/second are those of the steps after its resume
  return {"train_steps": total_steps, "train_seconds": seconds, "resumed_from_step": resumed_at,
          "train_examples_per_second": examples_seen / seconds if seconds > 0 else None,
          "checkpoint": tf.train.latest_checkpoint(ckpt_dir), **trend.summary()}


class LossTrend:
  """The training loss at the start (mean of the first `window` steps) and at the end (the
  last `window`), window = min(one epoch, a fifth of the run): whether a run learned anything.
  The first window is kept in output_dir/train_loss.json, so a run resumed at `start_step` still
  knows it: only the losses of the steps up to start_step are kept from the file (a run started
  over, or resumed from before a step the file has, computes those steps again)."""

  def __init__(self, output_dir, total_steps, steps_per_epoch, write, start_step=0):
    self.window = max(1, min(steps_per_epoch, total_steps // 5))
    self.total_steps, self.write = total_steps, write
    self.path = os.path.join(output_dir, "train_loss.json")
    self.first, self.last = [], []
    if start_step and os.path.exists(self.path):
      with open(self.path, encoding="utf-8") as f:
        saved = json.load(f)
      # first[i] is step i + 1's loss, last[i] step total - window + i + 1's
      self.first = saved["first"][:start_step]
      self.last = saved.get("last", [])[:max(0, start_step - (total_steps - self.window))]

  def add(self, step, loss):
    if step <= self.window and len(self.first) < self.window:
      self.first.append(loss)
    if step > self.total_steps - self.window:
      self.last.append(loss)
    if self.write and (step == self.window or step == self.total_steps):
      io_utils.atomic_write_json(self.path, {"first": self.first, "last": self.last})

  def summary(self):
    if not self.first or not self.last:
      return {}
    first, last = float(np.mean(self.first)), float(np.mean(self.last))
    # Fell: by more than rounding (0.1%), whichever kernels summed the batch.
    return {"train_loss_first": first, "train_loss_last": last,
            "train_loss_fell": last < first * (1 - 1e-3)}


def _save_final(weights, directory, step):
  """Writes the finished model, weights only, and then drops the resume checkpoints. In that
  order, and the state file naming the new one before any deletion: killed at any moment,
  the run is either resumable or finished."""
  path = weights.write(os.path.join(directory, f"finetune-{step}"))
  checkpoints.record_checkpoint(directory, path, keep=lambda name: False)


def _make_train_step(strategy, model, optimizer, objective, variables=None):
  variables = (model.trainable_variables if variables is None else list(variables)) + \
      objective.trainable_variables()

  def step_fn(batch):
    with tf.GradientTape() as tape:
      per_example = objective.per_example_loss(model, batch)
      loss = tf.nn.compute_average_loss(per_example)  # / global batch: sums to the mean
    # Variables off the loss path (the unused pooler under mean pooling) get no gradient.
    pairs = [(g, v) for g, v in zip(tape.gradient(loss, variables), variables) if g is not None]
    # Sum over replicas first, then clip: the update is the global-batch one for any replica
    # count (Model Garden's AdamW would clip each replica's share before the all-reduce).
    grads = tf.distribute.get_replica_context().all_reduce(
        tf.distribute.ReduceOp.SUM, [tf.convert_to_tensor(g) for g, _ in pairs])
    grads, _ = tf.clip_by_global_norm(grads, 1.0)
    optimizer.apply_gradients(zip(grads, [v for _, v in pairs]),
                              experimental_aggregate_gradients=False)
    return loss

  @tf.function(reduce_retracing=True)
  def train_step(batch):
    losses = strategy.run(step_fn, args=(batch,))
    return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

  return train_step
