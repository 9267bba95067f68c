r"""MFT's cost next to plain fine-tuning: training examples/second on the same batches, fp32
and bf16, and the typicality pre-pass next to plain inference.

  .venv/bin/python benchmarks/mft_throughput.py --data data/mft_amazon/all_train.jsonl

Measures, for each precision, on the same multi-domain batches (trimmed to their longest row):
  * plain_train:  a fine-tuning step (cross-entropy), as run_finetune.py trains;
  * mft_train:    an MFT (full) step: typicality-weighted cross-entropy plus the domain
                  corruption loss on the default layers (2, 4, 6 of MiniLM-L6);
  * mft_overhead: 1 - mft_train / plain_train (the issue's bound: under 15%);
  * inference / typicality_prepass: forward passes for logits, and for the sentence features
                  the typicality scores are computed from;
  * for each: GFLOP per example (bench_common.encoder_gflop at each batch's computed length),
    the GFLOP/s achieved and its fraction of this machine's matmul peak, measured in the run.
Run on a quiet machine: nothing else heavy at the same time.
"""
import time

import os, sys  # noqa: E401,E402
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo
from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import numpy as np  # noqa: E402
import metabert_tf  # noqa: F401,E402  (first: it keeps TF's C++ log lines quiet)
import tensorflow as tf  # noqa: E402
from official.nlp import optimization  # noqa: E402

import bench_common  # noqa: E402
from metabert_tf import backbones, classifier, datasets, mft  # noqa: E402
from metabert_tf import flag_rules  # noqa: E402
from metabert_tf import objectives, records, runtime, training  # noqa: E402

bench_common.define_flags("Multi-domain labeled texts (any reader format with domains).")
flags.DEFINE_integer("batch_size", 32, "Training batch size (MFT's).")
flags.DEFINE_integer("steps", 8, "Timed training steps (after a warm-up pass over the same).")
flags.DEFINE_integer("inference_examples", 512, "Examples of the two inference measurements.")
flags.DEFINE_integer("inference_batch_size", 64, "Their batch size (evaluation's default).")
flag_rules.register()  # every numeric and list flag's bounds
FLAGS = flags.FLAGS


def _train_rate(model, objective, batches):
  objective.build(model)
  optimizer = optimization.create_optimizer(1e-5, 1000, 0)
  step = training._make_train_step(tf.distribute.get_strategy(), model, optimizer, objective)
  prepared = [objective.prepare_batch(batch, i) for i, batch in enumerate(batches)]
  return bench_common.time_train(step, prepared, FLAGS.batch_size)


def _inference_rate(model, batches, forward):
  """Examples/second of `forward` over `batches`, after a pass that traces every length."""
  run = tf.function(lambda batch: forward(model, batch), reduce_retracing=True)
  for batch in batches:
    run(batch)
  start = time.perf_counter()
  count = sum(len(run(batch).numpy()) for batch in batches)
  return count / (time.perf_counter() - start)


def measure(precision, features, num_domains):
  runtime.set_precision(precision)
  tf.random.set_seed(0)
  backbone = backbones.load_backbone(FLAGS.bert_model)
  model = classifier.Classifier(backbone.encoder, 2, pooling=backbone.pooling).build_all()
  n = FLAGS.steps * FLAGS.batch_size
  subset = {k: v[:n] for k, v in features.items()}
  subset["example_weights"] = np.linspace(0.5, 1.0, n).astype(np.float32)
  batches = list(records.make_dataset(subset, FLAGS.batch_size, bucket=32))
  plain = _train_rate(model, objectives.CrossEntropy(), batches)
  full = mft.MFTObjective(mft.MFTConfig(), num_domains, backbone.config.num_hidden_layers)
  mft_rate = _train_rate(model, full, batches)
  probe = list(records.make_dataset({k: v[:FLAGS.inference_examples] for k, v in features.items()},
                                    FLAGS.inference_batch_size))
  result = {"plain_train_ex_per_s": plain, "mft_train_ex_per_s": mft_rate,
            "mft_overhead": 1.0 - mft_rate / plain,
            "inference_ex_per_s": _inference_rate(
                model, probe, lambda m, batch: m(batch, training=False)),
            # what mft.typicality_scores runs over the training data
            "typicality_prepass_ex_per_s": _inference_rate(
                model, probe, lambda m, batch: m.encode(batch, training=False)[0]),
            "mean_tokens": float(subset["input_mask"].sum(1).mean()),
            "matmul_peak_gflops": bench_common.matmul_peak_gflops(precision)}
  # The work is the encoder's (MFT's domain classifiers add < 0.1%); inference is 1/3 of a step.
  train_gflop = bench_common.train_gflop_per_example(backbone.config, batches)
  for name, gflop in (("plain_train", train_gflop), ("mft_train", train_gflop),
                      ("inference", bench_common.train_gflop_per_example(backbone.config,
                                                                          probe) / 3)):
    for key, value in bench_common.work_report(result[f"{name}_ex_per_s"], gflop,
                                               result["matmul_peak_gflops"]).items():
      result[f"{name}_{key}"] = value
  return result


def main(_):
  source = backbones.describe_backbone(FLAGS.bert_model)
  features, _, domains = datasets.multidomain_features(
      FLAGS.data, source.input_encoder(FLAGS.max_seq_length))
  order = np.random.default_rng(0).permutation(len(features["label_ids"]))
  features = {k: v[order] for k, v in features.items()}
  bench_common.run(lambda precision: measure(precision, features, len(domains)),
                   ["bert_model", "batch_size", "max_seq_length", "steps", "inference_examples",
                    "inference_batch_size", "data"])


if __name__ == "__main__":
  app.run(main)
