"""The meta-learning engine: episodes -> per-replica inner loops -> one all-reduced meta update.

An algorithm is a module with `NAME`, `task_contribution(inner, query, meta_vars)` (the task's
share of the meta-gradient, and its query loss) and `outer_optimizer(config)`; see
fomaml.py and reptile.py. The engine owns everything else:

* the task stream: `num_train_task` episodes drawn once (Meta-BERT's MetaTask), visited in a
  fresh order each epoch (seeded by seed + epoch), `outer_batch_size` tasks per meta-step;
* distribution: each of the R replicas adapts `tasks_per_replica` = outer_batch_size / R tasks
  on its own learner copy, and `apply_gradients` in replica context all-reduces the meta
  gradient once per meta-step (shares are pre-divided by outer_batch_size, so the sum is the mean);
* checkpoints `ckpt/meta.epoch-E.step-S` (meta weights, meta optimiser, step; never the learner),
  resumed from on restart: a killed run replays the same tasks (and, without dropout, ends at
  exactly the same weights; dropout masks are not replayed);
* meta-test: `num_test_task` episodes of the held-out domains, adapted for
  `inner_update_step_eval` passes, accuracy on their query sets, logged as training goes.
"""
import dataclasses
import json
import math
import os

from absl import logging
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from metabert_tf import backbones
from metabert_tf import checkpoints
from metabert_tf import classifier
from metabert_tf import io_utils
from metabert_tf import records
from metabert_tf import run_utils
from metabert_tf.bert_config import ConfigError
from metabert_tf.meta import episodes as episodes_lib
from metabert_tf.meta import learner as learner_lib


@dataclasses.dataclass
class MetaConfig:
  episodes: episodes_lib.EpisodeConfig = dataclasses.field(
      default_factory=episodes_lib.EpisodeConfig)
  num_train_task: int = 50
  num_test_task: int = 3
  outer_batch_size: int = 5
  tasks_per_replica: int = 0          # 0: outer_batch_size / replicas
  inner_batch_size: int = 16
  inner_update_step: int = 10         # passes over the support set per task
  inner_update_step_eval: int = 10
  inner_update_lr: float = 5e-5
  inner_optimizer: str = "adam"
  outer_update_lr: float = 5e-5
  variant: str = "classic"            # reptile only: classic or adam
  reptile_epsilon: float = 0.5        # reptile classic: theta += eps * mean(phi - theta)
  epochs: int = 3
  seed: int = 0
  bucket: int = 32                    # sequence lengths are trimmed to a multiple of this
  dropout: bool = True                # False: deterministic updates (tests)
  progress: bool = True


def _step_of(checkpoint_name):
  """meta.epoch-E.step-S -> S."""
  return int(checkpoint_name.rsplit(".step-", 1)[1])


