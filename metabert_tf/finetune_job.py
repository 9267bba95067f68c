"""One fine-tuning job as data (`FinetuneJob`) and the function that runs it.

`run_finetune.py` builds a job from flags; the evaluation harness builds many in one process.
A job: load the backbone, pick the label list, train (resumable), evaluate, export, and write
results.json into its output_dir.
"""
import dataclasses
import os
import time
from typing import List, Optional

from absl import logging
import numpy as np
import tensorflow as tf

from metabert_tf import backbones
from metabert_tf import checkpoints
from metabert_tf import classifier
from metabert_tf import datasets
from metabert_tf import evaluation
from metabert_tf import export
from metabert_tf import io_utils
from metabert_tf import model_spec
from metabert_tf import runtime
from metabert_tf import training
from metabert_tf.errors import ConfigError
from metabert_tf.errors import DataError
from metabert_tf.meta import algorithms


HEAD_INITS = ("random", "prototypes")


@dataclasses.dataclass(kw_only=True)
class FinetuneJob(model_spec.ModelSpec):
  output_dir: str
  train_path: Optional[str] = None   # None: zero-shot (evaluate only)
  eval_path: Optional[str] = None
  train: training.FinetuneConfig = dataclasses.field(default_factory=training.FinetuneConfig)
  eval_batch_size: int = 64
  export_dir: Optional[str] = None    # None: no export
  dropout: bool = True                # False makes training deterministic (tests)
  allow_unseen_eval_labels: bool = False  # eval labels the head lacks: counted wrong, not an error
  # From a LEOPARD-family checkpoint: generated class rows and the learned rates (False: its
  # encoder with a new dense head and AdamW, plain fine-tuning).
  leopard_head: bool = True
  # Zero-shot with no trained classifier scores a random head: refused, unless a protocol asks
  # for that chance baseline on purpose (Meta-BERT's zero-shot row of plain BERT).
  allow_random_head: bool = False
  # The dense head's start: "random" (Google BERT's N(0, 0.02)) or "prototypes" (ProtoMAML's
  # W_c = 2 mu_c, b_c = -|mu_c|^2 from the training examples' features: a nearest-class-mean
  # classifier before the first step).
  head_init: str = "random"


def restores_head(backbone, label_list):
  """A checkpoint of ours with the same label list brings its trained classifier head."""
  return bool(backbone.checkpoint_prefix) and backbone.label_list == list(label_list)


def build_classifier(strategy, backbone, label_list, pooling, dropout=True):
  """The classifier on `backbone`'s encoder, its head restored when restores_head says so."""
  with strategy.scope():
    model = classifier.Classifier(backbone.encoder, len(label_list), pooling=pooling,
                                  dropout_rate=0.1 if dropout else 0.0).build_all()
    if restores_head(backbone, label_list):
      tf.train.Checkpoint(head=model.head).read(backbone.checkpoint_prefix).expect_partial()
      logging.info("Classifier head restored from %s", backbone.checkpoint_prefix)
  return model


def init_head_from_prototypes(model, features, num_labels, batch_size=64):
  """Sets the dense head to W_c = 2 mu_c, b_c = -|mu_c|^2, mu_c the mean sentence feature of
  the class-c training examples: logits_c = -|x - mu_c|^2 + |x|^2, so the untrained model
  already classifies by the nearest class mean (ProtoMAML's start, Triantafillou et al. 2020)."""
  means = evaluation.class_means(evaluation.sentence_features(model, features, batch_size),
                                 features["label_ids"], num_labels)
  kernel, bias = model.head.kernel, model.head.bias
  kernel.assign(tf.cast(2.0 * means.T, kernel.dtype))
  bias.assign(tf.cast(-np.sum(means ** 2, axis=1), bias.dtype))


