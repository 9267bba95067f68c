"""One meta-training run as data (`MetaJob`) and the function that runs it.

`run_meta_train.py` builds a job from flags; the leave-one-domain-out experiment builds many.
"""
import dataclasses
import json
import os
from typing import List, Optional, Union

from absl import logging
import numpy as np
import tensorflow as tf

from metabert_tf import backbones
from metabert_tf import checkpoints
from metabert_tf import datasets
from metabert_tf import io_utils
from metabert_tf import records
from metabert_tf import runtime
from metabert_tf.data import readers
from metabert_tf.errors import DataError
from metabert_tf.meta import engine
from metabert_tf.meta import fomaml
from metabert_tf.meta import leopard
from metabert_tf.meta import reptile
from metabert_tf.meta import sources as sources_lib

# LEOPARD's family: one meta-learner; (warp_layers, default --pretrain_task_weight) per name.
TASK_SOURCE_ALGORITHMS = {"leopard": (False, 0.0), "smlmt": (True, 1.0),
                          "hybrid_smlmt": (True, 0.5)}
ALGORITHMS = {**{m.NAME: m for m in (fomaml, reptile)},
              **{name: leopard for name in TASK_SOURCE_ALGORITHMS}}


@dataclasses.dataclass
class MetaJob:
  output_dir: str
  # fomaml, reptile: any reader format with domains; the LEOPARD family: task sources, each any
  # reader format (a source per domain where examples have one), tf_record or SMLMT file.
  data: Union[str, List[str]]
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
  # The LEOPARD family's task stream (sources.py):
  pretrain_task_weight: Optional[float] = None  # None: the algorithm's (0, 1 or 0.5)
  data_sqrt_sampling: bool = True
  max_examples_per_source: int = 0              # 0: all; else a seeded sample of each file


def _smlmt_task_size(spec):
  """An SMLMT file's task_size, from the .json data_prep.smlmt writes beside it (else 0)."""
  if not datasets.is_tf_record(spec):
    return 0, None
  path = os.path.splitext(readers.plain_path(spec))[0] + ".json"
  if not os.path.exists(path):
    return 0, None
  with open(path) as f:
    meta = json.load(f)
  return (int(meta["task_size"]), int(meta["num_classes"])) if "task_size" in meta else (0, None)


def _source_groups(spec, input_encoder, max_examples, seed):
  """(features, label names, [(source name suffix, example indices, size)], task_size) of one
  --data; a source's size (its sampling weight's) counts its examples before the cap."""
  task_size, n = _smlmt_task_size(spec)
  rng = np.random.default_rng([seed, 11])
  if task_size:
    labels = [str(i) for i in range(n)]
    features = datasets.load_features(spec, input_encoder, labels)
    if len(features["label_ids"]) % task_size:
      raise DataError(spec, f"{len(features['label_ids'])} records is not a whole number of "
                      f"tasks of {task_size}")
    n_records = len(features["label_ids"])
    return features, labels, [("", np.arange(n_records), n_records)], task_size
  if datasets.is_tf_record(spec):
    meta = records.read_metadata(readers.plain_path(spec)) or {}
    if not meta.get("label_list"):
      raise DataError(spec, "a tf_record task source needs its .meta.json (label names)")
    labels = list(meta["label_list"])
    features = datasets.load_features(spec, input_encoder, labels)
    domains = meta.get("domain_list") if "domain_ids" in features else None
    sizes = (np.bincount(features["domain_ids"], minlength=len(domains)) if domains
             else [len(features["label_ids"])])
  else:
    examples = datasets.read(spec)
    domains = sorted({e.domain for e in examples}) if all(e.domain for e in examples) else None
    sizes = ([sum(e.domain == d for e in examples) for d in domains] if domains
             else [len(examples)])
    if max_examples and len(examples) > max_examples:
      examples = [examples[i] for i in np.sort(rng.choice(len(examples), max_examples, False))]
    labels = datasets.sort_labels({e.label for e in examples})
    features = records.encode(examples, input_encoder, labels, domains, source=spec)
  everything = np.arange(len(features["label_ids"]))
  if max_examples and len(everything) > max_examples:
    everything = np.sort(rng.choice(everything, max_examples, False))
  if not domains:
    return features, labels, [("", everything, int(sizes[0]))], 0
  ids = features["domain_ids"][everything]
  return features, labels, [(f":{d}", everything[ids == i], int(sizes[i]))
                            for i, d in enumerate(domains)], 0


def load_task_sources(specs, input_encoder, max_examples_per_source=0, seed=0):
  """(features, label_list, TaskSources) of the --data sources: run-wide label ids are
  "<source>:<label>", a block per source, so sources with the same label names stay apart."""
  parts, label_list, found, offset = [], [], [], 0
  for spec in specs:
    if not datasets.exists(spec):
      raise DataError(spec, "file or directory not found")
    features, labels, groups, task_size = _source_groups(spec, input_encoder,
                                                         max_examples_per_source, seed)
    path = readers.data_path(spec)
    stem = os.path.join(os.path.basename(os.path.dirname(path)),
                        os.path.splitext(os.path.basename(path))[0])
    local = features["label_ids"]
    run_ids = np.full(len(local), -1, np.int32)
    for suffix, members, size in groups:
      name = stem + suffix
      if any(s.name == name for s in found):
        raise DataError(spec, f"two --data sources are both named {name!r}")
      present = np.arange(len(labels)) if task_size else np.unique(local[members])
      if len(present) < 2:  # a task of one class teaches nothing and scores 1.0
        raise DataError(spec, f"source {name!r} has {len(present)} label"
                        f"{'' if len(present) == 1 else 's'} "
                        f"({', '.join(labels[i] for i in present)}); a task source needs >= 2")
      classes = len(label_list) + np.arange(len(present))
      label_list += [f"{name}:{labels[i]}" for i in present]
      remap = np.full(len(labels), -1, np.int32)
      remap[present] = classes
      run_ids[members] = remap[local[members]]
      found.append(sources_lib.TaskSource(name, offset + members, classes, task_size, size))
    parts.append({k: v for k, v in features.items() if k in records.MODEL_INPUTS})
    parts[-1]["label_ids"] = run_ids
    offset += len(local)
  features = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
  features["domain_ids"] = np.full(offset, -1, np.int32)
  for i, source in enumerate(found):
    features["domain_ids"][source.members] = i
  return features, label_list, found


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
  return features, label_list, domain_list, train_domains, None, exclude


