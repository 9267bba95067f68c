"""Per-replica "learner" copies of the model, and the inner-loop building blocks.

Meta weights are ordinary (mirrored) variables. The learner is a second copy of the model built
under a variable creator that makes every floating variable `ON_READ` / `ONLY_FIRST_REPLICA` /
untrainable, so under MirroredStrategy each replica owns an independent copy it can adapt to
its own task (the pattern of ../shared/NOTES.md section 3). Outside a distribution strategy
these are plain variables. The learner is never checkpointed or exported.

Building blocks an algorithm composes (`InnerLoop`): `reset` (learner <- meta weights, fresh
optimiser state), `step` (one update on a batch with per-variable learning rates, a trainable
mask, global-norm clipping and per-example weights; SGD, or Adam as Meta-BERT uses:
torch.optim.Adam defaults, beta1 0.9, beta2 0.999, eps 1e-8, bias-corrected), `adapt` (passes
over a task's support set in the task's per-pass order), `loss_and_grads` / `logits`.
A task's N classes are the first N logits of the head (`mask_logits`), so tasks of any N <= the
head's width share one traced graph.
"""
import re

import tensorflow as tf

from metabert_tf import records
from metabert_tf.errors import ConfigError

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


def canonical(name):
  # "bert_encoder_v2_1/transformer/layer_0/query/kernel:0" -> "transformer/layer_0/query/kernel"
  # (the first scope is the model's uniquified name: bert_encoder_v2, classifier_1, ...)
  return re.sub(r":\d+$", "", name.split("/", 1)[-1])


def pair_variables(meta_model, learner_model):
  """(meta_vars, learner_vars) in matching order; checked by name and shape."""
  meta_vars = list(meta_model.trainable_variables)
  learner_by_name = {canonical(v.name): v for v in learner_model.variables
                     if v.dtype.is_floating}
  learner_vars = []
  for v in meta_vars:
    twin = learner_by_name.get(canonical(v.name))
    if twin is None or twin.shape != v.shape:
      raise AssertionError(f"learner has no copy of {v.name} {v.shape}")
    learner_vars.append(twin)
  return meta_vars, learner_vars


def trim(batch):
  """`batch` cut to its longest example, in the graph (a dynamic length: one trace serves all)."""
  return records.trim_to_longest(batch, bucket=1)


def trim_task(task):
  """A task with its support and query sets each cut to their longest example."""
  return {**task, "support": trim(task["support"]), "query": trim(task["query"])}


def mask_logits(logits, num_classes=None):
  """Logits of the classes >= num_classes pushed to -1e9: softmax, loss and argmax then equal
  those of an N-class head (exp(-1e9 - max) is exactly 0 in float32)."""
  if num_classes is None:
    return logits
  valid = tf.range(tf.shape(logits)[-1]) < tf.cast(num_classes, tf.int32)
  return tf.where(valid, logits, tf.constant(-1e9, logits.dtype))


def cross_entropy(labels, logits, example_weights=None):
  """Mean cross-entropy; with weights, sum(w * ce) / sum(w) (a zero weight drops an example)."""
  ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
  if example_weights is None:
    return tf.reduce_mean(ce)
  w = tf.cast(example_weights, ce.dtype)
  return tf.reduce_sum(w * ce) / tf.maximum(tf.reduce_sum(w), 1e-12)


