"""One meta-training run as data (`MetaJob`) and the function that runs it.

`run_meta_train.py` builds a job from flags; the leave-one-domain-out experiment builds many.
"""
import dataclasses
import os
from typing import List, Optional

from absl import logging
import numpy as np
import tensorflow as tf

from data_prep.examples import DataError
from metabert_tf import backbones
from metabert_tf import checkpoints
from metabert_tf import datasets
from metabert_tf import io_utils
from metabert_tf import run_utils
from metabert_tf.meta import engine
from metabert_tf.meta import fomaml
from metabert_tf.meta import leopard
from metabert_tf.meta import reptile

ALGORITHMS = {m.NAME: m for m in (fomaml, reptile, leopard)}


@dataclasses.dataclass
class MetaJob:
  output_dir: str
  data: str                             # any reader format with domains
  algorithm: str = "fomaml"
  test_domains: List[str] = dataclasses.field(default_factory=list)
  num_domain: int = 100
  bert_model: str = "minilm-l6"
  do_lower_case: Optional[bool] = None
  label_list: Optional[List[str]] = None
  max_seq_length: int = 128
  precision: str = "fp32"
  pooling: Optional[str] = None
  save_every_steps: int = 0
  # Data a later evaluation scores (any reader format): the meta-test never draws its examples.
  meta_test_exclude: Optional[str] = None
  meta: engine.MetaConfig = dataclasses.field(default_factory=engine.MetaConfig)


def choose_domains(domain_list, domain_ids, test_domains, num_domain, source):
  """The training domains: the num_domain smallest domains that are not test domains."""
  counts = np.bincount(np.asarray(domain_ids), minlength=len(domain_list))
  sizes = {d: int(n) for d, n in zip(domain_list, counts) if n}
  unknown = sorted(set(test_domains) - set(sizes))
  if unknown:
    raise DataError("--test_domains", f"domains {unknown} are not in {source} "
                    f"(have {sorted(sizes)})")
  rest = sorted((d for d in sizes if d not in test_domains), key=lambda d: (sizes[d], d))
  if not rest:
    raise DataError("--test_domains", "no domain is left for meta-training")
  return sorted(rest[:num_domain])


def excluded_examples(features, path, input_encoder, label_list):
  """A bool per example of `features`: True where its text is also in `path` (compared as
  token ids, so a duplicate of a test example elsewhere in the data is excluded too)."""
  other = datasets.load_features(path, input_encoder, label_list, allow_unseen_labels=True)
  key = lambda f, i: f["input_word_ids"][i].tobytes() + f["input_type_ids"][i].tobytes()
  banned = {key(other, i) for i in range(len(other["input_word_ids"]))}
  return np.array([key(features, i) in banned for i in range(len(features["input_word_ids"]))])


def run_meta_job(job: MetaJob, strategy=None):
  """Meta-trains (or resumes) `job`; returns (and writes to output_dir/results.json) results."""
  if job.algorithm not in ALGORITHMS:
    raise ValueError(f"algorithm must be one of {sorted(ALGORITHMS)}, got {job.algorithm!r}")
  if not datasets.exists(job.data):
    raise DataError(job.data, "file or directory not found")
  strategy = strategy or tf.distribute.get_strategy()
  run_utils.set_seed(job.meta.seed)
  run_utils.set_precision(job.precision)
  _, encoder, features, label_list, domain_list = datasets.multidomain_job_inputs(
      job.data, job.bert_model, job.do_lower_case, job.max_seq_length, job.label_list)
  exclude = None
  if job.meta_test_exclude:
    if not datasets.exists(job.meta_test_exclude):
      raise DataError(job.meta_test_exclude, "file or directory not found")
    exclude = excluded_examples(features, job.meta_test_exclude, encoder, label_list)
  train_domains = choose_domains(domain_list, features["domain_ids"], job.test_domains,
                                 job.num_domain, job.data)
  logging.info("Meta-training domains %s; test domains %s", train_domains, job.test_domains)
  with strategy.scope():
    backbone = backbones.load_backbone(job.bert_model, job.do_lower_case)
  pooling = job.pooling or backbone.pooling
  metadata = checkpoints.metadata_variable(
      backbone.config, backbone.vocab, backbone.lower_case, label_list, job.max_seq_length,
      pooling=pooling, stage="meta_train", algorithm=job.algorithm,
      train_domains=train_domains, test_domains=list(job.test_domains))
  trainer = engine.MetaTrainer(strategy, ALGORITHMS[job.algorithm], backbone, label_list, pooling,
                               features, domain_list, train_domains, list(job.test_domains),
                               job.meta, job.output_dir, metadata, test_exclude=exclude)
  history = trainer.train(job.save_every_steps)
  results = {"algorithm": job.algorithm, "label_list": label_list, "pooling": pooling,
             "train_domains": train_domains, "test_domains": list(job.test_domains),
             "meta_test_history": history,
             "checkpoint": os.path.abspath(tf.train.latest_checkpoint(trainer.ckpt_dir))}
  if run_utils.is_chief(strategy):
    io_utils.atomic_write_json(os.path.join(job.output_dir, "results.json"), results)
  return results
