r"""The Amazon splits of the MFT paper (Wang et al. 2020, Table 2), written once as files.

  python -m data_prep.mft_splits --data ../shared/data/blitzer_mds_4domain \
      --output_dir data/mft_amazon --seed 0

Per domain a seeded shuffle of its 2,000 reviews is cut into the paper's train / dev / test
sizes (Book 1,763 / 120 / 117, DVD 1,752 / 120 / 128, Electronics 1,729 / 144 / 127, Kitchen
1,756 / 119 / 125), and the few-shot training sets take the first 5%, 10% and 20% of each
domain's training examples (nested). Writes <output_dir>/<domain>/{train,dev,test,
train_5pct,train_10pct,train_20pct}.jsonl and all_<split>.jsonl (every domain, with its
`domain` field), plus splits.json with the counts and the seed. Same seed, same files.
"""
import json
import os
import random
import sys

from absl import app
from absl import flags

from metabert_tf import cli
from metabert_tf import flag_rules
from metabert_tf import io_utils
from metabert_tf.data import readers
from metabert_tf.errors import DataError

# Paper sizes: domain (folder name) -> (train, dev, test).
PAPER_SIZES = {"books": (1763, 120, 117), "dvd": (1752, 120, 128),
               "electronics": (1729, 144, 127), "kitchen": (1756, 119, 125)}
FRACTIONS = (5, 10, 20)  # percent of each domain's training data, the few-shot table
SPLITS = ("train", "dev", "test") + tuple(f"train_{p}pct" for p in FRACTIONS)

FLAGS = flags.FLAGS


def define_flags():
  """The CLI's flags (only when run as a program: importing must not claim flag names)."""
  flags.DEFINE_string("data", None, "The Amazon reviews (<domain>/{positive,negative}.review).")
  flags.DEFINE_string("output_dir", None, "Where the split files go.")
  flags.DEFINE_integer("seed", 0, "Seed of the shuffle.")
  flags.mark_flags_as_required(["data", "output_dir"])
  flag_rules.register()


def split_domain(examples, sizes, seed, domain):
  """{split: [examples]} for one domain: train/dev/test of `sizes`, nested fractions of train."""
  if len(examples) != sum(sizes):
    raise DataError(domain, f"{len(examples)} reviews; the paper's split needs {sum(sizes)}")
  order = list(examples)
  random.Random(f"{seed}:{domain}").shuffle(order)
  train, dev, test = (order[:sizes[0]], order[sizes[0]:sizes[0] + sizes[1]],
                      order[sizes[0] + sizes[1]:])
  parts = {"train": train, "dev": dev, "test": test}
  for percent in FRACTIONS:
    parts[f"train_{percent}pct"] = train[:round(len(train) * percent / 100)]
  return parts


def write_splits(data, output_dir, seed=0):
  """Writes every split file; returns the counts written (also in splits.json)."""
  examples = readers.read_amazon_reviews(data, sorted(PAPER_SIZES))
  by_domain = {d: [e for e in examples if e.domain == d] for d in PAPER_SIZES}
  parts = {d: split_domain(by_domain[d], PAPER_SIZES[d], seed, d) for d in sorted(PAPER_SIZES)}
  counts = {}
  for split in SPLITS:
    for domain in parts:
      _write_jsonl(os.path.join(output_dir, domain, f"{split}.jsonl"), parts[domain][split])
      counts[f"{domain}/{split}"] = len(parts[domain][split])
    everything = [e for domain in parts for e in parts[domain][split]]
    _write_jsonl(os.path.join(output_dir, f"all_{split}.jsonl"), everything)
  io_utils.atomic_write_json(os.path.join(output_dir, "splits.json"),
                             {"seed": seed, "source": os.path.abspath(data), "counts": counts})
  return counts


def _write_jsonl(path, examples):
  with io_utils.atomic_open(path) as f:
    for e in examples:
      f.write(json.dumps({"text": e.text_a, "label": e.label, "domain": e.domain},
                         ensure_ascii=False) + "\n")


def main(_):
  with cli.user_errors_exit():
    counts = write_splits(FLAGS.data, FLAGS.output_dir, FLAGS.seed)
    print(f"wrote {len(counts)} split files to {FLAGS.output_dir}", file=sys.stderr)


if __name__ == "__main__":
  define_flags()
  app.run(main)
