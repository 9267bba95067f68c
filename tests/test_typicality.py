"""MFT typicality scores against values worked out by hand on a 2-D toy set."""
import math

import numpy as np
import pytest

from metabert_tf import typicality

# Class "p" in three domains, class "n" in two (domain C has no "n"): 2-D embeddings.
EMB = np.array([[1, 0], [1, 1], [0, 1], [1, -1], [-1, 0], [-1, -1]], np.float64)
LABELS = ["p", "p", "p", "p", "n", "n"]
DOMAINS = ["A", "A", "B", "C", "A", "B"]
# Prototypes: c[A,p] = (1, .5), c[B,p] = (0, 1), c[C,p] = (1, -1), c[A,n] = (-1, 0), c[B,n] = (-1, -1)


def _cos(a, b):
  return float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b))


def test_paper_formula_by_hand():
  t = typicality.typicality(EMB, LABELS, DOMAINS, alpha=0.5)
  # e0 = (1, 0) in (A, p): .5 cos(e0, (1,.5)) + .5/2 (cos(e0, (0,1)) + cos(e0, (1,-1)))
  assert t[0] == pytest.approx(0.5 * 2 / math.sqrt(5) + 0.25 * (0 + 1 / math.sqrt(2)), abs=1e-6)
  # e2 = (0, 1) is alone in (B, p): cos 1 to its own prototype
  assert t[2] == pytest.approx(0.5 * 1 + 0.25 * (_cos([0, 1], [1, .5]) + _cos([0, 1], [1, -1])),
                               abs=1e-6)
  # e4 = (-1, 0) in (A, n): one other domain has class n
  assert t[4] == pytest.approx(0.5 * 1 + 0.5 * _cos([-1, 0], [-1, -1]), abs=1e-6)
  # alpha weighs the own-domain term
  t1 = typicality.typicality(EMB, LABELS, DOMAINS, alpha=1.0)
  assert t1[0] == pytest.approx(2 / math.sqrt(5), abs=1e-6)


def test_easytransfer_formula_uses_the_mean_of_the_other_centroids():
  t = typicality.typicality(EMB, LABELS, DOMAINS, alpha=0.5, formula="easytransfer")
  # mean of c[B,p] and c[C,p] = (.5, 0): cosine 1 with e0
  assert t[0] == pytest.approx(0.5 * 2 / math.sqrt(5) + 0.5 * 1.0, abs=1e-6)
  paper = typicality.typicality(EMB, LABELS, DOMAINS, alpha=0.5)
  assert abs(t[0] - paper[0]) > 0.3  # the two formulas differ where it matters


def test_single_domain_is_the_cosine_to_the_own_prototype():
  t = typicality.typicality(EMB[:2], ["p", "p"], ["A", "A"])
  assert t.tolist() == pytest.approx([_cos([1, 0], [1, .5]), _cos([1, 1], [1, .5])], abs=1e-6)


def test_multi_prototype_by_hand():
  # Two tight groups in one (domain, class): k-means with P = 2 finds their means exactly.
  emb = np.array([[1, 0], [1, 0.02], [0, 1], [0.02, 1]], np.float64)
  labels, domains = ["p"] * 4, ["A"] * 4
  single = typicality.typicality(emb, labels, domains, num_prototypes=1)
  assert single[0] == pytest.approx(_cos([1, 0], [0.505, 0.505]), abs=1e-6)
  multi = typicality.typicality(emb, labels, domains, num_prototypes=2)
  centroids = [np.array([1, 0.01]), np.array([0.01, 1])]
  e = np.array([1, 0.0])
  unit = [c / np.linalg.norm(c) for c in centroids]
  logits = [-np.sum((e - u) ** 2) / typicality.MEMBERSHIP_TAU for u in unit]
  weights = np.exp(logits) / np.sum(np.exp(logits))
  expected = sum(w * _cos(e, c) for w, c in zip(weights, centroids))
  assert multi[0] == pytest.approx(expected, abs=1e-6)
  assert multi[0] > 0.99 > 0.71 > single[0]  # near its own cluster, far from the mean of both
