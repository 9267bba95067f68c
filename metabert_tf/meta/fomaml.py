r"""First-order MAML (FOMAML), as Meta-BERT / mailong25 run it.

For each task i of a meta-batch of T tasks:
    phi_i  = InnerAdam^n(theta; support_i)          (n inner steps: passes x support batches)
    g_i    = grad_phi L(phi_i; query_i)             (first order: no gradient through the inner loop)
Meta update with the outer optimiser (Adam, lr 5e-5 in Meta-BERT):
    theta <- OuterAdam(theta, (1/T) sum_i g_i)
"""
import tf_keras

NAME = "fomaml"


def task_contribution(inner, query, meta_vars):
  """The per-task meta-gradient g_i (the learner was just adapted to the task) and query loss."""
  del meta_vars
  loss, grads = inner.loss_and_grads(query)
  return grads, loss


def outer_optimizer(config):
  return tf_keras.optimizers.legacy.Adam(config.outer_update_lr)
