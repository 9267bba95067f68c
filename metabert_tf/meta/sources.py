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

import numpy as np

from metabert_tf.errors import DataError
from metabert_tf.meta import episodes


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
      raise DataError("--pretrain_task_weight", f"must be in [0, 1], got {pretrain_task_weight}")
    sizes = np.array([s.size or len(s.members) for s in self.sources], np.float64)
    weights = np.sqrt(sizes) if sqrt_sampling else np.ones_like(sizes)
    smlmt = np.array([s.is_smlmt for s in self.sources])
    for kind, present, share in (("SMLMT", smlmt, pretrain_task_weight),
                                 ("labeled", ~smlmt, 1.0 - pretrain_task_weight)):
      names = [s.name for s, p in zip(self.sources, present) if p]
      if names and share == 0.0:
        raise DataError("--data", f"{kind} sources {names} would never be sampled with "
                        f"--pretrain_task_weight {pretrain_task_weight}")
      if share > 0.0 and not names:
        raise DataError("--data", f"--pretrain_task_weight {pretrain_task_weight} gives "
                        f"{kind} tasks a share of {share:g}, but no {kind} source is given")
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
