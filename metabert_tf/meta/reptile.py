r"""Reptile (Nichol et al. 2018), classic and as mailong25/meta-learning-bert runs it.

For each task i of a meta-batch of T tasks: phi_i = Inner^n(theta; support_i).
    classic:   theta <- theta + eps * (1/T) sum_i (phi_i - theta)    (eps = reptile_epsilon)
               = an SGD step with learning rate eps on the "gradient" (1/T) sum_i (theta - phi_i)
    mailong25: theta <- OuterAdam(theta, (1/T) sum_i (theta - phi_i))   (the difference fed to
               Adam, lr outer_update_lr, as a gradient; Adam rescales the step per weight)
The query set is not used by the update; its loss at phi_i is reported for monitoring.
With head="prototypes" (ProtoMAML's head, base.PlainInner) each task's head rows start at its
support set's class means and are adapted with theta; only theta's difference is meta-learned.
"""
import dataclasses

import tf_keras

from metabert_tf.errors import ConfigError
from metabert_tf.meta import base
from metabert_tf.meta import sources

NAME = "reptile"
ENGINE_DEFAULTS = base.PLAIN_ENGINE_DEFAULTS
VARIANTS = ("classic", "adam")


@dataclasses.dataclass
class Config(base.PlainInnerConfig):
  variant: str = "classic"
  reptile_epsilon: float = 0.5


class Algorithm(base.PlainInner):
  NAME = NAME

  def __init__(self, config):
    if config.variant not in VARIANTS:
      raise ConfigError(f"must be one of {', '.join(VARIANTS)}, got {config.variant!r}",
                        field="variant", flag="reptile_variant")
    super().__init__(config)

  def task_step(self, inner, task, meta_vars):
    self.adapt(inner, task, meta_vars, training=True)
    loss, _ = inner.loss_and_logits(task["query"], task["num_classes"])
    return [theta - phi for theta, phi in zip(meta_vars, inner.vars)], loss

  def outer_optimizer(self, num_steps):
    """`classic`: plain SGD with lr = reptile_epsilon; `adam`: mailong25's Adam on theta - phi."""
    del num_steps  # constant rates, as mailong25
    if self.config.variant == "classic":
      return tf_keras.optimizers.legacy.SGD(self.config.reptile_epsilon)
    return tf_keras.optimizers.legacy.Adam(self.config.outer_update_lr)


@dataclasses.dataclass
class ProtoConfig(Config, sources.TaskStream):
  """ProtoMAML's head, on task sources (tasks of any N and unrelated labels)."""
  head: str = "prototypes"
