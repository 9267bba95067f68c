r"""First-order MAML (FOMAML), as Meta-BERT / mailong25 run it.

For each task i of a meta-batch of T tasks:
    phi_i  = InnerAdam^n(theta; support_i)          (n inner steps: passes x support batches)
    g_i    = grad_phi L(phi_i; query_i)             (first order: no gradient through the inner loop)
With head="prototypes" (ProtoMAML, base.PlainInner) phi_i includes task i's head rows W_i(theta),
made from its support set's class means, and g_i gains J_{W_i}(theta)^T grad_W L(phi_i; query_i).
Meta update with the outer optimiser (Adam, lr 5e-5 in Meta-BERT):
    theta <- OuterAdam(theta, (1/T) sum_i g_i)
"""
import dataclasses

import tf_keras

from metabert_tf.meta import base
from metabert_tf.meta import sources

NAME = "fomaml"
ENGINE_DEFAULTS = base.PLAIN_ENGINE_DEFAULTS
Config = base.PlainInnerConfig


class Algorithm(base.PlainInner):
  NAME = NAME

  def task_step(self, inner, task, meta_vars):
    made = self.adapt(inner, task, meta_vars, training=True)
    loss, grads = inner.loss_and_grads(task["query"], task["num_classes"])
    if made is None:
      return grads, loss
    n_meta = len(meta_vars)
    back = base.through_rows(made[1], made[0], inner, n_meta, grads[n_meta])
    return [g + b for g, b in zip(grads[:n_meta], back)], loss

  def outer_optimizer(self, num_steps):
    del num_steps  # a constant rate, as Meta-BERT
    return tf_keras.optimizers.legacy.Adam(self.config.outer_update_lr)


@dataclasses.dataclass
class ProtoConfig(base.PlainInnerConfig, sources.TaskStream):
  """ProtoMAML's head, on task sources (tasks of any N and unrelated labels)."""
  head: str = "prototypes"
