"""Episodes: a task is one domain, with disjoint support and query examples.

As in Meta-BERT (mailong25/meta-learning-bert): the domain is drawn with probability
proportional to its number of examples (or uniformly), then `num_support + num_query` distinct
examples of it are drawn at random, optionally balanced over the labels. The task stream is a
pure function of (seed, task index), so a resumed run sees exactly the tasks it would have.
"""
import dataclasses
from typing import Optional

import numpy as np

from metabert_tf.errors import ConfigError


@dataclasses.dataclass
class EpisodeConfig:
  num_support: int = 80
  num_query: int = 20
  domain_sampling: str = "proportional"  # or "uniform"
  class_balanced: bool = False


@dataclasses.dataclass
class Episode:
  domain: str
  support: np.ndarray  # indices into the feature arrays
  query: np.ndarray
  # The task's classes: label ids in task-class order (task class k is label classes[k]);
  # None: every label of the run, unchanged (a domain task of Meta-BERT).
  classes: Optional[np.ndarray] = None


class EpisodeSampler:
  """Draws episodes from the examples of `domains` (names in `domain_list` order ids), never
  from those where `exclude` (a bool per example) is True."""

  def __init__(self, domain_ids, label_ids, domain_list, domains, config, seed, exclude=None):
    self.config = config
    self.seed = seed
    self.domains = list(domains)
    self.label_ids = np.asarray(label_ids)
    ids = np.asarray(domain_ids)
    allowed = np.ones(len(ids), bool) if exclude is None else ~np.asarray(exclude, bool)
    self.members = {}
    need = config.num_support + config.num_query
    for name in self.domains:
      if name not in domain_list:
        raise ConfigError(f"domain {name!r} is not in the data (have {domain_list})", field="data")
      members = np.flatnonzero((ids == domain_list.index(name)) & allowed)
      if len(members) < need:
        left = "" if exclude is None else " not excluded"
        raise ConfigError(f"domain {name!r} has {len(members)}{left} examples, fewer "
                          f"than num_support + num_query = {need}", field="data")
      self.members[name] = members
    sizes = np.array([len(self.members[d]) for d in self.domains], np.float64)
    if config.domain_sampling == "proportional":
      self.domain_probs = sizes / sizes.sum()
    elif config.domain_sampling == "uniform":
      self.domain_probs = np.full(len(sizes), 1.0 / len(sizes))
    else:
      raise ConfigError(f"must be proportional or uniform, got {config.domain_sampling!r}",
                        field="domain_sampling")

  def episode(self, index):
    """The `index`-th episode of this sampler's stream."""
    rng = np.random.default_rng([self.seed, index])
    domain = self.domains[rng.choice(len(self.domains), p=self.domain_probs)]
    members = self.members[domain]
    return Episode(domain, *draw_support_and_query(rng, members, self.label_ids, self.config))


def draw_support_and_query(rng, members, label_ids, config):
  """(support, query): distinct examples of `members`, label-balanced with class_balanced."""
  n_s, n_q = config.num_support, config.num_query
  if config.class_balanced:
    return _balanced_split(_balanced(rng, members, label_ids, n_s + n_q), label_ids, n_s)
  chosen = rng.choice(members, n_s + n_q, replace=False)
  return chosen[:n_s], chosen[n_s:]


def _balanced(rng, members, label_ids, n):
  labels = label_ids[members]
  classes = np.unique(labels)
  per_class = [rng.permutation(members[labels == c]) for c in classes]
  # Round-robin over classes, so every label gets n // C (+1) examples where it can.
  picked = [pool[i] for i in range(max(map(len, per_class))) for pool in per_class
            if i < len(pool)]
  return np.asarray(picked[:n])


def _balanced_split(chosen, label_ids, n_support):
  """Splits round-robin-ordered examples so support and query are both label-balanced."""
  labels = label_ids[chosen]
  support, query = [], []
  for c in np.unique(labels):
    of_c = chosen[labels == c]
    k = round(len(of_c) * n_support / len(chosen))
    support.extend(of_c[:k])
    query.extend(of_c[k:])
  support, query = np.asarray(support), np.asarray(query)
  # Rounding can leave one too many on a side; move the surplus to keep the requested sizes.
  while len(support) > n_support:
    query, support = np.append(query, support[-1]), support[:-1]
  while len(support) < n_support:
    support, query = np.append(support, query[-1]), query[:-1]
  return support, query


def check_disjoint_domains(train_domains, test_domains):
  overlap = sorted(set(train_domains) & set(test_domains))
  if overlap:
    raise ConfigError(f"domains {overlap} are both meta-training and test domains; test "
                      "domains must never be seen in meta-training", field="test_domains")
