r"""LEOPARD, SMLMT and Hybrid-SMLMT (Bansal et al., COLING 2020; EMNLP 2020), as the released TF1
code runs them (../shared/NOTES.md section 4). The three differ in their task sources
(pretrain_task_weight: the share of SMLMT tasks) and in warp_layers, their Configs' defaults
(Config, SMLMTConfig, HybridSMLMTConfig); this module is the meta-learner they share.

Meta-model: the encoder theta (sentence vector p(x)), classifier.GeneratedSoftmaxHead's
task-feature MLP h and softmax generator g, and learned inner learning rates alpha_k, one per group
k: the embeddings, each encoder layer, the pooler, each layer of h and the class rows (Meta-SGD;
initialised at train_lr; kept in [1e-8, 1] with clip_lr).

A task has N classes, a support set read in B batches S_0..S_{B-1} per pass (a fresh order each
pass) and a query set Q:
    W_0[c] = mean over the examples (x, c) of S_0 of g(p(x))       class rows [w_c | b_c], c < N
    logits(x)_c = h(p(x)) . w_c + b_c                                (classes >= N masked)
    for s = 1..T, T = passes x (B - 1) (the first batch of a pass is not a step, as the original's
    sgd_first_batch=False):
        g_s = clip_by_global_norm(grad L(phi_{s-1}; S_b(s)), 1.0)     over the inner-loop weights
        phi_s[v] = phi_{s-1}[v] - alpha_k(v) g_s[v]
Inner-loop weights: every weight but the generator's, the feed-forward blocks (intermediate,
output and its LayerNorm) of every layer with warp_layers, the encoder layers below
min_layer_with_grad and, without train_word_embeddings, the embeddings. With warp_layers, h is
in the clip's norm but its rate is a constant 0 (the original's), so it does not move.
Query loss: L_Q = sum_{s in P} w_s L(phi_s; Q) / W, W = sum_{s in P} w_s, with P = {T}, or with
average_query_loss (default: on with warp_layers) P = {0, T} + {s : s % average_query_every == 0};
w_s = 2^(s - T - 1) with weight_query_loss (the original's 1/2^(B - b)), else 1.
First-order meta-gradients (q_s = grad L(phi_s; Q); dphi_s/dphi_0 = I, the g_t held constant):
    theta, h   sum_s w_s q_s / W, plus for theta the generation's J_{W_0}(theta)^T dL_Q/dW_0
    g          J_{W_0}(g)^T dL_Q/dW_0, where dL_Q/dW_0 = sum_s w_s q_s[rows] / W
    alpha_k    -sum_s w_s <q_s[k], sum_{t <= s} g_t[k]> / W          (phi_s = phi_0 - alpha sum g_t)
so no second-order BERT is ever built. Outer: Model Garden's AdamW (weight decay 0.01, not on
LayerNorm, biases or the rates), 10% warm-up then linear decay, the meta-gradient clipped to
global norm 1.0. Meta-test adaptation is the same loop without the query terms.

Where this differs from the released code, on purpose: (1) h moves cumulatively from step to
step (phi_s = phi_{s-1} - alpha g_s, as every other weight); the original rebuilds h from its
meta value at every step (h_s = h_0 - alpha g_s) when it adapts h (LEOPARD, no warp layers).
(2) An explicit average_query_loss=False turns averaging off even with warp layers (the original
always averages then). (3) L_Q is always divided by W (the original does not normalise a
weighted loss taken at the last step only). (4) The outer AdamW has Adam's bias correction
(Google BERT's has none, so its first steps are larger) and does not decay the rates (the
original's names escape its exclusion list; the effect is negligible).
Precision: an inner step moves a weight by ~train_lr x a clipped gradient, far below bfloat16's
resolution, so under mixed_bfloat16 the forward passes barely see the inner loop; meta-train in
float32 (run_meta_train.py warns).
"""
import dataclasses
import re
from typing import Optional

import tensorflow as tf

from metabert_tf import classifier
from metabert_tf.errors import ConfigError
from metabert_tf.meta import base
from metabert_tf.meta import learner as learner_lib
from metabert_tf.meta import sources

NAME = "leopard"
CLIP_NORM = 1.0
RATE_RANGE = (1e-8, 1.0)
HEAD_INITS = classifier.GeneratedSoftmaxHead.INITS


@dataclasses.dataclass
class Config(sources.TaskStream):  # field names are the original's flag names
  train_lr: float = 1e-5             # initial inner learning rates
  learning_rate: float = 1e-5        # peak outer AdamW rate
  warmup_proportion: float = 0.1
  SGD_K: int = 1                     # learned rates per group (only 1, as every released run)
  warp_layers: bool = False
  is_meta_sgd: bool = True           # learn the inner rates (else fixed at train_lr)
  min_layer_with_grad: int = 0
  train_word_embeddings: bool = True
  clip_lr: bool = True
  average_query_loss: Optional[bool] = None  # None: on with warp_layers (the original)
  average_query_every: int = 3      # 3 and True: the released meta-training command's
  weight_query_loss: bool = True
  label_emb_size: int = 256          # the task features' size (released head only)
  # The head's start (classifier.GeneratedSoftmaxHead): "prototypes", a nearest-class-mean
  # classifier from the first meta-step (residual h and g, ProtoMAML's rows); "released", the
  # original's MLPs from N(0, 0.02), whose rows and logits start near zero.
  head_init: str = "prototypes"
  # The task stream (sources.TaskStream): pretrain_task_weight, the share of SMLMT tasks, is 0
  # for LEOPARD, 1 for SMLMT, 0.5 for Hybrid-SMLMT.


