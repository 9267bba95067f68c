"""Task sources for LEOPARD, SMLMT and Hybrid-SMLMT (Bansal et al. 2020).

Every labeled dataset (or each domain of one) is a source of its own N classes: its task is
num_support + num_query of its examples drawn at random (label-balanced with class_balanced).
Every SMLMT file (data_prep/smlmt.py) is a source whose consecutive blocks of task_size records
are ready-made tasks (support first, then query); a task is one block drawn at random.
A task's source is drawn with probability proportional to sqrt(its size) (data_sqrt_sampling;
else uniformly), the SMLMT sources sharing `pretrain_task_weight` of the probability and the
labeled ones the rest (0: LEOPARD, 1: SMLMT, 0.5: Hybrid-SMLMT). As episodes.EpisodeSampler,
the stream is a pure function of (seed, task index): a resumed run sees the same tasks.
"""
import dataclasses
import json
import os
import re

import numpy as np

from metabert_tf import datasets
from metabert_tf import records
from metabert_tf.data import readers
from metabert_tf.errors import ConfigError
from metabert_tf.errors import DataError
from metabert_tf.meta import episodes


@dataclasses.dataclass
class TaskStream:
  """The task-stream settings of an algorithm that meta-trains on task sources (its Config
  derives from this): the share of SMLMT tasks (0: labeled only, 1: SMLMT only), sources drawn
  ~ sqrt(size) or uniformly, and a cap on each labeled source's examples (0: all)."""
  pretrain_task_weight: float = 0.0
  data_sqrt_sampling: bool = True
  max_examples_per_source: int = 0


@dataclasses.dataclass
class TaskSource:
  name: str
  members: np.ndarray   # indices into the feature arrays (an SMLMT file: in record order)
  classes: np.ndarray   # run-wide label ids of its classes, in task-class order
  task_size: int = 0    # SMLMT: records per task (consecutive blocks); 0: a labeled source
  size: int = 0         # for the sampling weight: the source's full size (0: len(members))

  @property
  def is_smlmt(self):
    return self.task_size > 0


class SourceSampler:
  """Draws tasks from `sources` (see the module docstring)."""

  def __init__(self, sources, label_ids, config, seed, pretrain_task_weight, sqrt_sampling=True):
    self.sources, self.label_ids = list(sources), np.asarray(label_ids)
    self.config, self.seed = config, seed
    need = config.num_support + config.num_query
    for source in self.sources:
      if source.is_smlmt and source.task_size != need:
        raise DataError(source.name, f"SMLMT tasks of {source.task_size} records; "
                        f"--num_support + --num_query is {need}")
      if not source.is_smlmt and len(source.members) < need:
        raise DataError(source.name, f"{len(source.members)} examples, fewer than "
                        f"--num_support + --num_query = {need}")
    if not 0.0 <= pretrain_task_weight <= 1.0:
      raise ConfigError(f"must be in [0, 1], got {pretrain_task_weight}",
                        field="pretrain_task_weight")
    sizes = np.array([s.size or len(s.members) for s in self.sources], np.float64)
    weights = np.sqrt(sizes) if sqrt_sampling else np.ones_like(sizes)
    smlmt = np.array([s.is_smlmt for s in self.sources])
    for kind, present, share in (("SMLMT", smlmt, pretrain_task_weight),
                                 ("labeled", ~smlmt, 1.0 - pretrain_task_weight)):
      names = [s.name for s, p in zip(self.sources, present) if p]
      if names and share == 0.0:
        raise ConfigError(f"{kind} sources {names} would never be sampled with "
                          f"--pretrain_task_weight {pretrain_task_weight}", field="data")
      if share > 0.0 and not names:
        raise ConfigError(f"--pretrain_task_weight {pretrain_task_weight} gives {kind} tasks "
                          f"a share of {share:g}, but no {kind} source is given", field="data")
      if names:
        weights[present] *= share / weights[present].sum()
    self.probs = weights / weights.sum()

  @property
  def max_classes(self):
    return max(len(s.classes) for s in self.sources)

  def episode(self, index):
    rng = np.random.default_rng([self.seed, index])
    source = self.sources[rng.choice(len(self.sources), p=self.probs)]
    if source.is_smlmt:
      block = rng.integers(len(source.members) // source.task_size)
      task = source.members[block * source.task_size:(block + 1) * source.task_size]
      support, query = task[:self.config.num_support], task[self.config.num_support:]
    else:
      support, query = episodes.draw_support_and_query(rng, source.members, self.label_ids,
                                                        self.config)
    return episodes.Episode(source.name, support, query, source.classes)


_SMLMT_FILE = re.compile(r"meta_pretrain_\d+\.tf_record")  # data_prep.smlmt's file names


def _smlmt_task_size(spec):
  """An SMLMT file's task_size, from the .json data_prep.smlmt writes beside it (else 0)."""
  if not datasets.is_tf_record(spec):
    return 0, None
  path = os.path.splitext(readers.plain_path(spec))[0] + ".json"
  if not os.path.exists(path):
    if _SMLMT_FILE.fullmatch(os.path.basename(readers.plain_path(spec))):
      # Read as a labeled source, its tasks' word ids 0..N-1 would be mixed into N classes.
      raise DataError(spec, f"an SMLMT task file without its {os.path.basename(path)} (which "
                      "data_prep.smlmt writes last, beside it): re-run data_prep.smlmt, or "
                      "copy the .json too")
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
      found.append(TaskSource(name, offset + members, classes, task_size, size))
    parts.append({k: v for k, v in features.items() if k in records.MODEL_INPUTS})
    parts[-1]["label_ids"] = run_ids
    offset += len(local)
  features = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
  features["domain_ids"] = np.full(offset, -1, np.int32)
  for i, source in enumerate(found):
    features["domain_ids"][source.members] = i
  return features, label_list, found


def read_task_stream(specs, input_encoder, config, episode_config, seed):
  """(features, run-wide label_list, SourceSampler) of the --data sources under `config`'s
  TaskStream settings."""
  features, label_list, task_sources = load_task_sources(
      specs, input_encoder, config.max_examples_per_source, seed)
  sampler = SourceSampler(task_sources, features["label_ids"], episode_config, seed,
                          config.pretrain_task_weight, config.data_sqrt_sampling)
  return features, label_list, sampler
