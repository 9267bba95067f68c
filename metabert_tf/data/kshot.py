"""LEOPARD-style k-shot splits of labeled examples: K per label, nested over K, seeded per
(seed, split, label); written in LEOPARD layout (data_prep.kshot is the program)."""
from __future__ import annotations

import collections
import json
import os
import random

from metabert_tf import io_utils
from metabert_tf.errors import DataError


def build_kshot_splits(examples, ks, num_splits=10, seed=0, path="<examples>"):
  """Returns {(split, k): [indices into examples]}, k examples per label, labels interleaved.

  Each (seed, split, label) gets its own shuffle of that label's examples and every K takes a prefix
  of it, so the K sets are nested and one label's draw does not depend on the others or on `ks`.
  Raises DataError when some label has fewer than max(ks) examples.
  """
  ks = sorted(set(ks))
  if not ks or ks[0] < 1 or num_splits < 1:
    raise ValueError(f"need k >= 1 and num_splits >= 1, got k={ks}, num_splits={num_splits}")
  by_label = collections.defaultdict(list)
  for i, example in enumerate(examples):
    by_label[example.label].append(i)
  if not by_label:
    raise DataError(path, "no examples")
  counts = {label: len(by_label[label]) for label in sorted(by_label)}
  if len(counts) < 2:
    raise DataError(path, f"one label ({next(iter(counts))!r}) in {len(examples)} examples: "
                    "a k-shot split of a classification task needs >= 2 labels")
  for label, count in counts.items():
    if count < ks[-1]:
      raise DataError(path, f"K={ks[-1]} is larger than label '{label}' has ({count} examples; "
                      f"per-label counts {counts})")
  splits = {}
  for split in range(num_splits):
    orders = []
    for label in counts:
      order = list(by_label[label])
      # A string seed is hashed (sha512) by random.Random: stable across runs, unlike hash().
      random.Random(f"{seed}:{split}:{label}").shuffle(order)
      orders.append(order)
    for k in ks:
      # Round-robin over labels so that any prefix of a file stays balanced.
      splits[(split, k)] = [i for group in zip(*(order[:k] for order in orders)) for i in group]
  return splits


def leopard_record(example):
  """LabeledExample -> LEOPARD JSON record."""
  record = {"sentence1": example.text_a}
  if example.text_b is not None:
    record["sentence2"] = example.text_b
  record["label"] = example.label
  return record


def write_kshot_files(examples, task, output_dir, ks, num_splits=10, seed=0, eval_rest=False,
                      path="<examples>"):
  """Builds the splits and writes them (atomically) in LEOPARD layout; returns the written paths."""
  if not task or task in (".", "..") or "/" in task or os.sep in task:
    raise ValueError(f"task must be a plain name, got '{task}'")
  if any(example.text_a is None for example in examples):
    raise DataError(path, "examples have no text (a tf_record needs a vocab to be decoded)")
  splits = build_kshot_splits(examples, ks, num_splits, seed, path)
  task_dir = os.path.join(output_dir, task)
  written = []
  for (split, k), indices in sorted(splits.items()):
    written.append(os.path.join(task_dir, f"{task}_train_{split}_{k}.json"))
    _write_records(written[-1], [leopard_record(examples[i]) for i in indices])
  if eval_rest:
    used = set().union(*splits.values())
    rest = [leopard_record(e) for i, e in enumerate(examples) if i not in used]
    if not rest:
      raise DataError(path, "--eval_rest: the splits use every example, none is left for eval")
    written.append(os.path.join(task_dir, f"{task}_eval.json"))
    _write_records(written[-1], rest)
  return written


def _write_records(path, records):
  """A JSON list, one record per line: still plain JSON, but readable and diff-friendly."""
  lines = ",\n".join(json.dumps(r, ensure_ascii=False) for r in records)
  io_utils.atomic_write_text(path, f"[\n{lines}\n]\n")


def select_domain(examples, domain, path):
  """Examples of one domain; DataError listing the domains present when there are none."""
  selected = [e for e in examples if e.domain == domain]
  if not selected:
    present = sorted({str(e.domain) for e in examples})
    raise DataError(path, f"no examples with domain '{domain}' (domains: {', '.join(present)})")
  return selected
