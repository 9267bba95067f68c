r"""Throughput of fine-tuning and of the exported model, in examples/second, fp32 and bf16.

  .venv/bin/python benchmarks/finetune_throughput.py --data ../shared/data/leopard/json/sentiment_books/sentiment_books_eval.json

Measures, for each precision:
  * train_full:   train steps on batches padded to max_seq_length (every token computed);
  * train_real:   train steps on the real reviews, each batch trimmed to its longest row;
  * export_real:  the exported SavedModel on raw strings (tokenization in the graph included);
  * for the training rows: GFLOP per example, GFLOP/s and the fraction of this machine's matmul
    peak, measured in the same run (bench_common).
Run on a quiet machine: nothing else heavy at the same time.
"""
import os
import tempfile
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
from metabert_tf import backbones, classifier, export, objectives, records, runtime  # noqa: E402
from metabert_tf import flag_rules  # noqa: E402
from metabert_tf import training  # noqa: E402
from metabert_tf.data import readers  # noqa: E402

bench_common.define_flags("Labeled texts to time on (any reader format).")
flags.DEFINE_integer("batch_size", 16, "Training batch size.")
flags.DEFINE_integer("export_batch_size", 64, "Batch size for the exported model.")
flags.DEFINE_integer("steps", 12, "Timed training steps (after a warm-up pass over the same).")
flags.DEFINE_integer("export_examples", 512, "Examples pushed through the exported model.")
flag_rules.register()  # every numeric and list flag's bounds
FLAGS = flags.FLAGS


def measure(precision, examples):
  runtime.set_precision(precision)
  tf.random.set_seed(0)
  backbone = backbones.load_backbone(FLAGS.bert_model)
  encoder = backbone.input_encoder(FLAGS.max_seq_length)
  labels = sorted({e.label for e in examples})
  features = records.encode(examples, encoder, labels)
  model = classifier.Classifier(backbone.encoder, len(labels), pooling=backbone.pooling).build_all()
  optimizer = optimization.create_optimizer(1e-5, 1000, 0)
  step = training._make_train_step(tf.distribute.get_strategy(), model, optimizer,
                                  objectives.CrossEntropy())
  n = FLAGS.steps * FLAGS.batch_size
  subset = {k: v[:n] for k, v in features.items()}
  full = list(records.make_dataset(subset, FLAGS.batch_size, bucket=0))
  real = list(records.make_dataset(subset, FLAGS.batch_size, bucket=32))
  result = {"train_full_ex_per_s": bench_common.time_train(step, full, FLAGS.batch_size),
            "train_real_ex_per_s": bench_common.time_train(step, real, FLAGS.batch_size),
            "real_mean_tokens": float(subset["input_mask"].sum(1).mean()),
            "matmul_peak_gflops": bench_common.matmul_peak_gflops(precision)}
  for name, batches in (("train_full", full), ("train_real", real)):
    gflop = bench_common.train_gflop_per_example(backbone.config, batches)
    for key, value in bench_common.work_report(result[f"{name}_ex_per_s"], gflop,
                                               result["matmul_peak_gflops"]).items():
      result[f"{name}_{key}"] = value
  with tempfile.TemporaryDirectory() as tmp:
    export.export_saved_model(model, encoder, labels, os.path.join(tmp, "export"))
    serve = tf.saved_model.load(os.path.join(tmp, "export")).signatures["serving_default"]
    texts = [e.text_a for e in examples[:FLAGS.export_examples]]
    chunks = [tf.constant(texts[i:i + FLAGS.export_batch_size])
              for i in range(0, len(texts), FLAGS.export_batch_size)]
    serve(text=chunks[0])
    start = time.perf_counter()
    for chunk in chunks:
      serve(text=chunk)["probabilities"].numpy()
    result["export_real_ex_per_s"] = len(texts) / (time.perf_counter() - start)
  return result


def main(_):
  examples = readers.read_examples(FLAGS.data)
  order = np.random.default_rng(0).permutation(len(examples))
  examples = [examples[i] for i in order]
  bench_common.run(lambda precision: measure(precision, examples),
                   ["bert_model", "batch_size", "export_batch_size", "max_seq_length", "steps",
                    "export_examples", "data"])


if __name__ == "__main__":
  app.run(main)
