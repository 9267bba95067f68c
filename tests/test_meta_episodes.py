"""Episode sampling: disjoint support/query, domain draws, balancing, determinism, held-out domains."""
import collections

import numpy as np
import pytest

from metabert_tf.errors import ConfigError
from metabert_tf.meta import episodes


def _sampler(config, seed=0, sizes=(100, 300), labels=None):
  domain_ids = np.concatenate([np.full(n, i) for i, n in enumerate(sizes)])
  if labels is None:
    labels = np.random.default_rng(1).integers(0, 2, len(domain_ids))
  names = [f"d{i}" for i in range(len(sizes))]
  return episodes.EpisodeSampler(domain_ids, labels, names, names, config, seed), domain_ids, labels


def test_support_and_query_are_disjoint_and_from_one_domain():
  sampler, domain_ids, _ = _sampler(episodes.EpisodeConfig(num_support=80, num_query=20))
  for i in range(20):
    e = sampler.episode(i)
    assert len(e.support) == 80 and len(e.query) == 20
    assert not set(e.support) & set(e.query) and len(set(e.support)) == 80
    assert set(domain_ids[np.concatenate([e.support, e.query])]) == {int(e.domain[1:])}


def test_domains_are_drawn_proportionally_or_uniformly():
  prop, _, _ = _sampler(episodes.EpisodeConfig(num_support=8, num_query=2))
  uni, _, _ = _sampler(episodes.EpisodeConfig(num_support=8, num_query=2, domain_sampling="uniform"))
  count = lambda s: collections.Counter(s.episode(i).domain for i in range(2000))["d1"] / 2000
  assert count(prop) == pytest.approx(0.75, abs=0.04)
  assert count(uni) == pytest.approx(0.5, abs=0.04)


def test_stream_is_a_function_of_seed_and_index():
  a, _, _ = _sampler(episodes.EpisodeConfig(num_support=8, num_query=2), seed=3)
  b, _, _ = _sampler(episodes.EpisodeConfig(num_support=8, num_query=2), seed=3)
  c, _, _ = _sampler(episodes.EpisodeConfig(num_support=8, num_query=2), seed=4)
  assert all((a.episode(i).support == b.episode(i).support).all() for i in (0, 5, 17))
  assert (a.episode(5).support == b.episode(5).support).all()  # order of calls does not matter
  assert any((a.episode(i).support != c.episode(i).support).any() for i in range(3))


def test_class_balanced_episodes():
  labels = np.array([0] * 80 + [1] * 20 + [0] * 150 + [1] * 150)
  sampler, _, _ = _sampler(episodes.EpisodeConfig(num_support=16, num_query=8, class_balanced=True),
                           labels=labels)
  for i in range(10):
    e = sampler.episode(i)
    assert len(e.support) == 16 and len(e.query) == 8 and not set(e.support) & set(e.query)
    assert collections.Counter(labels[e.support]) == {0: 8, 1: 8}
    assert collections.Counter(labels[e.query]) == {0: 4, 1: 4}


def test_errors():
  with pytest.raises(ConfigError, match="fewer than num_support"):
    _sampler(episodes.EpisodeConfig(num_support=90, num_query=20))
  with pytest.raises(ConfigError, match="both meta-training and test"):
    episodes.check_disjoint_domains(["books", "dvd"], ["dvd"])
