"""The meta-learning engine: task streams -> per-replica inner loops -> one all-reduced meta update.

An algorithm (base.py; fomaml.py, reptile.py, leopard.py for LEOPARD / SMLMT / Hybrid-SMLMT)
owns its meta-model and extras, its per-task step, its meta-test adaptation and its outer
optimiser; the inner loop is a set of building blocks (learner.InnerLoop). The engine owns what
is common:

* the task stream: `num_train_task` episodes drawn once (Meta-BERT's MetaTask), visited in a
  fresh order each epoch (seeded by the seed and the epoch), `outer_batch_size` tasks per meta-step; the
  last meta-step of an epoch takes the tasks that are left (its real size, no wrapping);
* tasks as tensors: labels mapped to the task's classes 0..N-1 (`Episode.classes`), N as a
  tensor (logits past N masked, so any N <= the head's width runs in one traced graph), and
  the support order of every inner pass (a fresh permutation per pass, as Meta-BERT's
  RandomSampler; drawn from (seed, step, task slot), so a resumed run replays it);
* distribution: each of the R replicas adapts `tasks_per_replica` = outer_batch_size / R tasks
  on its own learner copy, and `apply_gradients` in replica context all-reduces the meta
  gradient once per meta-step. Each task's share is weighted 1/T (T = the step's real task
  count); a short last step is padded with zero-weight tasks, so every step has the same
  shape on every replica (no retrace, an even split);
* checkpoints `ckpt/meta.epoch-E.step-S` (meta weights, the algorithm's extras, meta
  optimiser, step; never the learner), resumed from on restart: a killed run replays the same
  tasks (and, without dropout, ends at exactly the same weights; dropout masks are not replayed);
* meta-test: `num_test_task` episodes of the held-out domains, adapted for
  `inner_update_step_eval` passes, accuracy on their query sets, logged as training goes.
  Examples in `test_exclude` (those a later evaluation scores) are never drawn.
"""
import dataclasses
import json
import math
import os
import time
from typing import Any

from absl import logging
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from metabert_tf import backbones
from metabert_tf import checkpoints
from metabert_tf import io_utils
from metabert_tf import records
from metabert_tf import runtime
from metabert_tf.errors import ConfigError
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
  shuffle_support: bool = True        # a fresh support order every inner pass (Meta-BERT)
  algorithm: Any = None               # the algorithm's own Config (None: its defaults)
  epochs: int = 3
  seed: int = 0
  # Tasks reach the traced meta-step at a multiple of `bucket` of the step's longest example
  # (0: at max_seq_length, one traced shape for every step); inside it, each task and each inner
  # batch is cut to its own longest example (learner.trim), so short tasks cost what they are.
  bucket: int = 0
  dropout: bool = True                # False: deterministic updates (tests)
  progress: bool = True


def _read_history(path, step):
  """The entries of a history file up to `step` (a resumed run keeps its record; 0: none)."""
  if not step or not os.path.exists(path):
    return []
  with open(path) as f:
    return [h for h in json.load(f) if h["step"] <= step]


def _step_of(checkpoint_name):
  """meta.epoch-E.step-S -> S."""
  return int(checkpoint_name.rsplit(".step-", 1)[1])


@dataclasses.dataclass
class MetaTasks:
  """What meta-training draws its tasks from: encoded `features` (with domain_ids), their
  label and domain names, the domains tasks come from and those held out for the meta-test."""
  features: dict
  label_list: list
  domain_list: list
  train_domains: list
  test_domains: list = dataclasses.field(default_factory=list)
  test_exclude: Any = None   # a bool per example: never drawn by the meta-test (a later eval's)
  train_sampler: Any = None  # the meta-training stream (default: episodes of train_domains)
  max_classes: Any = None    # the most classes a task has (default: every label of the run)


