"""One meta-training run as data (`MetaJob`) and the function that runs it.

`run_meta_train.py` builds a job from flags; the leave-one-domain-out experiment builds many.
"""
import dataclasses
import os
from typing import List, Optional, Union

from absl import logging
import numpy as np
import tensorflow as tf

from metabert_tf import backbones
from metabert_tf import checkpoints
from metabert_tf import datasets
from metabert_tf import io_utils
from metabert_tf import model_spec
from metabert_tf import runtime
from metabert_tf.errors import ConfigError
from metabert_tf.errors import DataError
from metabert_tf.meta import algorithms
from metabert_tf.meta import engine
from metabert_tf.meta import episodes
from metabert_tf.meta import sources as sources_lib



@dataclasses.dataclass(kw_only=True)
class MetaJob(model_spec.ModelSpec):
  output_dir: str
  # fomaml, reptile: any reader format with domains; the LEOPARD family: task sources, each any
  # reader format (a source per domain where examples have one), tf_record or SMLMT file.
  data: Union[str, List[str]]
  algorithm: str = "fomaml"
  test_domains: List[str] = dataclasses.field(default_factory=list)
  num_domain: int = 100
  save_every_steps: int = 0
  # Data a later evaluation scores (any reader format): the meta-test never draws its examples.
  meta_test_exclude: Optional[str] = None
  # The engine's settings; meta.algorithm: the algorithm's own Config (None: its defaults,
  # algorithms.REGISTRY's for this name).
  meta: engine.MetaConfig = dataclasses.field(default_factory=engine.MetaConfig)


# The engine's settings by run_meta_train.py's flag names (engine.MetaConfig and
# episodes.EpisodeConfig fields); the LEOPARD family's support set is named as the original's:
# meta_batchsz examples in num_batches batches (num_support and inner_batch_size follow).
ENGINE_SETTINGS = ("num_train_task", "num_test_task", "outer_batch_size", "tasks_per_replica",
                   "inner_update_step", "inner_update_step_eval", "num_query", "domain_sampling",
                   "class_balanced", "epochs", "seed", "progress", "bucket", "dropout")
DOMAIN_SETTINGS = ("num_support", "inner_batch_size")   # fomaml, reptile
SOURCE_SETTINGS = ("meta_batchsz", "num_batches")       # the task-source algorithms


def settings_of(algorithm):
  """Every setting meta_config takes for `algorithm`: the engine's, then its Config's fields."""
  entry = algorithms.get(algorithm)
  return (ENGINE_SETTINGS + (SOURCE_SETTINGS if entry.by_sources else DOMAIN_SETTINGS)
          + tuple(f.name for f in dataclasses.fields(entry.config)))