class MetaTrainer:

  def __init__(self, strategy, algorithm, backbone, label_list, pooling, features, domain_list,
               train_domains, test_domains, config, output_dir, metadata):
    episodes_lib.check_disjoint_domains(train_domains, test_domains)
    self.strategy, self.algorithm, self.config = strategy, algorithm, config
    self.features, self.output_dir = features, output_dir
    replicas = strategy.num_replicas_in_sync
    per_replica = config.tasks_per_replica or config.outer_batch_size // replicas
    if per_replica * replicas != config.outer_batch_size:
      raise ConfigError(f"outer_batch_size {config.outer_batch_size} must equal "
                       f"tasks_per_replica x replicas ({per_replica} x {replicas})")
    self.tasks_per_replica = per_replica
    self.train_sampler = episodes_lib.EpisodeSampler(
        features["domain_ids"], features["label_ids"], domain_list, train_domains,
        config.episodes, config.seed)
    # Test tasks get a stream of their own: a far-off seed, so seed s's test tasks never
    # repeat seed s+1's training draws.
    self.test_sampler = None if not test_domains else episodes_lib.EpisodeSampler(
        features["domain_ids"], features["label_ids"], domain_list, test_domains,
        config.episodes, config.seed + 1_000_003)
    num_labels = len(label_list)
    rate = 0.1 if config.dropout else 0.0
    with strategy.scope():
      self.model = classifier.Classifier(backbone.encoder, num_labels, pooling=pooling,
                                         dropout_rate=rate).build_all()
      if backbone.checkpoint_prefix and backbone.label_list == list(label_list):
        tf.train.Checkpoint(head=self.model.head).read(backbone.checkpoint_prefix).expect_partial()
      self.learner = learner_lib.build_per_replica(lambda: classifier.Classifier(
          backbones.build_encoder(backbone.config, config.dropout), num_labels, pooling=pooling,
          dropout_rate=rate).build_all())
      self.meta_vars, learner_vars = learner_lib.pair_variables(self.model, self.learner)
      self.inner = learner_lib.InnerLoop(self.learner, learner_vars, config.inner_update_lr,
                                         config.inner_batch_size, config.inner_optimizer)
      self.optimizer = algorithm.outer_optimizer(config)
      self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="meta_step")
    self.checkpoint = checkpoints.model_checkpoint(self.model, metadata,
                                                   optimizer=self.optimizer, step=self.step)
    self.ckpt_dir = os.path.join(output_dir, "ckpt")
    self.steps_per_epoch = math.ceil(config.num_train_task / config.outer_batch_size)
    self._meta_step = tf.function(self._meta_step_fn, reduce_retracing=True)
    self._adapt_and_predict = tf.function(self._adapt_and_predict_fn, reduce_retracing=True)

  # ---- data -------------------------------------------------------------------------------

  def _gather(self, index_sets):
    """Stacks examples [T, n, L] for T index sets, trimmed to a shared bucketed length."""
    idx = np.stack(index_sets)
    longest = int(self.features["input_mask"][idx.reshape(-1)].sum(1).max())
    length = min(self.features["input_mask"].shape[1],
                 -(-longest // self.config.bucket) * self.config.bucket)
    out = {k: self.features[k][idx][..., :length] for k in records.MODEL_INPUTS}
    out["label_ids"] = self.features["label_ids"][idx]
    return out

  def task_ids(self, step):
    """Indices (into the fixed set of num_train_task episodes) of meta-step `step`'s tasks."""
    n, b = self.config.num_train_task, self.config.outer_batch_size
    epoch, within = divmod(step, self.steps_per_epoch)
    # [seed, 7, epoch]: a stream apart from the episodes' own ([seed, task index]).
    order = np.random.default_rng([self.config.seed, 7, epoch]).permutation(n)
    return [int(order[(within * b + j) % n]) for j in range(b)]  # wraps a last partial batch

  def _distribute(self, batch):
    per = self.tasks_per_replica

    def value_fn(ctx):
      r = ctx.replica_id_in_sync_group
      return tf.nest.map_structure(lambda x: tf.constant(x[r * per:(r + 1) * per]), batch)
    return self.strategy.experimental_distribute_values_from_function(value_fn)

  # ---- the meta step ----------------------------------------------------------------------

  def _meta_step_fn(self, support, query, passes):
    def replica_fn(support, query):
      shares, losses = None, []
      for t in range(self.tasks_per_replica):
        self.inner.reset(self.meta_vars)
        self.inner.adapt({k: v[t] for k, v in support.items()}, passes)
        contribution, loss = self.algorithm.task_contribution(
            self.inner, {k: v[t] for k, v in query.items()}, self.meta_vars)
        shares = contribution if shares is None else [a + c for a, c in zip(shares, contribution)]
        losses.append(loss)
      scale = 1.0 / self.config.outer_batch_size
      self.optimizer.apply_gradients([(g * scale, v) for g, v in zip(shares, self.meta_vars)])
      return tf.add_n(losses) * scale
    losses = self.strategy.run(replica_fn, args=(support, query))
    return self.strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

  def train_step(self, step):
    """One meta-step (the tasks of global step `step`); returns the mean query loss."""
    chosen = [self.train_sampler.episode(i) for i in self.task_ids(step)]
    support = self._distribute(self._gather([e.support for e in chosen]))
    query = self._distribute(self._gather([e.query for e in chosen]))
    return float(self._meta_step(support, query, tf.constant(self.config.inner_update_step)))

  # ---- meta-test --------------------------------------------------------------------------

  def _adapt_and_predict_fn(self, support, query, passes):
    def replica_fn(support, query):
      self.inner.reset(self.meta_vars)
      self.inner.adapt(support, passes)
      return self.inner.loss_and_logits(query)[1]
    logits = self.strategy.run(replica_fn, args=(support, query))
    return self.strategy.experimental_local_results(logits)[0]

  def meta_test(self):
    """Mean query accuracy over num_test_task held-out-domain episodes (None without them)."""
    if self.test_sampler is None or not self.config.num_test_task:
      return None
    accuracies = []
    for i in range(self.config.num_test_task):
      episode = self.test_sampler.episode(i)
      support = {k: v[0] for k, v in self._gather([episode.support]).items()}
      query = {k: v[0] for k, v in self._gather([episode.query]).items()}
      logits = self._adapt_and_predict(support, query,
                                       tf.constant(self.config.inner_update_step_eval))
      accuracies.append(float(np.mean(logits.numpy().argmax(-1) == query["label_ids"])))
    return float(np.mean(accuracies))

  # ---- checkpoints and the loop -----------------------------------------------------------

  def _is_chief(self):
    return run_utils.is_chief(self.strategy)

  def save(self, epoch, step):
    prefix = os.path.join(self.ckpt_dir, f"meta.epoch-{epoch}.step-{step}")
    with run_utils.chief_keeps(prefix, self.strategy) as where:
      path = self.checkpoint.write(where)
    if not self._is_chief():
      return prefix
    # Every epoch end is kept (the models Meta-BERT's README names); of the mid-epoch saves
    # (--save_every_steps) only the newest, which is there to resume from.
    checkpoints.record_checkpoint(
        self.ckpt_dir, path, keep=lambda name: _step_of(name) % self.steps_per_epoch == 0)
    return path

  def restore(self):
    if self._is_chief():  # what a killed run left half-written
      for directory in (self.output_dir, self.ckpt_dir):
        io_utils.remove_leftovers(directory)
    latest = tf.train.latest_checkpoint(self.ckpt_dir)
    if latest:
      self.checkpoint.read(latest).assert_existing_objects_matched()
      logging.info("Resumed meta-training from %s (step %d)", latest, int(self.step.numpy()))
    return latest

  def train(self, save_every_steps=0):
    """Runs (or resumes) meta-training; returns the history of meta-test accuracies."""
    self.restore()
    total = self.steps_per_epoch * self.config.epochs
    writer = (tf.summary.create_file_writer(os.path.join(self.output_dir, "tensorboard"))
              if self._is_chief() else tf.summary.create_noop_writer())
    history_file = os.path.join(self.output_dir, "meta_test_history.json")
    history = []
    if int(self.step.numpy()) and os.path.exists(history_file):  # resuming: keep the record
      with open(history_file) as f:
        history = [h for h in json.load(f) if h["step"] <= int(self.step.numpy())]
    if int(self.step.numpy()) == 0:
      history.append({"step": 0, "meta_test_accuracy": self._log_meta_test(writer, 0)})
      io_utils.atomic_write_json(history_file, history)
    with tqdm(total=total, initial=int(self.step.numpy()), desc="meta-train", unit="step",
              disable=not self.config.progress) as bar, writer.as_default():
      while int(self.step.numpy()) < total:
        step = int(self.step.numpy())
        loss = self.train_step(step)
        self.step.assign_add(1)
        tf.summary.scalar("meta/query_loss", loss, step=step + 1)
        bar.update(1)
        bar.set_postfix(query_loss=f"{loss:.4f}")
        epoch_end = (step + 1) % self.steps_per_epoch == 0
        if epoch_end or (save_every_steps and (step + 1) % save_every_steps == 0):
          epoch = -(-(step + 1) // self.steps_per_epoch)
          if epoch_end:
            history.append({"step": step + 1, "epoch": epoch,
                            "meta_test_accuracy": self._log_meta_test(writer, step + 1)})
            # History first: killed before the checkpoint, a resume drops this entry and redoes
            # the step; the other order would lose the entry for good.
            if self._is_chief():
              io_utils.atomic_write_json(history_file, history)
          self.save(epoch, step + 1)
    return history

  def _log_meta_test(self, writer, step):
    accuracy = self.meta_test()
    if accuracy is not None:
      with writer.as_default():
        tf.summary.scalar("meta_test/accuracy", accuracy, step=step)
      logging.info("step %d: meta-test accuracy on held-out domains %.4f", step, accuracy)
    return accuracy
