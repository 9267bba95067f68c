"""LEOPARD-style k-shot splits from any labeled examples.

  python -m data_prep.kshot --input PATH --task NAME --k 4,8,16 --num_splits 10 --seed 0 \
      --output_dir DIR [--domain D] [--eval_rest]

Writes <output_dir>/<task>/<task>_train_<F>_<K>.json for F in 0..num_splits-1 (K examples per label,
records {"sentence1", ["sentence2"], "label"}) and, with --eval_rest, <task>_eval.json holding the
examples that no split uses. For one F the K sets are nested (K=4 within K=8 within K=16).
"""
from __future__ import annotations

import os
import sys

from absl import app
from absl import flags

from metabert_tf import flag_rules
from metabert_tf import io_utils
from metabert_tf.data import readers
from metabert_tf.data.kshot import select_domain, write_kshot_files
from metabert_tf.errors import DataError


def define_flags():
  """Defined on demand, not at import: importing this module must not claim common flag names."""
  flags.DEFINE_string("input", None, "Labeled examples in any format readers.read_examples reads; "
                      f"CSV/TSV/JSON columns as {readers.SPEC_HELP}.")
  flags.DEFINE_string("task", None, "Task name for the output folder and file names.")
  flags.DEFINE_list("k", ["4", "8", "16"], "Examples per label, comma-separated.")
  flags.DEFINE_integer("num_splits", 10, "Number of random splits F = 0..num_splits-1.")
  flags.DEFINE_integer("seed", 0, "Seed of the splits.")
  flags.DEFINE_string("output_dir", None, "Writes <output_dir>/<task>/<task>_train_<F>_<K>.json.")
  flags.DEFINE_string("domain", None, "Use only the examples of this domain (e.g. Amazon 'dvd').")
  flags.DEFINE_bool("eval_rest", False, "Also write <task>_eval.json: the examples no split uses.")
  flags.mark_flags_as_required(["input", "task", "output_dir"])
  flag_rules.register()


def _parse_ks(values):
  try:
    return [int(k) for k in values]
  except ValueError:
    raise ValueError(f"--k must be comma-separated integers, got '{','.join(values)}'") from None


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  FLAGS = flags.FLAGS
  try:
    ks = _parse_ks(FLAGS.k)
    io_utils.check_writable(FLAGS.output_dir, "--output_dir", directory=True)
    examples = readers.read_examples(FLAGS.input)
    if FLAGS.domain:
      examples = select_domain(examples, FLAGS.domain, FLAGS.input)
    written = write_kshot_files(examples, FLAGS.task, FLAGS.output_dir, ks, FLAGS.num_splits,
                                FLAGS.seed, FLAGS.eval_rest, FLAGS.input)
  except (DataError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(f"wrote {len(written)} files to {os.path.join(FLAGS.output_dir, FLAGS.task)}")
  return 0


if __name__ == "__main__":
  define_flags()
  app.run(main)