@dataclasses.dataclass
class SMLMTConfig(Config):
  """SMLMT (Bansal et al., EMNLP 2020): self-supervised tasks only, with warp layers."""
  warp_layers: bool = True
  pretrain_task_weight: float = 1.0


@dataclasses.dataclass
class HybridSMLMTConfig(Config):
  """Hybrid-SMLMT: half SMLMT tasks, half labeled ones, with warp layers."""
  warp_layers: bool = True
  pretrain_task_weight: float = 0.5


ENGINE_DEFAULTS = base.SOURCE_ENGINE_DEFAULTS


def rate_group(name):
  """The learned rate a variable (canonical name) uses; None: the inner loop never adapts it."""
  layer = re.match(r"transformer/layer_(\d+)/", name)
  if layer:
    return f"layer_{layer[1]}"
  if name.startswith(("word_embeddings/", "position_embedding/", "type_embeddings/",
                      "embeddings/")):
    return "embeddings"
  if name.startswith("pooler_transform/"):
    return "pooler"
  mlp = re.search(r"/(task_mlp_\d+)/", name)
  if mlp:
    return mlp[1]
  if name.endswith("/class_rows"):
    return "class_rows"
  return None  # the softmax generator


def moves(group, warp_layers):
  """Whether a weight of rate `group` moves in the inner loop: not the generator's (no group),
  nor, with warp layers, h's (in the clip's norm at rate 0, as the original)."""
  return group is not None and not (warp_layers and group.startswith("task_mlp"))


warmup_linear_decay = base.warmup_linear_decay


def ordered_groups(groups):
  """The distinct groups in one fixed order (the rates vector's), whatever the variable order:
  embeddings, layer_0..layer_L-1, pooler, task_mlp_0, task_mlp_1, class_rows."""
  def key(group):
    number = re.search(r"\d+$", group)
    rank = ["embeddings", "layer", "pooler", "task_mlp", "class_rows"].index(
        re.sub(r"_\d+$", "", group))
    return rank, int(number[0]) if number else 0
  return sorted({g for g in groups if g is not None}, key=key)


_FEED_FORWARD = re.compile(r"transformer/layer_\d+/(intermediate|output|output_layer_norm)/")


def is_feed_forward(name):
  return _FEED_FORWARD.match(name) is not None


def adapts(name, group, config):
  """Whether the inner loop differentiates (and clips) a weight of rate `group`: not, with
  warp layers, the feed-forward blocks; not the embeddings without train_word_embeddings; not
  the encoder layers below min_layer_with_grad. Fine-tuning trains the same weights."""
  if config.warp_layers and is_feed_forward(name):
    return False
  if group == "embeddings":
    return config.train_word_embeddings
  layer = re.match(r"layer_(\d+)$", group)
  return not layer or int(layer[1]) >= config.min_layer_with_grad


class InnerRates(tf.Module):
  """One learned inner learning rate per group (`names`, in that order)."""

  def __init__(self, names, initial, trainable, clip):
    super().__init__(name="inner_rates")
    self.names = list(names)
    constraint = (lambda r: tf.clip_by_value(r, *RATE_RANGE)) if clip else None
    self.rates = tf.Variable(tf.fill([len(self.names)], float(initial)), trainable=trainable,
                             constraint=constraint, name="inner_rates")


