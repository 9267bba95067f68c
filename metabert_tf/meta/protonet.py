r"""Proto-BERT: prototypical networks (Snell et al. 2017) on the BERT encoder, the LEOPARD
papers' baseline (Bansal et al. 2020).

For each task i of a meta-batch of T tasks, with p_theta(x) the sentence features (dropout on):
    mu_c      = mean of p_theta(x) over the support examples (x, c)
    logits_c  = 2 p_theta(x) . mu_c - |mu_c|^2 = |p|^2 - |p - mu_c|^2    (classifier.PrototypeHead)
    L_i       = cross-entropy of the query examples' logits (classes >= N masked)
    theta    <- AdamW(theta, clip_by_global_norm((1/T) sum_i grad_theta L_i, 1.0))
The gradient is exact (the prototypes are functions of theta, differentiated through); there is
no inner loop. AdamW is Google BERT's (base.bert_adamw), 10% warm-up then linear decay. A new
task is classified by the nearest class mean of its K-shot examples under the meta-trained
encoder (frozen.py's "euclidean"; the meta-test here does the same with the support set).
"""
import dataclasses

import tensorflow as tf

from metabert_tf import classifier
from metabert_tf.meta import base
from metabert_tf.meta import learner as learner_lib
from metabert_tf.meta import sources

NAME = "proto_bert"
CLIP_NORM = 1.0
ENGINE_DEFAULTS = base.SOURCE_ENGINE_DEFAULTS  # the same tasks as LEOPARD's


@dataclasses.dataclass
class Config(sources.TaskStream):
  learning_rate: float = 2e-5        # peak outer AdamW rate
  warmup_proportion: float = 0.1


class Algorithm(base.Algorithm):
  NAME = NAME
  outer_clip_norm = CLIP_NORM

  def build_model(self, encoder, max_classes, pooling, dropout_rate):
    return base.prototype_model(encoder, max_classes, pooling, dropout_rate)

  def learner_only_variables(self, learner):
    return [learner.head.class_rows]

  def outer_optimizer(self, num_steps):
    return base.bert_adamw(self.config.learning_rate, num_steps, self.config.warmup_proportion)

  def task_step(self, inner, task, meta_vars):
    inner.reset(meta_vars)
    model, n_meta = inner.model, len(meta_vars)
    support, query = task["support"], task["query"]
    with tf.GradientTape(watch_accessed_variables=False) as tape:
      tape.watch(inner.vars[:n_meta])
      pooled, _ = model.encode(support, True)
      rows = model.head.generate(model.dropout(pooled, training=True), support["label_ids"])
      features = tf.cast(model.dropout(model.encode(query, True)[0], training=True), tf.float32)
      logits = learner_lib.mask_logits(classifier.rows_logits(features, rows),
                                       task["num_classes"])
      loss = learner_lib.cross_entropy(query["label_ids"], logits)
    grads = tape.gradient(loss, inner.vars[:n_meta],
                          unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return [tf.convert_to_tensor(g) for g in grads], loss

  def adapt_for_test(self, inner, task, meta_vars):
    inner.reset(meta_vars)
    base.generate_rows(inner, task["support"], len(meta_vars), training=False)
    return inner.logits(task["query"], task["num_classes"])
