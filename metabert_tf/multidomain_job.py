"""One multi-domain training run as data (`MultiDomainJob`) and the function that runs it:
MFT and the baselines of its paper, on the supervised trainer with their loss hooks.

  mix   BERT (Mix): plain fine-tuning on every domain's data pooled
  mtl   BERT (MTL): a shared encoder and a classifier head per domain
  adv   BERT (Adv): BERT (Mix) with an adversarial domain classifier (gradient reversal)
  mft   Meta Fine-Tuning (mft.py; variant full, dc or tw in MFTConfig)

`run_meta_train.py --algorithm mix|mtl|adv|mft` builds a job from flags; the MFT experiment
builds many. BERT (S), one model per domain, is run_finetune.py on each domain's data.
"""
import dataclasses
import os
from typing import Optional

from absl import logging
import numpy as np
import tensorflow as tf

from metabert_tf import backbones
from metabert_tf import checkpoints
from metabert_tf import datasets
from metabert_tf import evaluation
from metabert_tf import finetune_job
from metabert_tf import io_utils
from metabert_tf import model_spec
from metabert_tf.errors import DataError
from metabert_tf import mft as mft_lib
from metabert_tf import objectives
from metabert_tf import runtime
from metabert_tf import training

METHODS = ("mix", "mtl", "adv", "mft")


@dataclasses.dataclass(kw_only=True)
class MultiDomainJob(model_spec.ModelSpec):
  output_dir: str
  data: str                            # any reader format with domains, or a tf_record of them
  method: str = "mft"
  eval_data: Optional[str] = None      # scored per domain after training (same domains)
  train: training.FinetuneConfig = dataclasses.field(
      default_factory=lambda: training.FinetuneConfig(epochs=2, batch_size=32))
  mft: mft_lib.MFTConfig = dataclasses.field(default_factory=mft_lib.MFTConfig)
  adversarial_weight: float = 0.1      # adv: lambda of the domain loss
  eval_batch_size: int = 64
  dropout: bool = True


def make_objective(job, num_domains, num_labels, num_layers):
  if job.method == "mix":
    return objectives.CrossEntropy()
  if job.method == "mtl":
    return objectives.MultiTask(num_domains, num_labels)
  if job.method == "adv":
    return objectives.Adversarial(num_domains, job.adversarial_weight)
  if job.method == "mft":
    return mft_lib.MFTObjective(job.mft, num_domains, num_layers)
  raise ValueError(f"method must be one of {METHODS}, got {job.method!r}")


def run_multidomain_job(job: MultiDomainJob, strategy=None):
  """Trains (or resumes) `job`; returns (and writes to output_dir/results.json) its results."""
  strategy = strategy or tf.distribute.get_strategy()
  runtime.set_seed(job.train.seed)
  runtime.set_precision(job.precision)
  source, input_encoder, features, label_list, domain_list = datasets.multidomain_job_inputs(
      job.data, job.bert_model, job.do_lower_case, job.max_seq_length, job.label_list)
  datasets.require_two_labels(features["label_ids"], label_list, job.data)
  eval_features = None if not job.eval_data else _eval_features(job, input_encoder, label_list,
                                                                domain_list)
  objective = make_objective(job, len(domain_list), len(label_list),
                             source.config.num_hidden_layers)
  with strategy.scope():
    backbone = backbones.load_backbone(job.bert_model, job.do_lower_case, job.dropout)
  pooling = job.pooling or backbone.pooling
  model = finetune_job.build_classifier(strategy, backbone, label_list, pooling, job.dropout)
  logging.info("%s on %d examples of domains %s; labels %s", job.method, len(features["label_ids"]),
               domain_list, label_list)
  if job.method == "mft" and job.mft.uses_typicality:
    features["example_weights"] = mft_lib.typicality_scores(
        model, features, job.mft, os.path.join(job.output_dir, "typicality.json"),
        job.eval_batch_size, job.train.progress)
  metadata = checkpoints.metadata_variable(
      backbone.config, backbone.vocab, backbone.lower_case, label_list, job.max_seq_length,
      pooling=pooling, stage="multidomain", method=job.method, domain_list=domain_list)
  results = {"method": job.method, "bert_model": job.bert_model, "data": job.data,
             "label_list": label_list, "domain_list": domain_list, "pooling": pooling,
             "precision": job.precision, "num_train_examples": int(len(features["label_ids"])),
             "train_config": dataclasses.asdict(job.train)}
  if job.method == "mft":
    results["mft_config"] = dataclasses.asdict(job.mft)
    results["corruption_layers"] = objective.layers
  results.update(training.finetune(strategy, model, features, job.output_dir, job.train,
                                   metadata, objective))
  results["checkpoint"] = os.path.abspath(results["checkpoint"])
  if eval_features is not None:
    results["eval"] = evaluate_per_domain(model, objective, eval_features, domain_list,
                                          job.eval_batch_size, job.train.progress)
  if runtime.is_chief(strategy):
    io_utils.atomic_write_json(os.path.join(job.output_dir, "results.json"), results)
  return results


def _eval_features(job, input_encoder, label_list, domain_list):
  features, eval_labels, eval_domains = datasets.multidomain_features(
      job.eval_data, input_encoder, label_list)
  unknown = sorted(set(eval_domains) - set(domain_list))
  if unknown or eval_labels != label_list:
    raise DataError(job.eval_data, f"domains {unknown} or labels {eval_labels} are not "
                    f"those of the training data ({domain_list}, {label_list})")
  # Domain ids follow the training data's list (the MTL heads are indexed by them).
  remap = np.array([domain_list.index(d) for d in eval_domains], np.int32)
  features["domain_ids"] = remap[features["domain_ids"]]
  return features


def evaluate_per_domain(model, objective, features, domain_list, batch_size=64, progress=True):
  """{domain: metrics} and their mean accuracy, scored as the objective scores (MTL: the
  domain's own head)."""
  logits = evaluation.predict_logits(model, features, batch_size, progress,
                                     forward=objective.logits)
  by_domain = {}
  for i, domain in enumerate(domain_list):
    rows = features["domain_ids"] == i
    if rows.any():
      by_domain[domain] = evaluation.classification_metrics(
          features["label_ids"][rows], logits[rows].argmax(-1))
  mean = float(np.mean([m["accuracy"] for m in by_domain.values()]))
  logging.info("Per-domain accuracy: %s (mean %.4f)",
               {d: round(m["accuracy"], 4) for d, m in by_domain.items()}, mean)
  return {"by_domain": by_domain, "mean_accuracy": mean}

