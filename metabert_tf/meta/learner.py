"""Per-replica "learner" copies of the model and the inner loop that adapts them to one task.

Meta weights are ordinary (mirrored) variables. The learner is a second copy of the model built
under a variable creator that makes every floating variable `ON_READ` / `ONLY_FIRST_REPLICA` /
untrainable, so under MirroredStrategy each replica owns an independent copy it can adapt to
its own task (the pattern of ../shared/NOTES.md section 3). Outside a distribution strategy
these are plain variables. The learner is never checkpointed or exported.

Inner optimiser (per task, state reset each task): SGD, or Adam as Meta-BERT uses
(torch.optim.Adam defaults: beta1 0.9, beta2 0.999, eps 1e-8, bias-corrected).
"""
import re

import tensorflow as tf

_ON_READ = dict(synchronization=tf.VariableSynchronization.ON_READ,
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA, trainable=False)


def _per_replica_creator(next_creator, **kwargs):
  dtype = kwargs.get("dtype")
  if dtype is None and not callable(kwargs.get("initial_value")):
    dtype = tf.convert_to_tensor(kwargs["initial_value"]).dtype
  if dtype is not None and tf.as_dtype(dtype).is_floating:
    kwargs.update(_ON_READ)
  return next_creator(**kwargs)


def build_per_replica(build_fn):
  """Calls `build_fn()` so that the floating variables it creates are per-replica."""
  with tf.variable_creator_scope(_per_replica_creator):
    return build_fn()


def per_replica_like(variables, name):
  with tf.variable_creator_scope(_per_replica_creator):
    return [tf.Variable(tf.zeros(v.shape, v.dtype), name=f"{name}_{i}")
            for i, v in enumerate(variables)]


def _canonical(name):
  # "bert_encoder_v2_1/transformer/layer_0/query/kernel:0" -> "transformer/layer_0/query/kernel"
  # (the first scope is the model's uniquified name: bert_encoder_v2, classifier_1, ...)
  return re.sub(r":\d+$", "", name.split("/", 1)[-1])


def pair_variables(meta_model, learner_model):
  """(meta_vars, learner_vars) in matching order; checked by name and shape."""
  meta_vars = list(meta_model.trainable_variables)
  learner_by_name = {_canonical(v.name): v for v in learner_model.variables
                     if v.dtype.is_floating}
  learner_vars = []
  for v in meta_vars:
    twin = learner_by_name.get(_canonical(v.name))
    if twin is None or twin.shape != v.shape:
      raise AssertionError(f"learner has no copy of {v.name} {v.shape}")
    learner_vars.append(twin)
  return meta_vars, learner_vars


class InnerLoop:
  """Adapts the learner copy to one task's support set; gives losses/gradients on a query set."""

  def __init__(self, learner_model, learner_vars, learning_rate, batch_size, optimizer="adam"):
    if optimizer not in ("adam", "sgd"):
      raise ValueError(f"inner optimizer must be adam or sgd, got {optimizer!r}")
    self.model = learner_model
    self.vars = learner_vars
    self.learning_rate = learning_rate
    self.batch_size = batch_size
    self.optimizer = optimizer
    if optimizer == "adam":
      self.m = per_replica_like(learner_vars, "inner_adam_m")
      self.v = per_replica_like(learner_vars, "inner_adam_v")

  def reset(self, meta_vars):
    """learner <- meta weights; fresh optimiser state (a new task)."""
    for lv, mv in zip(self.vars, meta_vars):
      lv.assign(mv)
    if self.optimizer == "adam":
      for slot in self.m + self.v:
        slot.assign(tf.zeros_like(slot))

  def loss_and_logits(self, batch):
    """Evaluation-mode loss and logits of the learner on `batch` (no gradients)."""
    logits = self.model(batch, training=False)
    loss = tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(batch["label_ids"], logits))
    return loss, logits

  def loss_and_grads(self, batch, training=True):
    """Mean cross-entropy on `batch` and its dense gradients w.r.t. the learner weights."""
    with tf.GradientTape(watch_accessed_variables=False) as tape:
      tape.watch(self.vars)
      logits = self.model(batch, training=training)
      loss = tf.reduce_mean(
          tf.nn.sparse_softmax_cross_entropy_with_logits(batch["label_ids"], logits))
    grads = tape.gradient(loss, self.vars, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    # ON_READ variables have no scatter ops: densify the embedding's IndexedSlices.
    return loss, [tf.convert_to_tensor(g) for g in grads]

  def _apply(self, grads, step):
    # One fused kernel per variable: written as separate ops, this update took ~11% of a meta-step.
    if self.optimizer == "sgd":
      for var, g in zip(self.vars, grads):
        tf.raw_ops.ResourceApplyGradientDescent(var=var.handle, alpha=self.learning_rate, delta=g)
      return
    b1, b2, eps = 0.9, 0.999, 1e-8
    t = tf.cast(step, tf.float32)
    b1_power, b2_power = b1 ** t, b2 ** t
    # The kernel computes lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + epsilon); torch adds
    # eps to sqrt(v / (1 - b2^t)) instead, i.e. epsilon = eps * sqrt(1 - b2^t).
    for var, g, m, v in zip(self.vars, grads, self.m, self.v):
      tf.raw_ops.ResourceApplyAdam(
          var=var.handle, m=m.handle, v=v.handle, beta1_power=b1_power, beta2_power=b2_power,
          lr=self.learning_rate, beta1=b1, beta2=b2, epsilon=eps * tf.sqrt(1.0 - b2_power),
          grad=g)

  def adapt(self, support, num_passes):
    """`num_passes` passes over the support set in batches of `batch_size` (a tensor count,
    so changing it does not retrace). Returns the number of inner steps taken."""
    n = tf.shape(support["label_ids"])[0]
    num_batches = (n + self.batch_size - 1) // self.batch_size
    total = num_batches * tf.cast(num_passes, tf.int32)
    for step in tf.range(total):
      start = (step % num_batches) * self.batch_size
      end = tf.minimum(start + self.batch_size, n)
      batch = {k: v[start:end] for k, v in support.items()}
      _, grads = self.loss_and_grads(batch)
      self._apply(grads, step + 1)
    return total
