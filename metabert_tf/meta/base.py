"""What a meta-learning algorithm is to the engine (learn2learn-style: one short module each).

An algorithm module exposes `NAME`, `Config` (a dataclass of its own settings) and `Algorithm`
(a subclass of `Algorithm` below, built from a Config). The engine calls, in this order:

  build_model(encoder, max_classes, pooling, dropout_rate) -> Keras model
                                        the meta-model (and, called again, the learner copy);
                                        default: a Classifier with a dense head of max_classes
  learner_only_variables(learner) -> [variables adapted per task that no meta weight mirrors]
  build(model, inner) -> {name: trackable}  its meta-model beyond `model` (called under the
                                        strategy scope; checkpointed and restored with it), and
                                        any per-replica state it keeps beside the learner
  outer_optimizer(num_steps)            the meta optimiser (num_steps: the run's meta-steps);
                                        `outer_clip_norm`: clip the all-reduced meta-gradient
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

from metabert_tf import classifier


class Algorithm:
  NAME = ""
  inner_optimizer = "sgd"  # the inner optimiser state the learner must hold (sgd: none)
  outer_clip_norm = None

  def __init__(self, config):
    self.config = config

  def build_model(self, encoder, max_classes, pooling, dropout_rate):
    return classifier.Classifier(encoder, max_classes, pooling=pooling,
                                 dropout_rate=dropout_rate).build_all()

  def learner_only_variables(self, learner):
    del learner
    return []

  def build(self, model, inner):
    del model, inner
    return {}

  def outer_optimizer(self, num_steps):
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
