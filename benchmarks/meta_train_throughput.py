r"""Meta-training throughput (FOMAML, LEOPARD): examples/second over every support and query
example passed forward and backward, fp32 and bf16, and LEOPARD's over FOMAML's in the same run.

  .venv/bin/python benchmarks/meta_train_throughput.py --data ../shared/data/blitzer_mds_4domain

Default configuration (issue #3): minilm-l6, max_seq_length 128, inner batch 16, 80 support +
20 query per task, 5 inner steps (one pass over the support set), 2 tasks per meta-step.
Per meta-step: 2 x (5 x 16 + 20) = 200 examples. LEOPARD at the same shape: its first support
batch generates the class rows (forward, and backward for the generator's meta-gradient), the
other 4 are inner SGD steps with the learned rates, the query loss after the last (FOMAML: 5
inner Adam steps, Meta-BERT's). Also reported: GFLOP per example (from the
model's shapes at the computed lengths), GFLOP/s and its fraction of this machine's matmul peak,
measured in the same run. Run on a quiet machine.
"""
import tempfile
import time

import os, sys  # noqa: E401,E402
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo
from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import metabert_tf  # noqa: F401,E402  (first: it keeps TF's C++ log lines quiet)
import tensorflow as tf  # noqa: E402

import bench_common  # noqa: E402
from metabert_tf import backbones, checkpoints, records, runtime  # noqa: E402
from metabert_tf import flag_rules  # noqa: E402
from metabert_tf.data import readers  # noqa: E402
from metabert_tf.meta import engine, episodes, fomaml, leopard  # noqa: E402

bench_common.define_flags("Multi-domain data (e.g. the Amazon reviews directory).")
flags.DEFINE_integer("inner_batch_size", 16, "Inner batch size.")
flags.DEFINE_integer("num_support", 80, "Support examples per task.")
flags.DEFINE_integer("num_query", 20, "Query examples per task.")
flags.DEFINE_integer("tasks_per_step", 2, "Tasks per meta-step.")
flags.DEFINE_integer("steps", 8, "Timed meta-steps (after 2 warm-up steps).")
flags.DEFINE_integer("bucket", 32, "Length bucket; 0 pads every batch to max_seq_length.")
flags.DEFINE_list("algorithms", ["fomaml", "leopard"], "Meta-learners to time, in turn.")
ALGORITHMS = {"fomaml": fomaml, "leopard": leopard}
flag_rules.register()  # every numeric and list flag's bounds
FLAGS = flags.FLAGS


def build_trainer(precision, examples, output_dir, algorithm=fomaml):
  """A MetaTrainer of the benchmark's configuration (also used by profile_meta_step.py)."""
  runtime.set_precision(precision)
  runtime.set_seed(0)
  backbone = backbones.load_backbone(FLAGS.bert_model)
  labels = sorted({e.label for e in examples})
  domains = sorted({e.domain for e in examples})
  features = records.encode(examples, backbone.input_encoder(FLAGS.max_seq_length), labels,
                            domains)
  config = engine.MetaConfig(
      episodes=episodes.EpisodeConfig(FLAGS.num_support, FLAGS.num_query),
      num_train_task=FLAGS.tasks_per_step * (FLAGS.steps + 2), num_test_task=0,
      outer_batch_size=FLAGS.tasks_per_step, inner_batch_size=FLAGS.inner_batch_size,
      inner_update_step=1, bucket=FLAGS.bucket or FLAGS.max_seq_length, progress=False)
  metadata = checkpoints.metadata_variable(backbone.config, backbone.vocab, backbone.lower_case,
                                           labels, FLAGS.max_seq_length)
  return engine.MetaTrainer(
      tf.distribute.get_strategy(), algorithm.Algorithm(algorithm.Config()), config, backbone,
      engine.MetaTasks(features, labels, domains, domains), output_dir, metadata,
      pooling=backbone.pooling)


def step_gflop(trainer, config, step, support_per_task):
  """Training GFLOP of meta-step `step`: every support and query example forward and backward
  at the length the engine computes it at (its tasks' shared, bucketed length)."""
  chosen = [trainer.train_sampler.episode(i) for i in trainer.task_ids(step)]
  lengths = [trainer._gather([getattr(e, part) for e in chosen])["input_mask"].shape[-1]
             for part in ("support", "query")]
  per_task = (support_per_task * bench_common.encoder_gflop(config, lengths[0])
              + FLAGS.num_query * bench_common.encoder_gflop(config, lengths[1]))
  return 3 * len(chosen) * per_task


def measure(precision, examples):
  """Each of --algorithms' figures, prefixed with its name, and leopard's speed over fomaml's."""
  result = {}
  for name in FLAGS.algorithms:
    result.update({f"{name}_{k}": v for k, v in
                   measure_one(precision, examples, ALGORITHMS[name]).items()})
  if {"fomaml", "leopard"} <= set(FLAGS.algorithms):
    result["leopard_over_fomaml"] = (result["leopard_examples_per_second"]
                                     / result["fomaml_examples_per_second"])
  return result


def measure_one(precision, examples, algorithm):
  inner_steps = -(-FLAGS.num_support // FLAGS.inner_batch_size)
  support = min(FLAGS.num_support, inner_steps * FLAGS.inner_batch_size)
  per_task = support + FLAGS.num_query
  with tempfile.TemporaryDirectory() as tmp:
    trainer = build_trainer(precision, examples, tmp, algorithm)
    for step in range(2):
      trainer.train_step(step)
    start = time.perf_counter()
    for step in range(2, FLAGS.steps + 2):
      trainer.train_step(step)
    seconds = time.perf_counter() - start
    config = backbones.describe_backbone(FLAGS.bert_model).config
    gflop = sum(step_gflop(trainer, config, step, support) for step in range(2, FLAGS.steps + 2))
  examples_done = FLAGS.steps * FLAGS.tasks_per_step * per_task
  result = {"examples_per_second": examples_done / seconds,
            "seconds_per_meta_step": seconds / FLAGS.steps, "examples_per_meta_step":
            FLAGS.tasks_per_step * per_task,
            # LEOPARD's first support batch generates the class rows instead of a step
            "inner_steps_per_task": inner_steps - (algorithm is leopard),
            "matmul_peak_gflops": bench_common.matmul_peak_gflops(precision)}
  result.update(bench_common.work_report(result["examples_per_second"], gflop / examples_done,
                                         result["matmul_peak_gflops"]))
  return result


def main(_):
  examples = readers.read_examples(FLAGS.data)
  bench_common.run(lambda precision: measure(precision, examples),
                   ["bert_model", "max_seq_length", "inner_batch_size", "num_support",
                    "num_query", "tasks_per_step", "steps", "bucket", "data", "algorithms"])


if __name__ == "__main__":
  app.run(main)
