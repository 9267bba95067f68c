"""Frozen-encoder baselines, what a user tries first: the backbone's sentence features, never
trained, and a light classifier on them.

  prototypes  the nearest class mean by cosine: class c's prototype is the mean feature of its
              training examples; an example goes to the prototype of largest cosine
  euclidean   the nearest class mean by Euclidean distance (prototypical networks' rule: how a
              Proto-BERT encoder, meta-trained with it, classifies a new task)
  lr          logistic (softmax) regression on the features, L2-regularised, fitted full-batch
              by Adam from zero (a convex problem: no seed dependence)

Both are strong at K=4 with sentence-transformer backbones such as the bundled minilm-l6.
`run_job` writes output_dir/results.json as the fine-tuning jobs do (accuracy, macro-F1, the
predicted class counts). A process keeps its last model and eval features, so the splits of a
protocol's cell build the encoder and score the eval file once.
"""
import dataclasses
import os
import time
from typing import Optional

import numpy as np
import tensorflow as tf
import tf_keras

from metabert_tf import backbones
from metabert_tf import classifier
from metabert_tf import datasets
from metabert_tf import evaluation
from metabert_tf import io_utils
from metabert_tf import model_spec
from metabert_tf import runtime
from metabert_tf.errors import ConfigError

CLASSIFIERS = ("prototypes", "euclidean", "lr")
# The last frozen model and eval features of this process: a protocol's cell scores the same
# encoder on the same eval file for every split, and the features do not change.
_LAST = {}


def _cached(kind, key, make):
  """make(), or the value kept for the same `key` of this `kind` (one kept per kind)."""
  if _LAST.get(kind, (None,))[0] != key:
    _LAST[kind] = (key, make())
  return _LAST[kind][1]


@dataclasses.dataclass(kw_only=True)
class FrozenJob(model_spec.ModelSpec):
  output_dir: str
  train_path: str
  eval_path: Optional[str] = None
  classifier: str = "prototypes"
  l2: float = 1e-3            # lr: weight of |W|^2 in the loss
  steps: int = 300            # lr: full-batch Adam steps
  learning_rate: float = 0.05
  eval_batch_size: int = 64


def fit_prototypes(x, labels, num_labels):
  """Unit-norm class means [N, H] (a class without examples: zeros, never chosen)."""
  means = evaluation.class_means(x, labels, num_labels)
  return means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)


def predict_prototypes(prototypes, x):
  x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
  return np.argmax(x @ prototypes.T, axis=1)


def predict_nearest_mean(means, x):
  """The class whose mean is nearest to each row of x (squared Euclidean distance)."""
  return np.argmax(2.0 * x @ means.T - np.sum(means ** 2, axis=1), axis=1)


def fit_lr(x, labels, num_labels, l2, steps, learning_rate):
  """(W [H, N], b [N]) of softmax regression: mean cross-entropy + l2 |W|^2, Adam from 0."""
  w = tf.Variable(tf.zeros([x.shape[1], num_labels]))
  b = tf.Variable(tf.zeros([num_labels]))
  optimizer = tf_keras.optimizers.Adam(learning_rate)
  x, y = tf.constant(x), tf.constant(labels)

  @tf.function
  def step():
    with tf.GradientTape() as tape:
      logits = x @ w + b
      loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
      loss += l2 * tf.reduce_sum(w * w)
    optimizer.apply_gradients(zip(tape.gradient(loss, [w, b]), [w, b]))
    return loss

  for _ in range(steps):
    step()
  return w.numpy(), b.numpy()


def run_job(job: FrozenJob):
  """Fits the job's classifier on frozen features; returns (and writes) its results."""
  if job.classifier not in CLASSIFIERS:
    raise ConfigError(f"must be one of {', '.join(CLASSIFIERS)}, got {job.classifier!r}",
                      field="classifier")
  runtime.set_precision(job.precision)
  examples = datasets.read(job.train_path)
  label_list = datasets.choose_label_list([examples], job.label_list, source=job.train_path)

  def build():
    backbone = backbones.load_backbone(job.bert_model, job.do_lower_case, dropout=False)
    pooling = job.pooling or backbone.pooling
    return backbone, pooling, classifier.Classifier(backbone.encoder, len(label_list),
                                                    pooling=pooling, dropout_rate=0.0).build_all()
  model_key = (job.bert_model, job.do_lower_case, job.precision, job.pooling, len(label_list))
  backbone, pooling, model = _cached("model", model_key, build)
  encoder = backbone.input_encoder(job.max_seq_length)
  train = datasets.load_features(job.train_path, encoder, label_list)
  datasets.require_two_labels(train["label_ids"], label_list, job.train_path)
  start = time.time()
  x = evaluation.sentence_features(model, train, job.eval_batch_size)
  results = {"bert_model": job.bert_model, "label_list": label_list, "pooling": pooling,
             "train_file": job.train_path, "eval_file": job.eval_path,
             "method": f"frozen-{job.classifier}", "num_train_examples": len(x)}
  if job.classifier == "prototypes":
    prototypes = fit_prototypes(x, train["label_ids"], len(label_list))
    predict = lambda feats: predict_prototypes(prototypes, feats)  # noqa: E731
  elif job.classifier == "euclidean":
    means = evaluation.class_means(x, train["label_ids"], len(label_list))
    predict = lambda feats: predict_nearest_mean(means, feats)  # noqa: E731
  else:
    w, b = fit_lr(x, train["label_ids"], len(label_list), job.l2, job.steps, job.learning_rate)
    predict = lambda feats: np.argmax(feats @ w + b, axis=1)  # noqa: E731
  results["train_accuracy"] = float(np.mean(predict(x) == train["label_ids"]))
  results["train_seconds"] = time.time() - start
  if job.eval_path:
    start = time.time()

    def featurize():
      evals = datasets.load_features(job.eval_path, encoder, label_list)
      return evals, evaluation.sentence_features(model, evals, job.eval_batch_size)
    evals, features = _cached("eval", (model_key, job.max_seq_length, tuple(label_list),
                                       job.eval_path), featurize)
    predictions = predict(features)
    results.update(evaluation.classification_metrics(evals["label_ids"], predictions))
    results["eval_seconds"] = time.time() - start
  os.makedirs(job.output_dir, exist_ok=True)
  io_utils.atomic_write_json(os.path.join(job.output_dir, "results.json"), results)
  return results
