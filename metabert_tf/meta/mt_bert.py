r"""MT-BERT: multi-task supervised training on the meta-training sources, the LEOPARD papers'
baseline (Bansal et al. 2020): one encoder, a head per source, then fine-tuning with a new head.

The run's labels are "<source>:<label>" (sources.py), so one dense layer over all of them is a
head per source: source s's rows. A task of source s (its N classes c_1..c_N, run-wide ids)
is a minibatch, support and query alike:
    logits_j(x) = W[c_j] . p_theta(x) + b[c_j]             (j < N: the source's own rows)
    L_i         = cross-entropy over the task's examples
    theta, W   <- AdamW(theta, W; clip_by_global_norm((1/T) sum_i grad L_i, 1.0))
with the task stream of the meta-learners (sources drawn ~ sqrt(size)), so it sees the same
examples for the same budget. A new task fine-tunes the encoder with a new head (plain
fine-tuning; the source heads are not used). The meta-test scores the source head as it is.
"""
import dataclasses

import tensorflow as tf

from metabert_tf.meta import base
from metabert_tf.meta import learner as learner_lib
from metabert_tf.meta import sources

NAME = "mt_bert"
CLIP_NORM = 1.0
ENGINE_DEFAULTS = base.SOURCE_ENGINE_DEFAULTS  # the same tasks as LEOPARD's


@dataclasses.dataclass
class Config(sources.TaskStream):
  learning_rate: float = 2e-5        # peak AdamW rate
  warmup_proportion: float = 0.1


def task_logits(model, batch, task, training):
  """Logits over the task's own classes (its source's rows of the run-wide head)."""
  logits = tf.gather(model(batch, training=training), task["classes"], axis=1)
  return learner_lib.mask_logits(logits, task["num_classes"])


class Algorithm(base.Algorithm):
  NAME = NAME
  outer_clip_norm = CLIP_NORM
  head_over_run_labels = True

  def outer_optimizer(self, num_steps):
    return base.bert_adamw(self.config.learning_rate, num_steps, self.config.warmup_proportion)

  def task_step(self, inner, task, meta_vars):
    inner.reset(meta_vars)
    parts = (task["support"], task["query"])  # apart: each is trimmed to its own length
    with tf.GradientTape(watch_accessed_variables=False) as tape:
      tape.watch(inner.vars)
      logits = tf.concat([task_logits(inner.model, p, task, True) for p in parts], 0)
      labels = tf.concat([p["label_ids"] for p in parts], 0)
      loss = learner_lib.cross_entropy(labels, logits)
    grads = tape.gradient(loss, inner.vars, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return [tf.convert_to_tensor(g) for g in grads], loss

  def adapt_for_test(self, inner, task, meta_vars):
    inner.reset(meta_vars)
    return task_logits(inner.model, task["query"], task, False)
