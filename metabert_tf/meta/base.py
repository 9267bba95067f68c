"""What a meta-learning algorithm is to the engine (learn2learn-style: one short module each).

An algorithm module exposes `NAME`, `Config` (a dataclass of its own settings) and `Algorithm`
(a subclass of `Algorithm` below, built from a Config). The engine calls, in this order:

  build(model) -> {name: trackable}     its meta-model beyond the classifier (called under the
                                        strategy scope; checkpointed and restored with it)
  outer_optimizer()                     the meta optimiser
  task_step(inner, task, meta_vars)     per task, in replica context: -> (meta-gradient share,
                                        query loss); the share has one gradient per meta_vars
                                        then per trainable variable of build()'s trackables (tf
                                        Modules); the engine weights the shares (1/T each, 0 for
                                        padding) and applies them with one all-reduce
  adapt_for_test(inner, task, meta_vars) -> query logits [q, max N] (masked past the task's N)

A task is a dict of tensors: `support` and `query` (model inputs + `label_ids` in 0..N-1),
`num_classes` (N), `order` ([passes, n_support]: the support order of every inner pass).
`inner` is a `learner.InnerLoop`; meta_vars are the meta-model's classifier weights.
"""
import dataclasses


class Algorithm:
  NAME = ""
  inner_optimizer = "sgd"  # the inner optimiser state the learner must hold (sgd: none)

  def __init__(self, config):
    self.config = config

  def build(self, model):
    del model
    return {}

  def outer_optimizer(self):
    raise NotImplementedError

  def task_step(self, inner, task, meta_vars):
    raise NotImplementedError

  def adapt_for_test(self, inner, task, meta_vars):
    raise NotImplementedError


@dataclasses.dataclass
class PlainInnerConfig:
  inner_update_lr: float = 5e-5
  inner_optimizer: str = "adam"       # Meta-BERT's; or sgd
  outer_update_lr: float = 5e-5


class PlainInner(Algorithm):
  """phi = Inner^n(theta; support): every learner weight, one learning rate, Adam or SGD over
  the support passes (Meta-BERT's inner loop, shared by FOMAML and Reptile)."""

  @property
  def inner_optimizer(self):
    return self.config.inner_optimizer

  def adapt(self, inner, task, meta_vars):
    inner.reset(meta_vars)
    inner.adapt(task, self.config.inner_update_lr)

  def adapt_for_test(self, inner, task, meta_vars):
    self.adapt(inner, task, meta_vars)
    return inner.logits(task["query"], task["num_classes"])


def make_config(module, **settings):
  """module.Config from flag-named settings, keeping those it has (each algorithm its own)."""
  names = {f.name for f in dataclasses.fields(module.Config)}
  return module.Config(**{k: v for k, v in settings.items() if k in names})
