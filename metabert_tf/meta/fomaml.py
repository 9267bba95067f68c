r"""First-order MAML (FOMAML), as Meta-BERT / mailong25 run it.

For each task i of a meta-batch of T tasks:
    phi_i  = InnerAdam^n(theta; support_i)          (n inner steps: passes x support batches)
    g_i    = grad_phi L(phi_i; query_i)             (first order: no gradient through the inner loop)
Meta update with the outer optimiser (Adam, lr 5e-5 in Meta-BERT):
    theta <- OuterAdam(theta, (1/T) sum_i g_i)
"""
import tf_keras

from metabert_tf.meta import base

NAME = "fomaml"
ENGINE_DEFAULTS = base.PLAIN_ENGINE_DEFAULTS
Config = base.PlainInnerConfig


class Algorithm(base.PlainInner):
  NAME = NAME

  def task_step(self, inner, task, meta_vars):
    self.adapt(inner, task, meta_vars)
    loss, grads = inner.loss_and_grads(task["query"], task["num_classes"])
    return grads, loss

  def outer_optimizer(self, num_steps):
    del num_steps  # a constant rate, as Meta-BERT
    return tf_keras.optimizers.legacy.Adam(self.config.outer_update_lr)