def check_zero_shot(job, backbone, label_list):
  """Zero-shot scores the checkpoint's own trained classifier, never a random one: a model
  without one is refused, and so is a --label_list naming labels its head does not know (the
  ones it knows are mapped to the head's ids by name)."""
  meta = checkpoints.read_metadata(backbone.checkpoint_prefix) if backbone.checkpoint_prefix else {}
  if meta.get("algorithm") in algorithms.LEOPARD_FAMILY and meta.get("stage") != "finetune":
    raise DataError(job.bert_model, f"a {meta['algorithm']} checkpoint generates its classifier "
                    "from labeled examples, so it has none to evaluate zero-shot: fine-tune it "
                    "on a few labeled examples (--train_file or --task/--k)")
  if not (backbone.checkpoint_prefix and backbone.label_list):
    if job.allow_random_head:
      return
    raise DataError(job.bert_model, "zero-shot evaluation needs a trained classifier (a "
                    "checkpoint of run_finetune.py or run_meta_train.py); this model has none, "
                    "so its head would be random: fine-tune it first")
  unknown = [label for label in label_list or [] if label not in backbone.label_list]
  if unknown:
    raise DataError(job.bert_model, f"--label_list names {unknown}, which the checkpoint's "
                    f"classifier does not know (its labels: {list(backbone.label_list)})")


@dataclasses.dataclass
class Built:
  """A classifier ready to train or to score, and what its training and its checkpoints need."""
  model: classifier.Classifier
  label_list: List[str]
  pooling: str
  metadata: tf.Variable                # the checkpoints' metadata (checkpoints.py)
  recipe: Optional[object] = None      # leopard_finetune for a LEOPARD-family model, else None
  rates: Optional[dict] = None         # its learned per-variable rates (a meta-trained one)
  variables: Optional[list] = None     # the variables those rates train


def build_model(job, strategy, backbone, label_list, train=True):
  """The classifier of `job` on `backbone`'s encoder for `label_list`: from a LEOPARD-family
  checkpoint (and job.leopard_head) its generated head and learned rates, else a dense head
  (restored when the checkpoint has one for these labels)."""
  pooling = job.pooling or backbone.pooling
  logging.info("Labels (id order): %s; pooling: %s", label_list, pooling)
  # The checkpoint's algorithm says how to fine-tune it (None: plain fine-tuning).
  recipe = algorithms.finetune_recipe(
      checkpoints.read_metadata(backbone.checkpoint_prefix) if backbone.checkpoint_prefix
      else {}) if job.leopard_head else None
  if recipe is not None:  # generated class rows, learned per-layer rates
    model, rates, variables = recipe.build(strategy, backbone, len(label_list), pooling,
                                           job.dropout)
  else:
    model = build_classifier(strategy, backbone, label_list, pooling, job.dropout)
    rates = variables = None
  if recipe is not None and rates is None and train:
    raise DataError(job.bert_model, "a model fine-tuned from a LEOPARD-family checkpoint has no "
                    "learned rates: fine-tune from the meta-trained checkpoint")
  # Outside the scope: a string variable cannot be mirrored (no string collectives).
  head = {"head": recipe.HEAD, "head_init": model.head.init} if recipe is not None else {}
  metadata = checkpoints.metadata_variable(backbone.config, backbone.vocab, backbone.lower_case,
                                           label_list, job.max_seq_length, pooling=pooling,
                                           stage="finetune", **head)
  return Built(model, list(label_list), pooling, metadata, recipe, rates, variables)


def fit(job, built, train_features, source, strategy, backbone):
  """Trains `built` on `train_features` (from `source`, named in errors) by job.train, in
  job.output_dir (resumable); returns the training statistics. Its first step starts from the
  head job.head_init asks for (a LEOPARD-family head: generated class rows)."""
  datasets.require_two_labels(train_features["label_ids"], built.label_list, source)
  resumed = tf.train.latest_checkpoint(os.path.join(job.output_dir, "ckpt"))
  make_optimizer = None
  if built.recipe is not None:
    make_optimizer = lambda steps: built.recipe.optimizer(  # noqa: E731
        built.rates, steps, job.train.warmup_proportion)
    if not resumed:
      built.recipe.generate_class_rows(built.model, train_features, job.train.batch_size,
                                       job.train.seed)
  elif (job.head_init == "prototypes" and not restores_head(backbone, built.label_list)
        and not resumed):
    init_head_from_prototypes(built.model, train_features, len(built.label_list),
                              job.eval_batch_size)
  stats = training.finetune(strategy, built.model, train_features, job.output_dir, job.train,
                            built.metadata, make_optimizer=make_optimizer,
                            variables=built.variables)
  return {"num_train_examples": int(len(train_features["label_ids"])), **stats}