def _source_inputs(job):
  """The LEOPARD family's tasks: every --data source, sampled by sources.SourceSampler."""
  if job.test_domains or job.meta_test_exclude:
    raise DataError("--test_domains", f"{job.algorithm} meta-trains on task sources; held-out "
                    "tasks are evaluated afterwards by fine-tuning (metabert_tf.harness)")
  encoder = backbones.describe_backbone(job.bert_model, job.do_lower_case).input_encoder(
      job.max_seq_length)
  specs = [job.data] if isinstance(job.data, str) else list(job.data)
  features, label_list, task_sources = load_task_sources(
      specs, encoder, job.max_examples_per_source, job.meta.seed)
  weight = job.pretrain_task_weight
  if weight is None:
    weight = TASK_SOURCE_ALGORITHMS[job.algorithm][1]
  sampler = sources_lib.SourceSampler(task_sources, features["label_ids"], job.meta.episodes,
                                      job.meta.seed, weight, job.data_sqrt_sampling)
  names = [s.name for s in task_sources]
  logging.info("Task sources (sampling probability): %s",
               ", ".join(f"{n} ({p:.3f})" for n, p in zip(names, sampler.probs)))
  return features, label_list, names, names, sampler, None


def read_inputs(job: MetaJob):
  """What `job` meta-trains on, read and checked (an entry point calls it before it creates
  the output directory, so bad data leaves nothing behind): pass it to run_meta_job."""
  by_sources = job.algorithm in TASK_SOURCE_ALGORITHMS
  return (_source_inputs if by_sources else _domain_inputs)(_with_defaults(job))


def _with_defaults(job):
  if job.algorithm in TASK_SOURCE_ALGORITHMS and job.meta.algorithm is None:
    return dataclasses.replace(job, meta=dataclasses.replace(job.meta, algorithm=leopard.Config(
        warp_layers=TASK_SOURCE_ALGORITHMS[job.algorithm][0])))
  return job


def run_meta_job(job: MetaJob, strategy=None, inputs=None):
  """Meta-trains (or resumes) `job`; returns (and writes to output_dir/results.json) results.
  `inputs`: what read_inputs(job) returned (default: read here)."""
  if job.algorithm not in ALGORITHMS:
    raise ValueError(f"algorithm must be one of {sorted(ALGORITHMS)}, got {job.algorithm!r}")
  strategy = strategy or tf.distribute.get_strategy()
  runtime.set_seed(job.meta.seed)
  runtime.set_precision(job.precision)
  by_sources = job.algorithm in TASK_SOURCE_ALGORITHMS
  if by_sources and job.precision == "bf16":
    logging.warning("%s under bf16: an inner step moves a weight by ~train_lr x a clipped "
                    "gradient, below bfloat16's resolution, so the forward passes barely see the "
                    "inner loop (leopard.py); meta-train in fp32", job.algorithm)
  job = _with_defaults(job)
  features, label_list, domain_list, train_domains, sampler, exclude = (
      inputs if inputs is not None else read_inputs(job))
  logging.info("Meta-training domains %s; test domains %s", train_domains, job.test_domains)
  with strategy.scope():
    backbone = backbones.load_backbone(job.bert_model, job.do_lower_case)
  pooling = job.pooling or backbone.pooling
  # A LEOPARD-family model has no fixed classes: fine-tuning generates them from the data.
  metadata = checkpoints.metadata_variable(
      backbone.config, backbone.vocab, backbone.lower_case,
      None if by_sources else label_list, job.max_seq_length,
      pooling=pooling, stage="meta_train", algorithm=job.algorithm,
      train_domains=train_domains, test_domains=list(job.test_domains),
      **({"warp_layers": bool(job.meta.algorithm.warp_layers)} if by_sources else {}),
      # What fine-tuning must know of the meta-learner (e.g. the layers it adapted).
      **({"algorithm_config": dataclasses.asdict(job.meta.algorithm)}
         if job.meta.algorithm is not None else {}))
  trainer = engine.MetaTrainer(strategy, ALGORITHMS[job.algorithm], backbone, label_list, pooling,
                               features, domain_list, train_domains, list(job.test_domains),
                               job.meta, job.output_dir, metadata, test_exclude=exclude,
                               train_sampler=sampler,
                               max_classes=sampler.max_classes if sampler else None)
  history = trainer.train(job.save_every_steps)
  results = {"algorithm": job.algorithm, "algorithm_config": dataclasses.asdict(
                 trainer.algorithm.config), "label_list": label_list, "pooling": pooling,
             "train_domains": train_domains, "test_domains": list(job.test_domains),
             "meta_test_history": history,
             "checkpoint": os.path.abspath(tf.train.latest_checkpoint(trainer.ckpt_dir))}
  if runtime.is_chief(strategy):
    io_utils.atomic_write_json(os.path.join(job.output_dir, "results.json"), results)
  return results