class Algorithm(base.Algorithm):
  NAME = NAME
  outer_clip_norm = CLIP_NORM

  def __init__(self, config):
    if config.SGD_K != 1:
      raise ConfigError(f"{config.SGD_K}: only 1 (one learned rate per group, as in "
                        "every released LEOPARD/SMLMT run) is supported", field="SGD_K")
    if config.average_query_every < 1:
      raise ConfigError(f"must be >= 1, got {config.average_query_every}",
                        field="average_query_every")
    super().__init__(config)
    self.averaged = (config.warp_layers if config.average_query_loss is None
                     else config.average_query_loss)

  def checkpoint_metadata(self):
    return {**super().checkpoint_metadata(), "warp_layers": bool(self.config.warp_layers)}

  def build_model(self, encoder, max_classes, pooling, dropout_rate):
    head = classifier.GeneratedSoftmaxHead(encoder.get_config()["hidden_size"], max_classes,
                                           self.config.label_emb_size,
                                           init=self.config.head_init)
    return classifier.Classifier(encoder, max_classes, pooling=pooling,
                                 dropout_rate=dropout_rate, head=head).build_all()

  def learner_only_variables(self, learner):
    return [learner.head.class_rows]

  def build(self, model, inner):
    names = [learner_lib.canonical(v.name) for v in inner.vars]
    groups = [rate_group(n) for n in names]
    self.group_names = ordered_groups(groups)
    # adapted: differentiated and clipped in the inner loop; a group id >= 0: moved, at that rate
    self.adapted = [g is not None and self._adapts(n, g) for n, g in zip(names, groups)]
    self.group_ids = [self.group_names.index(g) if a and moves(g, self.config.warp_layers)
                      else -1 for g, a in zip(groups, self.adapted)]
    self.rates = InnerRates(self.group_names, self.config.train_lr, self.config.is_meta_sgd,
                            self.config.clip_lr)
    # Per replica: the sum of the applied inner gradients, and of the weighted query gradients.
    sums = iter(learner_lib.per_replica_like(
        [v for v, g in zip(inner.vars, self.group_ids) if g >= 0], "inner_grad_sum"))
    self.grad_sums = [next(sums) if g >= 0 else None for g in self.group_ids]
    self.query_sums = learner_lib.per_replica_like(inner.vars, "query_grad_sum")
    return {"inner_rates": self.rates}

  def _adapts(self, name, group):
    return adapts(name, group, self.config)

  def outer_optimizer(self, num_steps):
    return base.bert_adamw(self.config.learning_rate, num_steps, self.config.warmup_proportion,
                           exclude=["inner_rates"])

  # ---- one task ---------------------------------------------------------------------------

  def _generate(self, inner, task, training):
    """Class rows from the first support batch, into the learner; returns them."""
    batch = inner.support_batch(task["support"], task["order"], 0)
    return base.generate_rows(inner, batch, len(inner.vars) - 1, training)

  def _steps(self, inner, task):
    """(T, the batches per pass B): B - 1 steps per pass."""
    per_pass = inner.num_steps(task["order"]) // tf.shape(task["order"])[0]
    return tf.shape(task["order"])[0] * (per_pass - 1), per_pass

  def _inner_step(self, inner, task, s, per_pass, accumulate=None):
    """Inner step s (1-based): batch 1 + (s - 1) % (B - 1) of pass (s - 1) // (B - 1)."""
    index = (s - 1) // (per_pass - 1) * per_pass + (s - 1) % (per_pass - 1) + 1
    batch = inner.support_batch(task["support"], task["order"], index)
    lrs = [self.rates.rates[g] if g >= 0 else 0.0 for g in self.group_ids]
    inner.step(batch, lrs, t=s, num_classes=task["num_classes"], mask=self.adapted,
               clip_norm=CLIP_NORM, accumulate=accumulate)

  def _query(self, inner, task, s, total, sums):
    """Adds step s's weighted query loss, gradient and rate gradient to `sums`."""
    loss_sum, weight_sum, rate_grads = sums
    w = (tf.pow(2.0, tf.cast(s - total - 1, tf.float32)) if self.config.weight_query_loss
         else tf.constant(1.0))
    loss, grads = inner.loss_and_grads(task["query"], task["num_classes"])
    for acc, g in zip(self.query_sums, grads):
      acc.assign_add(w * g)
    moved = [i for i, g in enumerate(self.group_ids) if g >= 0]
    dots = tf.stack([tf.reduce_sum(grads[i] * self.grad_sums[i]) for i in moved])
    ids = tf.constant([self.group_ids[i] for i in moved])
    rate_grads -= w * tf.math.unsorted_segment_sum(dots, ids, len(self.group_names))
    return loss_sum + w * loss, weight_sum + w, rate_grads

  def task_step(self, inner, task, meta_vars):
    n_meta = len(meta_vars)
    inner.reset(meta_vars)
    for acc in [a for a in self.grad_sums if a is not None] + self.query_sums:
      acc.assign(tf.zeros_like(acc))
    rows, tape = self._generate(inner, task, training=True)
    total, per_pass = self._steps(inner, task)
    sums = (tf.constant(0.0), tf.constant(0.0), tf.zeros([len(self.group_names)]))
    if self.averaged:
      sums = self._query(inner, task, 0, total, sums)
    for s in tf.range(1, total + 1):
      self._inner_step(inner, task, s, per_pass, accumulate=self.grad_sums)
      at_query = s == total
      if self.averaged:
        at_query = tf.logical_or(at_query, s % self.config.average_query_every == 0)
      if at_query:
        sums = self._query(inner, task, s, total, sums)
    loss_sum, weight_sum, rate_grads = sums
    shares = [q / weight_sum for q in self.query_sums]
    back = base.through_rows(tape, rows, inner, n_meta, shares[-1])
    shares = [q + g for q, g in zip(shares[:n_meta], back)]
    if self.config.is_meta_sgd:
      shares.append(rate_grads / weight_sum)
    return shares, loss_sum / weight_sum

  def adapt_for_test(self, inner, task, meta_vars):
    inner.reset(meta_vars)
    self._generate(inner, task, training=False)
    total, per_pass = self._steps(inner, task)
    for s in tf.range(1, total + 1):
      self._inner_step(inner, task, s, per_pass)
    return inner.logits(task["query"], task["num_classes"])
