"""Typicality scores of Meta Fine-Tuning (Wang et al., EMNLP 2020), computed once before MFT.

An example is typical when it is close to its own class in its own domain and in the others.
With e_i the sentence embedding of example i (domain k_i, class y_i) from the starting model and
c[k, m] the mean embedding of domain k's examples of class m (the prototypes):

  paper (default):  t_i = alpha * cos(e_i, c[k_i, y_i])
                          + (1 - alpha) / (K - 1) * sum_{k' != k_i} cos(e_i, c[k', y_i])
  easytransfer:     t_i = alpha * cos(e_i, c[k_i, y_i])
                          + (1 - alpha) * cos(e_i, mean_{k' != k_i} c[k', y_i])

(the second is what Alibaba's released code computes, with alpha = 0.5). A domain without
examples of class y_i is left out of the sum; with a single domain t_i = cos(e_i, c[k_i, y_i]).

Multi-prototype (`num_prototypes` P > 1, the paper's extension): the examples of each (domain,
class) are clustered into P groups by k-means; cos(e, c[k, m]) above becomes the average of
cos(e, c[k, m, p]) over the P centroids, weighted by e's soft membership of each cluster,
softmax_p(-||e/|e| - c_p/|c_p| ||^2 / tau) (tau = MEMBERSHIP_TAU).
"""
import numpy as np

FORMULAS = ("paper", "easytransfer")
MEMBERSHIP_TAU = 0.1


def _normalise(x):
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def prototypes(embeddings, labels, domains, num_prototypes=1, seed=0):
  """{(domain, label): [P, H] centroids} (P = 1: the mean embedding, as in the paper)."""
  from sklearn.cluster import KMeans
  embeddings = np.asarray(embeddings, np.float64)
  centroids = {}
  for key in sorted(set(zip(domains, labels))):
    members = embeddings[(np.asarray(domains) == key[0]) & (np.asarray(labels) == key[1])]
    if num_prototypes == 1 or len(members) <= num_prototypes:
      centroids[key] = members.mean(0, keepdims=True)
    else:
      kmeans = KMeans(num_prototypes, n_init=10, random_state=seed).fit(members)
      centroids[key] = kmeans.cluster_centers_
  return centroids


def _similarity(unit, centroids):
  """Membership-weighted cosine of each row of `unit` to a [P, H] set of centroids."""
  centroids = _normalise(centroids)
  cos = unit @ centroids.T  # [n, P]
  if len(centroids) == 1:
    return cos[:, 0]
  distance = ((unit[:, None, :] - centroids[None]) ** 2).sum(-1)
  logits = -distance / MEMBERSHIP_TAU
  weights = np.exp(logits - logits.max(1, keepdims=True))
  weights /= weights.sum(1, keepdims=True)
  return (weights * cos).sum(1)


def typicality(embeddings, labels, domains, alpha=0.5, num_prototypes=1, formula="paper",
               seed=0):
  """t_i for every example (see the module docstring); float32 [n]."""
  if formula not in FORMULAS:
    raise ValueError(f"formula must be one of {FORMULAS}, got {formula!r}")
  embeddings = np.asarray(embeddings, np.float64)
  unit = _normalise(embeddings)
  labels, domains = np.asarray(labels), np.asarray(domains)
  centroids = prototypes(embeddings, labels, domains, num_prototypes, seed)
  scores = np.zeros(len(unit))
  for (domain, label), own in centroids.items():
    rows = np.flatnonzero((domains == domain) & (labels == label))
    e = unit[rows]
    others = [c for (d, m), c in sorted(centroids.items()) if m == label and d != domain]
    own_term = _similarity(e, own)
    if not others:
      scores[rows] = own_term
    elif formula == "paper":
      scores[rows] = alpha * own_term + (1 - alpha) * np.mean(
          [_similarity(e, c) for c in others], axis=0)
    else:  # one centroid per other domain (their means), as the released code has it
      mean_other = np.mean([c.mean(0) for c in others], axis=0, keepdims=True)
      scores[rows] = alpha * own_term + (1 - alpha) * _similarity(e, mean_other)
  return scores.astype(np.float32)