def meta_config(algorithm, strict=True, **settings):
  """The engine's MetaConfig, with `algorithm`'s own Config, from settings named as in
  settings_of(algorithm); a setting left out (or None) takes the algorithm's default (its
  ENGINE_DEFAULTS and Config: algorithms.py). run_meta_train.py and the Python API both build
  their config here, so they share one set of defaults. `strict`: a setting `algorithm` does not
  read is an error (False: ignored, for callers that pass every flag)."""
  entry = algorithms.get(algorithm)
  known = settings_of(algorithm)
  unknown = sorted(set(settings) - set(known))
  if unknown and strict:
    raise ConfigError(f"is not a setting of {algorithm} (its settings: {', '.join(known)})",
                      field=unknown[0])
  given = {k: v for k, v in settings.items() if v is not None and k in known}
  defaults = dict(entry.engine_defaults)
  if entry.by_sources:
    support, batches = given.get("meta_batchsz", 80), given.get("num_batches", 8)
    if batches < 2 or support % batches:
      raise ConfigError(f"({support}) must be a multiple of num_batches ({batches}), which "
                        "must be >= 2", field="meta_batchsz")
    defaults.update(num_support=support, inner_batch_size=support // batches)
  else:
    defaults.update(num_support=given.get("num_support", 80),
                    inner_batch_size=given.get("inner_batch_size", 16))
  pick = lambda name, default=None: given.get(name, defaults.get(name, default))  # noqa: E731
  config = engine.MetaConfig(
      episodes=episodes.EpisodeConfig(defaults["num_support"], pick("num_query"),
                                      pick("domain_sampling", "proportional"),
                                      pick("class_balanced", False)),
      num_train_task=pick("num_train_task", 50), num_test_task=pick("num_test_task", 3),
      outer_batch_size=pick("outer_batch_size"), tasks_per_replica=pick("tasks_per_replica", 0),
      inner_batch_size=defaults["inner_batch_size"], inner_update_step=pick("inner_update_step"),
      inner_update_step_eval=pick("inner_update_step_eval"), epochs=pick("epochs"),
      seed=pick("seed", 0), progress=pick("progress", True), bucket=pick("bucket", 0),
      dropout=pick("dropout", True),
      algorithm=algorithms.make_config(algorithm, **{k: v for k, v in given.items()
                                                     if k not in ENGINE_SETTINGS}))
  if config.outer_batch_size > config.num_train_task:
    raise ConfigError(f"({config.outer_batch_size}) must be at most num_train_task "
                      f"({config.num_train_task})", field="outer_batch_size")
  return config


def choose_domains(domain_list, domain_ids, test_domains, num_domain, source):
  """The training domains: the num_domain smallest domains that are not test domains."""
  counts = np.bincount(np.asarray(domain_ids), minlength=len(domain_list))
  sizes = {d: int(n) for d, n in zip(domain_list, counts) if n}
  unknown = sorted(set(test_domains) - set(sizes))
  if unknown:
    raise ConfigError(f"domains {unknown} are not in {source} "
                      f"(have {sorted(sizes)})", field="test_domains")
  rest = sorted((d for d in sizes if d not in test_domains), key=lambda d: (sizes[d], d))
  if not rest:
    raise ConfigError("no domain is left for meta-training", field="test_domains")
  return sorted(rest[:num_domain])


def excluded_examples(features, path, input_encoder, label_list):
  """A bool per example of `features`: True where its text is also in `path` (compared as
  token ids, so a duplicate of a test example elsewhere in the data is excluded too)."""
  other = datasets.load_features(path, input_encoder, label_list, allow_unseen_labels=True)
  key = lambda f, i: f["input_word_ids"][i].tobytes() + f["input_type_ids"][i].tobytes()
  banned = {key(other, i) for i in range(len(other["input_word_ids"]))}
  return np.array([key(features, i) in banned for i in range(len(features["input_word_ids"]))])


def _domain_inputs(job):
  """Meta-BERT's tasks: (features, label_list, domain_list, train domains, sampler, exclude)."""
  if not datasets.exists(job.data):
    raise DataError(job.data, "file or directory not found")
  _, encoder, features, label_list, domain_list = datasets.multidomain_job_inputs(
      job.data, job.bert_model, job.do_lower_case, job.max_seq_length, job.label_list)
  exclude = None
  if job.meta_test_exclude:
    if not datasets.exists(job.meta_test_exclude):
      raise DataError(job.meta_test_exclude, "file or directory not found")
    exclude = excluded_examples(features, job.meta_test_exclude, encoder, label_list)
  train_domains = choose_domains(domain_list, features["domain_ids"], job.test_domains,
                                 job.num_domain, job.data)
  # Built here, not in the trainer: a domain too small for a task fails before the output dir.
  sampler = episodes.EpisodeSampler(features["domain_ids"], features["label_ids"], domain_list,
                                    train_domains, job.meta.episodes, job.meta.seed)
  return features, label_list, domain_list, train_domains, sampler, exclude


def _source_inputs(job):
  """The LEOPARD family's tasks: every --data source, sampled by sources.SourceSampler."""
  if job.test_domains or job.meta_test_exclude:
    raise ConfigError(f"is for fomaml and reptile: {job.algorithm} meta-trains on task "
                      "sources, and held-out tasks are evaluated afterwards by fine-tuning "
                      "(python -m metabert_tf.experiments --protocol leopard)",
                      field="test_domains")
  encoder = backbones.describe_backbone(job.bert_model, job.do_lower_case).input_encoder(
      job.max_seq_length)
  specs = [job.data] if isinstance(job.data, str) else list(job.data)
  features, label_list, sampler = sources_lib.read_task_stream(
      specs, encoder, job.meta.algorithm, job.meta.episodes, job.meta.seed)
  names = [s.name for s in sampler.sources]
  return features, label_list, names, names, sampler, None


def read_inputs(job: MetaJob):
  """What `job` meta-trains on, read and checked (an entry point calls it before it creates
  the output directory, so bad data leaves nothing behind): pass it to run_meta_job."""
  job = _with_defaults(job)
  return (_source_inputs if algorithms.get(job.algorithm).by_sources else _domain_inputs)(job)


def _with_defaults(job):
  """`job` with its algorithm's Config filled in (that name's defaults when None)."""
  if job.meta.algorithm is None:
    return dataclasses.replace(job, meta=dataclasses.replace(
        job.meta, algorithm=algorithms.get(job.algorithm).config()))
  return job


def build_trainer(job: MetaJob, strategy=None, inputs=None):
  """(the MetaTrainer of `job`, its inputs, the job with its algorithm's defaults filled in),
  ready to train. `inputs`: what read_inputs(job) returned (default: read here)."""
  entry = algorithms.get(job.algorithm)
  strategy = strategy or tf.distribute.get_strategy()
  runtime.set_seed(job.meta.seed)
  runtime.set_precision(job.precision)
  by_sources = entry.by_sources
  if by_sources and job.precision == "bf16":
    logging.warning("%s under bf16: an inner step moves a weight by ~train_lr x a clipped "
                    "gradient, below bfloat16's resolution, so the forward passes barely see the "
                    "inner loop (leopard.py); meta-train in fp32", job.algorithm)
  job = _with_defaults(job)
  algorithm = algorithms.make(job.algorithm, job.meta.algorithm)
  inputs = inputs if inputs is not None else read_inputs(job)
  features, label_list, domain_list, train_domains, sampler, exclude = inputs
  logging.info("Meta-training domains %s; test domains %s", train_domains, job.test_domains)
  if by_sources:
    logging.info("Task sources (sampling probability): %s", ", ".join(
        f"{s.name} ({p:.3f})" for s, p in zip(sampler.sources, sampler.probs)))
  with strategy.scope():
    backbone = backbones.load_backbone(job.bert_model, job.do_lower_case)
  pooling = job.pooling or backbone.pooling
  # A LEOPARD-family model has no fixed classes: fine-tuning generates them from the data.
  metadata = checkpoints.metadata_variable(
      backbone.config, backbone.vocab, backbone.lower_case,
      None if by_sources else label_list, job.max_seq_length,
      pooling=pooling, stage="meta_train", algorithm=job.algorithm,
      train_domains=train_domains, test_domains=list(job.test_domains),
      **algorithm.checkpoint_metadata())  # what fine-tuning must know of the meta-learner
  tasks = engine.MetaTasks(features, label_list, domain_list, train_domains,
                           list(job.test_domains), test_exclude=exclude, train_sampler=sampler,
                           max_classes=sampler.max_classes if by_sources else None)
  trainer = engine.MetaTrainer(strategy, algorithm, job.meta, backbone, tasks, job.output_dir,
                               metadata, pooling=pooling)
  return trainer, inputs, job


def run_meta_job(job: MetaJob, strategy=None, inputs=None):
  """Meta-trains (or resumes) `job`; returns (and writes to output_dir/results.json) results.
  `inputs`: what read_inputs(job) returned (default: read here)."""
  strategy = strategy or tf.distribute.get_strategy()
  trainer, inputs, job = build_trainer(job, strategy, inputs)
  _, label_list, _, train_domains, _, _ = inputs
  history = trainer.train(job.save_every_steps)
  results = {"algorithm": job.algorithm, "algorithm_config": dataclasses.asdict(
                 trainer.algorithm.config), "label_list": label_list, "pooling": trainer.pooling,
             "train_domains": train_domains, "test_domains": list(job.test_domains),
             "meta_test_history": history, "num_tasks": job.meta.num_train_task * job.meta.epochs,
             "train_seconds": float(trainer.seconds.numpy()),
             "checkpoint": os.path.abspath(tf.train.latest_checkpoint(trainer.ckpt_dir))}
  if runtime.is_chief(strategy):
    io_utils.atomic_write_json(os.path.join(job.output_dir, "results.json"), results)
  return results
