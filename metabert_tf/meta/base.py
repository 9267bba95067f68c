"""The interface between the engine and a meta-learning algorithm, and the Meta-BERT inner loop
FOMAML and Reptile share.

One short module per algorithm (fomaml.py, reptile.py, leopard.py), as in learn2learn, but the
control runs the other way: the engine (engine.py) drives the meta-training loop and calls the
algorithm's hooks, so an algorithm holds only what makes it different. A module exposes `NAME`,
`Config` (a dataclass of its own settings, with their defaults), `ENGINE_DEFAULTS` (the engine
settings it is run with by default) and `Algorithm` (a subclass of `Algorithm` below, built from
a Config); algorithms.py registers them by name. The engine calls, in this order:

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

  def checkpoint_metadata(self):
    """What its checkpoints record beside the weights (fine-tuning reads it back)."""
    return {"algorithm_config": dataclasses.asdict(self.config)}

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


# Meta-BERT's (mailong25/meta-learning-bert) engine settings: 80 support and 20 query examples,
# inner batches of 16, 10 passes (meta-test too), 5 tasks per meta-step, 3 epochs.
PLAIN_ENGINE_DEFAULTS = dict(num_support=80, num_query=20, inner_batch_size=16,
                             inner_update_step=10, inner_update_step_eval=10, outer_batch_size=5,
                             epochs=3)


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