def run_job(job: FinetuneJob, strategy=None):
  """Runs `job`; returns (and writes to output_dir/results.json) its results."""
  strategy = strategy or tf.distribute.get_strategy()
  if job.head_init not in HEAD_INITS:
    raise ConfigError(f"must be one of {', '.join(HEAD_INITS)}, got {job.head_init!r}",
                      field="head_init")
  if runtime.is_chief(strategy):  # what a killed run left half-written (ckpt/: see training)
    io_utils.remove_leftovers(job.output_dir)
    if job.export_dir:
      io_utils.remove_leftovers(os.path.dirname(os.path.abspath(job.export_dir)),
                                names=[os.path.basename(os.path.abspath(job.export_dir))])
  runtime.set_seed(job.train.seed)
  runtime.set_precision(job.precision)
  for path in (job.train_path, job.eval_path):  # fail before the slow model load
    if path and not datasets.exists(path):
      raise DataError(path, "file not found")
  with strategy.scope():
    backbone = backbones.load_backbone(job.bert_model, job.do_lower_case, job.dropout)
  input_encoder = backbone.input_encoder(job.max_seq_length)
  paths = [p for p in (job.train_path, job.eval_path) if p]
  examples = {p: datasets.read(p) for p in paths if not datasets.is_tf_record(p)}
  record_lists = [datasets.record_label_list(p) for p in paths]
  zero_shot = job.train_path is None
  # The head's classes come from the training data; zero-shot, from the model (else the eval
  # data). A label only the eval data has is an error: the head could never predict it.
  label_source = job.eval_path if zero_shot else job.train_path
  keep_model_head = zero_shot and job.allow_unseen_eval_labels and backbone.label_list
  explicit = job.label_list or next((x for x in record_lists if x), None)
  if zero_shot:
    check_zero_shot(job, backbone, explicit)
    explicit = None  # zero-shot, the ids are the checkpoint's head's (labels map by name)
  label_list = datasets.choose_label_list(
      [] if keep_model_head else [examples[label_source]] if label_source in examples else [],
      explicit, backbone.label_list, source=label_source, must_fit_model=zero_shot)
  if job.eval_path in examples:
    datasets.unseen_labels(examples[job.eval_path], label_list, job.eval_path,
                           job.allow_unseen_eval_labels)
  built = build_model(job, strategy, backbone, label_list, train=not zero_shot)
  results = {"bert_model": job.bert_model, "label_list": label_list, "pooling": built.pooling,
             "train_file": job.train_path,
             "eval_file": job.eval_path, "precision": job.precision,
             "train_config": dataclasses.asdict(job.train), "head_init": job.head_init,
             "leopard_head": built.recipe is not None,  # generated head, learned rates
             "head": "random" if zero_shot and not restores_head(backbone, label_list)
                     and not built.recipe else "trained"}
  if not zero_shot:
    train_features = datasets.load_features(job.train_path, input_encoder, label_list)
    results.update(fit(job, built, train_features, job.train_path, strategy, backbone))
  model = built.model
  if job.eval_path:
    eval_features = datasets.load_features(job.eval_path, input_encoder, label_list,
                                           job.allow_unseen_eval_labels)
    start = time.time()
    metrics = evaluation.evaluate(model, eval_features, job.eval_batch_size,
                                  job.train.progress)
    metrics["eval_seconds"] = time.time() - start
    metrics["eval_examples_per_second"] = metrics["num_examples"] / metrics["eval_seconds"]
    results.update(metrics)
    logging.info("Eval on %s: accuracy %.4f, macro-F1 %.4f (%d examples)", job.eval_path,
                 metrics["accuracy"], metrics["macro_f1"], metrics["num_examples"])
  if job.export_dir and not zero_shot:
    with runtime.chief_keeps(job.export_dir, strategy) as export_dir:
      export.export_saved_model(model, input_encoder, label_list, export_dir)
    results["export_dir"] = job.export_dir
  if runtime.is_chief(strategy):
    io_utils.atomic_write_json(os.path.join(job.output_dir, "results.json"), results)
  return results
