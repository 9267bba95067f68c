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
`num_classes` (N), `classes` ([max N]: the run-wide label id of each task class, padded with
0), `order` ([passes, n_support]: the support order of every inner pass).
`inner` is a `learner.InnerLoop`; meta_vars are the meta-model's classifier weights.
"""
import dataclasses

import tensorflow as tf
import tf_keras
from official.nlp import optimization

from metabert_tf import classifier
from metabert_tf.errors import ConfigError


class Algorithm:
  NAME = ""
  inner_optimizer = "sgd"  # the inner optimiser state the learner must hold (sgd: none)
  outer_clip_norm = None
  head_over_run_labels = False  # the head's width: every label of the run (else the largest N)

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


def warmup_linear_decay(peak, num_steps, warmup_proportion):
  """BERT's schedule: linear warm-up over warmup_proportion of num_steps, linear decay to 0."""
  schedule = tf_keras.optimizers.schedules.PolynomialDecay(peak, max(num_steps, 1), 0.0)
  warmup = int(warmup_proportion * num_steps)
  return optimization.WarmUp(peak, schedule, warmup) if warmup else schedule


def bert_adamw(peak, num_steps, warmup_proportion, exclude=()):
  """Google BERT's optimiser (Model Garden's AdamW: weight decay 0.01, not on LayerNorm or
  biases) on warmup_linear_decay."""
  return optimization.AdamWeightDecay(
      learning_rate=warmup_linear_decay(peak, num_steps, warmup_proportion),
      weight_decay_rate=0.01, beta_1=0.9, beta_2=0.999, epsilon=1e-6,
      exclude_from_weight_decay=["LayerNorm", "layer_norm", "bias", *exclude])


def prototype_model(encoder, max_classes, pooling, dropout_rate):
  """A Classifier whose head is classifier.PrototypeHead (rows made per task)."""
  head = classifier.PrototypeHead(encoder.get_config()["hidden_size"], max_classes)
  return classifier.Classifier(encoder, max_classes, pooling=pooling, dropout_rate=dropout_rate,
                               head=head).build_all()


def generate_rows(inner, batch, n_meta, training):
  """Class rows from the labeled `batch` by the learner's head (`generate`), written into the
  learner's rows (its last variable); returns (rows, the tape that saw them made from the first
  n_meta learner weights, for `through_rows`)."""
  with tf.GradientTape(watch_accessed_variables=False) as tape:
    tape.watch(inner.vars[:n_meta])
    model = inner.model
    pooled, _ = model.encode(batch, training)
    rows = model.head.generate(model.dropout(pooled, training=training), batch["label_ids"])
  inner.vars[-1].assign(rows)
  return rows, tape


def through_rows(tape, rows, inner, n_meta, rows_grad):
  """J_rows(theta)^T rows_grad: a gradient reaching the generated rows, taken back to the
  n_meta weights that generated them (first order in everything else)."""
  grads = tape.gradient(rows, inner.vars[:n_meta], output_gradients=rows_grad,
                        unconnected_gradients=tf.UnconnectedGradients.ZERO)
  return [tf.convert_to_tensor(g) for g in grads]


# Meta-BERT's (mailong25/meta-learning-bert) engine settings: 80 support and 20 query examples,
# inner batches of 16, 10 passes (meta-test too), 5 tasks per meta-step, 3 epochs.
# LEOPARD's released engine settings (run_meta_train.py's defaults for the algorithms that draw
# from task sources): 80 support examples in 8 batches, 10 query examples, one pass, 4 tasks
# per meta-step (its 4 GPUs x 1 task), one epoch of a task stream; meta-tests adapted 5 passes.
SOURCE_ENGINE_DEFAULTS = dict(num_support=80, num_query=10, inner_batch_size=10,
                              inner_update_step=1, inner_update_step_eval=5, outer_batch_size=4,
                              epochs=1)
PLAIN_ENGINE_DEFAULTS = dict(num_support=80, num_query=20, inner_batch_size=16,
                             inner_update_step=10, inner_update_step_eval=10, outer_batch_size=5,
                             epochs=3)


HEADS = ("dense", "prototypes")


@dataclasses.dataclass
class PlainInnerConfig:
  inner_update_lr: float = 5e-5
  inner_optimizer: str = "adam"       # Meta-BERT's; or sgd
  outer_update_lr: float = 5e-5
  # "dense": Meta-BERT's head, one dense layer shared by every task (its classes must mean the
  # same in every task); "prototypes": ProtoMAML's (Triantafillou et al. 2020), a head per task
  # made from its support set (classifier.PrototypeHead) and adapted with the encoder, for
  # tasks of any N and unrelated labels.
  head: str = "dense"


class PlainInner(Algorithm):
  """phi = Inner^n(theta; support): every learner weight, one learning rate, Adam or SGD over
  the support passes (Meta-BERT's inner loop, shared by FOMAML and Reptile). With
  head="prototypes" the learner's head starts each task at the rows of the support set's class
  means under theta (ProtoMAML), and FOMAML's meta-gradient also reaches theta through them."""

  def __init__(self, config):
    if config.head not in HEADS:
      raise ConfigError(f"must be one of {', '.join(HEADS)}, got {config.head!r}", field="head")
    super().__init__(config)

  @property
  def per_task_head(self):
    return self.config.head == "prototypes"

  @property
  def inner_optimizer(self):
    return self.config.inner_optimizer

  def build_model(self, encoder, max_classes, pooling, dropout_rate):
    if not self.per_task_head:
      return super().build_model(encoder, max_classes, pooling, dropout_rate)
    return prototype_model(encoder, max_classes, pooling, dropout_rate)

  def learner_only_variables(self, learner):
    return [learner.head.class_rows] if self.per_task_head else []

  def adapt(self, inner, task, meta_vars, training=False):
    """Adapts the learner to `task`; with the per-task head returns (rows, tape) of
    generate_rows, else None."""
    inner.reset(meta_vars)
    made = None
    if self.per_task_head:
      made = generate_rows(inner, task["support"], len(meta_vars), training)
    inner.adapt(task, self.config.inner_update_lr)
    return made

  def adapt_for_test(self, inner, task, meta_vars):
    self.adapt(inner, task, meta_vars)
    return inner.logits(task["query"], task["num_classes"])
