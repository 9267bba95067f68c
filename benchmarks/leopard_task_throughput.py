r"""Meta-training throughput at the LEOPARD benchmark's settings: tasks/hour and examples/second
of each meta-learner of `python -m metabert_tf.experiments --protocol leopard`, fp32 and bf16,
with GFLOP/example and the fraction of this machine's matmul peak (measured in the same run).

  .venv/bin/python benchmarks/leopard_task_throughput.py --data ../shared/data/meta_train \
      --output docs/measurements/leopard_task_throughput.json

Each meta-learner is built exactly as the benchmark's meta-training stage builds it
(experiments/meta_stage.py: the six GLUE / AG News sources, minilm-l6, max_seq_length 128 with
batches trimmed to their longest example, 80 support + 10 query per task, 4 tasks per
meta-step, the algorithm's own engine settings) and timed over --steps meta-steps after two
warm-up steps. GFLOP per task counts each example's passes through the encoder at its task's
longest example (forward 1, forward and backward 3: UNITS below): an upper bound, since the inner
batches are cut further, to their own longest. bf16 is measured for speed only:
the benchmark meta-trains in fp32 (an inner step is below bf16's resolution, leopard.py).
"""
import dataclasses
import tempfile
import time

import os, sys  # noqa: E401,E402
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo
from absl import app
from absl import flags
import metabert_tf  # noqa: F401  (first: it keeps TF's C++ log lines quiet)

import bench_common
from metabert_tf import backbones
from metabert_tf import flag_rules
from metabert_tf.errors import ConfigError
from metabert_tf.experiments import leopard_kshot
from metabert_tf.experiments import meta_stage
from metabert_tf.experiments import methods
from metabert_tf.meta import algorithms
from metabert_tf.meta import job as meta_job

bench_common.define_flags("The meta-training directory (GLUE and AG News as distributed).")
flags.DEFINE_list("methods", ["leopard", "fomaml", "reptile", "proto-bert", "mt-bert"],
                  "Meta-learned methods of the LEOPARD protocol to time.")
flags.DEFINE_integer("steps", 3, "Timed meta-steps (after two warm-up steps).")
flags.DEFINE_integer("max_examples_per_source", 0, "Read at most this many examples per source.")
flags.DEFINE_list("smlmt_data", [], "SMLMT task files (data_prep.smlmt) for smlmt and "
                  "hybrid-smlmt.")
flags.DEFINE_list("min_layer_with_grad", ["0"], "LEOPARD family: also time with the inner loop "
                  "adapting only the encoder layers from this one up (keys <method>_min_layer<M>; "
                  "their GFLOP still count the full backward pass).")
flags.DEFINE_bool("train_word_embeddings", True, "LEOPARD family: adapt the embeddings in the "
                  "inner loop (--notrain_word_embeddings: keys <method>_frozen_embeddings; with "
                  "--min_layer_with_grad the inner backward then stops at that layer).")
flags.DEFINE_list("num_batches", ["8"], "LEOPARD family: also time with the 80 support examples "
                  "in this many batches (the first generates the class rows, each other one is an "
                  "inner step; keys <method>_batches<B>): fewer, larger inner steps.")
flag_rules.register()
FLAGS = flags.FLAGS

# Encoder passes per task, (per support example, per query example): forward 1, forward and
# backward 3. LEOPARD: rows from batch 0 (forward, backward for the generator), 7 inner steps,
# one query gradient; ProtoMAML FOMAML: rows from all 80 (forward, backward through them), 8
# inner steps, the query gradient; ProtoMAML Reptile: rows (forward), 8 inner steps, the query
# loss (forward); Proto-BERT and MT-BERT: every example once, forward and backward.
UNITS = {"leopard": (3, 3), "smlmt": (3, 3), "hybrid_smlmt": (3, 3), "proto_fomaml": (6, 3),
         "proto_reptile": (4, 1), "proto_bert": (3, 3), "mt_bert": (3, 3)}


def _config(tmp):
  return leopard_kshot.Config(
      output_dir=tmp, bert_model=FLAGS.bert_model, meta_train_dir=FLAGS.data,
      meta_tasks=4 * (FLAGS.steps + 2), meta_max_seq_length=FLAGS.max_seq_length,
      max_examples_per_source=FLAGS.max_examples_per_source, smlmt_data=FLAGS.smlmt_data)