class MetaTrainer:

  def __init__(self, strategy, algorithm, config, backbone, tasks, output_dir, metadata,
               pooling="pooler"):
    """`algorithm`: an Algorithm (base.py) built from its own Config; `config`: the engine's
    MetaConfig; `tasks`: a MetaTasks."""
    episodes_lib.check_disjoint_domains(tasks.train_domains, tasks.test_domains)
    self.strategy, self.config, self.algorithm = strategy, config, algorithm
    features, label_list = tasks.features, tasks.label_list
    self.features, self.output_dir, self.pooling = features, output_dir, pooling
    replicas = strategy.num_replicas_in_sync
    per_replica = config.tasks_per_replica or config.outer_batch_size // replicas
    if per_replica * replicas != config.outer_batch_size:
      raise ConfigError(f"outer_batch_size {config.outer_batch_size} must equal "
                       f"tasks_per_replica x replicas ({per_replica} x {replicas})")
    self.tasks_per_replica = per_replica
    self.train_sampler = tasks.train_sampler or episodes_lib.EpisodeSampler(
        features["domain_ids"], features["label_ids"], tasks.domain_list, tasks.train_domains,
        config.episodes, config.seed)
    # Test tasks get a stream of their own: a far-off seed, so seed s's test tasks never
    # repeat seed s+1's training draws.
    self.test_sampler = None
    if tasks.test_domains and config.num_test_task:
      self.test_sampler = episodes_lib.EpisodeSampler(
          features["domain_ids"], features["label_ids"], tasks.domain_list, tasks.test_domains,
          config.episodes, config.seed + 1_000_003, exclude=tasks.test_exclude)
    self.num_labels = len(label_list)
    self.num_classes = tasks.max_classes or self.num_labels  # the head's width: the largest N
    rate = 0.1 if config.dropout else 0.0
    build_model = self.algorithm.build_model
    width = self.num_labels if algorithm.head_over_run_labels else self.num_classes
    with strategy.scope():
      self.model = build_model(backbone.encoder, width, pooling, rate)
      if backbone.checkpoint_prefix and backbone.label_list == list(label_list):
        tf.train.Checkpoint(head=self.model.head).read(backbone.checkpoint_prefix).expect_partial()
      self.learner = learner_lib.build_per_replica(lambda: build_model(
          backbones.build_encoder(backbone.config, config.dropout), width, pooling, rate))
      self.meta_vars, learner_vars = learner_lib.pair_variables(self.model, self.learner)
      self.inner = learner_lib.InnerLoop(
          self.learner, learner_vars + self.algorithm.learner_only_variables(self.learner),
          config.inner_batch_size, self.algorithm.inner_optimizer)
      self.extras = self.algorithm.build(self.model, self.inner)
      # What the meta optimiser updates: the classifier, then the extras' trainable weights
      # (the order of the shares task_step returns).
      self.outer_vars = self.meta_vars + [v for module in self.extras.values()
                                          for v in module.trainable_variables]
      self.steps_per_epoch = math.ceil(config.num_train_task / config.outer_batch_size)
      self.optimizer = self.algorithm.outer_optimizer(self.steps_per_epoch * config.epochs)
      # Its state made now, not on the first apply: a tf.function that creates variables is
      # traced twice.
      self.optimizer._create_all_weights(self.outer_vars)  # pylint: disable=protected-access
      self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="meta_step")
      # Seconds spent in meta-steps up to the checkpoint (a resumed run adds its own).
      self.seconds = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="train_seconds")
    self.checkpoint = checkpoints.model_checkpoint(self.model, metadata, optimizer=self.optimizer,
                                                   step=self.step, train_seconds=self.seconds,
                                                   **self.extras)
    self.ckpt_dir = os.path.join(output_dir, "ckpt")
    self._meta_step = tf.function(self._meta_step_fn, reduce_retracing=True)
    self._adapt_and_predict = tf.function(self._adapt_and_predict_fn, reduce_retracing=True)

  # ---- data -------------------------------------------------------------------------------

  def _gather(self, index_sets):
    """Stacks examples [T, n, L] for T index sets (L: see MetaConfig.bucket)."""
    idx = np.stack(index_sets)
    length = self.features["input_mask"].shape[1]
    if self.config.bucket:
      longest = int(self.features["input_mask"][idx.reshape(-1)].sum(1).max())
      length = min(length, -(-longest // self.config.bucket) * self.config.bucket)
    out = {k: self.features[k][idx][..., :length] for k in records.MODEL_INPUTS}
    out["label_ids"] = self.features["label_ids"][idx]
    return out

  def task_ids(self, step):
    """Indices (into the fixed set of num_train_task episodes) of meta-step `step`'s tasks:
    outer_batch_size of them, fewer at the last step of an epoch."""
    n, b = self.config.num_train_task, self.config.outer_batch_size
    epoch, within = divmod(step, self.steps_per_epoch)
    # [seed, 7, epoch]: a stream apart from the episodes' own ([seed, task index]).
    order = np.random.default_rng([self.config.seed, 7, epoch]).permutation(n)
    return [int(i) for i in order[within * b:(within + 1) * b]]

  def support_order(self, key, passes, n):
    """[passes, n]: the support order of each inner pass of the task keyed `key`."""
    if not self.config.shuffle_support:
      return np.tile(np.arange(n, dtype=np.int32), (passes, 1))
    # key (13, step, slot) or (17, test task): apart from the episode ([seed, index]) and epoch
    # ([seed, 7, epoch]) streams.
    rng = np.random.default_rng([self.config.seed, *key])
    return np.array([rng.permutation(n) for _ in range(passes)], np.int32).reshape(passes, n)

  def make_tasks(self, chosen, passes, keys, weights):
    """The tensors of base.py's task dict for episodes `chosen`, stacked [T, ...]."""
    support = self._gather([e.support for e in chosen])
    query = self._gather([e.query for e in chosen])
    num_classes, class_ids = [], np.zeros([len(chosen), self.num_classes], np.int32)
    for t, episode in enumerate(chosen):
      classes = (np.arange(self.num_classes) if episode.classes is None
                 else np.asarray(episode.classes))
      if len(classes) > self.num_classes:
        raise ConfigError(f"a task has {len(classes)} classes; the head has {self.num_classes}")
      local = np.full(self.num_labels, -1)
      local[classes] = np.arange(len(classes))
      for part in (support, query):
        part["label_ids"][t] = local[part["label_ids"][t]]
        if (part["label_ids"][t] < 0).any():
          raise ValueError(f"episode of {episode.domain!r} has labels outside its classes")
      num_classes.append(len(classes))
      class_ids[t, :len(classes)] = classes
    n = support["label_ids"].shape[1]
    return dict(support=support, query=query, num_classes=np.array(num_classes, np.int32),
                classes=class_ids,
                order=np.stack([self.support_order(k, passes, n) for k in keys]),
                weight=np.array(weights, np.float32))

  def _distribute(self, batch):
    per = self.tasks_per_replica

    def value_fn(ctx):
      r = ctx.replica_id_in_sync_group
      return tf.nest.map_structure(lambda x: tf.constant(x[r * per:(r + 1) * per]), batch)
    return self.strategy.experimental_distribute_values_from_function(value_fn)

  # ---- the meta step ----------------------------------------------------------------------

  def _meta_step_fn(self, tasks):
    def replica_fn(tasks):
      shares, loss = None, 0.0
      for t in range(self.tasks_per_replica):
        task = tf.nest.map_structure(lambda x: x[t], tasks)  # pylint: disable=cell-var-from-loop
        task = learner_lib.trim_task(task)
        share, task_loss = self.algorithm.task_step(self.inner, task, self.meta_vars)
        share = [g * tf.cast(task["weight"], g.dtype) for g in share]
        shares = share if shares is None else [a + g for a, g in zip(shares, share)]
        loss += task_loss * task["weight"]
      clip = self.algorithm.outer_clip_norm
      if clip is None:
        self.optimizer.apply_gradients(zip(shares, self.outer_vars))
        return loss
      # Sum over replicas first, then clip (the update of the whole meta-batch).
      shares = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, shares)
      shares, _ = tf.clip_by_global_norm(shares, clip)
      self.optimizer.apply_gradients(zip(shares, self.outer_vars),
                                     experimental_aggregate_gradients=False)
      return loss
    losses = self.strategy.run(replica_fn, args=(tasks,))
    return self.strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

  def uniform_loss(self, step):
    """The mean over meta-step `step`'s tasks of ln N: a uniform guess's query loss."""
    chosen = [self.train_sampler.episode(i) for i in self.task_ids(step)]
    return float(np.mean([np.log(self.num_classes if e.classes is None else len(e.classes))
                          for e in chosen]))

  def train_step(self, step):
    """One meta-step (the tasks of global step `step`); returns the mean query loss."""
    ids = self.task_ids(step)
    chosen = [self.train_sampler.episode(i) for i in ids]
    pad = self.config.outer_batch_size - len(ids)
    tasks = self.make_tasks(
        chosen + chosen[:1] * pad, self.config.inner_update_step,
        [(13, step, j) for j in range(self.config.outer_batch_size)],
        [1.0 / len(ids)] * len(ids) + [0.0] * pad)
    return float(self._meta_step(self._distribute(tasks)))

  # ---- meta-test --------------------------------------------------------------------------

  def _adapt_and_predict_fn(self, task):
    def replica_fn(task):
      return self.algorithm.adapt_for_test(self.inner, learner_lib.trim_task(task),
                                           self.meta_vars)
    logits = self.strategy.run(replica_fn, args=(task,))
    return self.strategy.experimental_local_results(logits)[0]

  def meta_test(self):
    """Mean query accuracy over num_test_task held-out-domain episodes (None without them)."""
    if self.test_sampler is None:
      return None
    accuracies = []
    for i in range(self.config.num_test_task):
      task = self.make_tasks([self.test_sampler.episode(i)], self.config.inner_update_step_eval,
                             [(17, i)], [1.0])
      task = tf.nest.map_structure(lambda x: x[0], task)
      logits = self._adapt_and_predict(task)
      accuracies.append(float(np.mean(logits.numpy().argmax(-1) == task["query"]["label_ids"])))
    return float(np.mean(accuracies))

  # ---- checkpoints and the loop -----------------------------------------------------------

  def _is_chief(self):
    return runtime.is_chief(self.strategy)

  def save(self, epoch, step):
    prefix = os.path.join(self.ckpt_dir, f"meta.epoch-{epoch}.step-{step}")
    with runtime.chief_keeps(prefix, self.strategy) as where:
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
    history = _read_history(history_file, int(self.step.numpy()))
    # The mean query loss of every meta-step, saved with each checkpoint (the training curve).
    losses_file = os.path.join(self.output_dir, "query_loss_history.json")
    losses = _read_history(losses_file, int(self.step.numpy()))
    if int(self.step.numpy()) == 0:
      history.append({"step": 0, "meta_test_accuracy": self._log_meta_test(writer, 0)})
      io_utils.atomic_write_json(history_file, history)
    with tqdm(total=total, initial=int(self.step.numpy()), desc="meta-train", unit="step",
              disable=not self.config.progress) as bar, writer.as_default():
      while int(self.step.numpy()) < total:
        step = int(self.step.numpy())
        start = time.perf_counter()
        loss = self.train_step(step)
        self.seconds.assign_add(time.perf_counter() - start)
        self.step.assign_add(1)
        losses.append({"step": step + 1, "query_loss": loss,
                       "uniform_loss": self.uniform_loss(step)})
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
          if self._is_chief():
            io_utils.atomic_write_json(losses_file, losses)
          self.save(epoch, step + 1)
    return history

  def _log_meta_test(self, writer, step):
    accuracy = self.meta_test()
    if accuracy is not None:
      with writer.as_default():
        tf.summary.scalar("meta_test/accuracy", accuracy, step=step)
      logging.info("step %d: meta-test accuracy on held-out domains %.4f", step, accuracy)
    return accuracy
