r"""Reptile (Nichol et al. 2018), classic and as mailong25/meta-learning-bert runs it.

For each task i of a meta-batch of T tasks: phi_i = Inner^n(theta; support_i).
    classic:   theta <- theta + eps * (1/T) sum_i (phi_i - theta)
               = an SGD step with learning rate eps on the "gradient" (1/T) sum_i (theta - phi_i)
    mailong25: theta <- OuterAdam(theta, (1/T) sum_i (theta - phi_i))   (the difference fed to
               Adam as a gradient; Adam's normalisation changes the step size per weight)
The query set is not used by the update; its loss at phi_i is reported for monitoring.
"""
import tf_keras

NAME = "reptile"
VARIANTS = ("classic", "adam")


def task_contribution(inner, query, meta_vars):
  loss, _ = inner.loss_and_logits(query)
  return [theta - phi for theta, phi in zip(meta_vars, inner.vars)], loss


def outer_optimizer(learning_rate, variant="classic"):
  """`classic`: plain SGD with lr = eps; `adam`: mailong25's Adam on theta - phi."""
  if variant == "classic":
    return tf_keras.optimizers.legacy.SGD(learning_rate)
  if variant == "adam":
    return tf_keras.optimizers.legacy.Adam(learning_rate)
  raise ValueError(f"reptile variant must be one of {VARIANTS}, got {variant!r}")