class InnerLoop:
  """The learner copy and the blocks that adapt it to one task (see the module docstring).

  `learner_vars`: the twins of the meta weights, in their order, then any learner-only
  variables an algorithm adapts per task (LEOPARD's class rows), which `reset` leaves alone."""

  def __init__(self, learner_model, learner_vars, batch_size, optimizer="sgd"):
    if optimizer not in ("adam", "sgd"):
      raise ConfigError(f"must be adam or sgd, got {optimizer!r}", field="inner_optimizer")
    self.model = learner_model
    self.vars = learner_vars
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

  def logits(self, batch, num_classes=None, training=False):
    return mask_logits(self.model(batch, training=training), num_classes)

  def loss_and_logits(self, batch, num_classes=None):
    """Evaluation-mode loss and (masked) logits of the learner on `batch` (no gradients)."""
    logits = self.logits(batch, num_classes)
    return cross_entropy(batch["label_ids"], logits), logits

  def loss_and_grads(self, batch, num_classes=None, example_weights=None, training=True,
                     variables=None):
    """Cross-entropy on `batch` and its dense gradients w.r.t. `variables` (all learner
    weights by default)."""
    variables = self.vars if variables is None else variables
    with tf.GradientTape(watch_accessed_variables=False) as tape:
      tape.watch(variables)
      logits = self.logits(batch, num_classes, training=training)
      loss = cross_entropy(batch["label_ids"], logits, example_weights)
    grads = tape.gradient(loss, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    # ON_READ variables have no scatter ops: densify the embedding's IndexedSlices.
    return loss, [tf.convert_to_tensor(g) for g in grads]

  def step(self, batch, lrs, t=1, num_classes=None, mask=None, clip_norm=None,
           example_weights=None, accumulate=None):
    """One inner update on `batch`; returns its loss.

    lrs: one learning rate, or one per learner variable (floats or scalar tensors, so a learned
    rate can be a variable); mask: a bool per variable, False = frozen (not differentiated,
    not updated); clip_norm: clip the adapted variables' gradients to this global norm;
    t: the 1-based step number within the task (Adam's bias correction); accumulate: a
    variable per learner variable (None where not wanted) that the applied (clipped) gradient
    is added to (what a learned rate's first-order gradient needs)."""
    adapted = [i for i in range(len(self.vars)) if mask is None or mask[i]]
    if not isinstance(lrs, (list, tuple)):
      lrs = [lrs] * len(self.vars)
    loss, grads = self.loss_and_grads(batch, num_classes, example_weights,
                                      variables=[self.vars[i] for i in adapted])
    if clip_norm is not None:
      grads, _ = tf.clip_by_global_norm(grads, clip_norm)
    for i, g in zip(adapted, grads):
      if accumulate is not None and accumulate[i] is not None:
        accumulate[i].assign_add(g)
    self._apply([(i, g, lrs[i]) for i, g in zip(adapted, grads)], t)
    return loss

  def _apply(self, updates, t):
    # One fused kernel per variable: written as separate ops, this update took ~11% of a meta-step.
    # The kernels take every scalar in the variable's dtype (float64 in the exactness tests).
    if self.optimizer == "sgd":
      for i, g, lr in updates:
        dtype = self.vars[i].dtype
        tf.raw_ops.ResourceApplyGradientDescent(var=self.vars[i].handle,
                                                alpha=tf.cast(lr, dtype), delta=g)
      return
    b1, b2, eps = 0.9, 0.999, 1e-8
    scalars = {}
    for i, g, lr in updates:
      dtype = self.vars[i].dtype
      if dtype not in scalars:
        step = tf.cast(t, dtype)
        b1_power, b2_power = tf.constant(b1, dtype) ** step, tf.constant(b2, dtype) ** step
        # The kernel computes lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + epsilon); torch
        # adds eps to sqrt(v / (1 - b2^t)) instead, i.e. epsilon = eps * sqrt(1 - b2^t).
        scalars[dtype] = b1_power, b2_power, eps * tf.sqrt(1.0 - b2_power)
      b1_power, b2_power, epsilon = scalars[dtype]
      tf.raw_ops.ResourceApplyAdam(
          var=self.vars[i].handle, m=self.m[i].handle, v=self.v[i].handle,
          beta1_power=b1_power, beta2_power=b2_power, lr=tf.cast(lr, dtype),
          beta1=tf.constant(b1, dtype), beta2=tf.constant(b2, dtype), epsilon=epsilon, grad=g)

  def support_batch(self, support, order, s):
    """Inner step `s`'s batch: pass s // B visits the support set in `order[pass]`, B batches of
    batch_size (the last may be smaller)."""
    n = tf.shape(order)[1]
    per_pass = (n + self.batch_size - 1) // self.batch_size
    start = (s % per_pass) * self.batch_size
    idx = order[s // per_pass, start:tf.minimum(start + self.batch_size, n)]
    return trim({k: tf.gather(v, idx) for k, v in support.items()})

  def num_steps(self, order):
    """Inner steps of len(order) passes over a support set of order.shape[1] examples."""
    n = tf.shape(order)[1]
    return (n + self.batch_size - 1) // self.batch_size * tf.shape(order)[0]

  def adapt(self, task, lrs, **step_options):
    """One `step` per support batch over all of `task`'s passes (a tensor count, so changing it
    does not retrace). Returns the number of inner steps taken."""
    total = self.num_steps(task["order"])
    for s in tf.range(total):
      self.step(self.support_batch(task["support"], task["order"], s), lrs, t=s + 1,
                num_classes=task["num_classes"], **step_options)
    return total