def measure_one(precision, method, min_layer=0, num_batches=8):
  with tempfile.TemporaryDirectory() as tmp:
    job = meta_stage.job(_config(tmp), method)
    meta = job.meta
    if min_layer:
      meta = dataclasses.replace(meta, algorithm=dataclasses.replace(
          meta.algorithm, min_layer_with_grad=min_layer))
    if not FLAGS.train_word_embeddings and method.meta_algorithm in algorithms.LEOPARD_FAMILY:
      meta = dataclasses.replace(meta, algorithm=dataclasses.replace(
          meta.algorithm, train_word_embeddings=False))
    if num_batches != 8:
      meta = dataclasses.replace(meta, inner_batch_size=meta.episodes.num_support // num_batches)
    job = meta_job.MetaJob(**{**job.__dict__, "precision": precision, "meta": meta})
    trainer, _, job = meta_job.build_trainer(job)
    for step in range(2):
      trainer.train_step(step)
    timed = range(2, FLAGS.steps + 2)
    start = time.perf_counter()
    for step in timed:
      trainer.train_step(step)
    seconds = time.perf_counter() - start
    encoder = backbones.describe_backbone(FLAGS.bert_model).config
    support_units, query_units = UNITS[method.meta_algorithm]
    gflop = 0.0
    mask = trainer.features["input_mask"]
    for step in timed:
      for episode in (trainer.train_sampler.episode(i) for i in trainer.task_ids(step)):
        for part, units in ((episode.support, support_units), (episode.query, query_units)):
          length = int(mask[part].sum(1).max())  # the task's own longest (learner.trim_task)
          gflop += units * len(part) * bench_common.encoder_gflop(encoder, length)
  tasks = FLAGS.steps * job.meta.outer_batch_size
  per_task = job.meta.episodes.num_support + job.meta.episodes.num_query
  result = {"tasks_per_hour": tasks / seconds * 3600, "seconds_per_meta_step": seconds / FLAGS.steps,
            "examples_per_second": tasks * per_task / seconds,
            "matmul_peak_gflops": bench_common.matmul_peak_gflops(precision)}
  result.update(bench_common.work_report(result["examples_per_second"],
                                         gflop / (tasks * per_task), result["matmul_peak_gflops"]))
  return result


def measure(precision):
  out = {}
  for name in FLAGS.methods:
    method = methods.LEOPARD[name]
    family = method.meta_algorithm in algorithms.LEOPARD_FAMILY
    layers = [int(m) for m in FLAGS.min_layer_with_grad] if family else [0]
    batches = [int(b) for b in FLAGS.num_batches] if family else [8]
    for m in layers:
      for b in batches:
        key = (name + (f"_min_layer{m}" if m else "") + (f"_batches{b}" if b != 8 else "")
               + ("" if FLAGS.train_word_embeddings or not family else "_frozen_embeddings"))
        result = measure_one(precision, method, m, b)
        print(f"{precision} {key}: {result['tasks_per_hour']:.0f} tasks/hour, "
              f"{result['fraction_of_matmul_peak']:.2f} of matmul peak", file=sys.stderr,
              flush=True)
        out.update({f"{key}_{k}": v for k, v in result.items()})
  return out


def main(_):
  methods.check(methods.LEOPARD, FLAGS.methods)
  for name in FLAGS.methods:  # every method's sources, before the first measurement
    if not methods.LEOPARD[name].meta_algorithm:
      raise app.UsageError(f"--methods: {name} has no meta-training")
    try:
      meta_stage.sources(_config(None), methods.LEOPARD[name].meta_algorithm)
    except ConfigError as e:
      raise app.UsageError(f"--{e.field} {e.message}" if e.field else str(e)) from None
  bench_common.run(measure, ["bert_model", "max_seq_length", "data", "methods", "steps",
                             "max_examples_per_source", "min_layer_with_grad", "num_batches",
                             "train_word_embeddings"])


if __name__ == "__main__":
  app.run(main)
