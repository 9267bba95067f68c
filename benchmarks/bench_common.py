"""What both throughput benchmarks share: their common flags and the report they print/write."""
import os
import platform
import time

from absl import flags
import numpy as np
import metabert_tf  # noqa: F401,E402  (first: it keeps TF's C++ log lines quiet)
import tensorflow as tf

from metabert_tf import io_utils
from metabert_tf import runtime


def define_flags(data_help):
  flags.DEFINE_string("data", None, data_help)
  flags.DEFINE_string("bert_model", "minilm-l6", "Backbone.")
  flags.DEFINE_integer("max_seq_length", 128, "Sequence length.")
  flags.DEFINE_list("precisions", ["fp32", "bf16"], "Precisions to measure.")
  flags.register_validator("precisions", lambda v: bool(v) and set(v) <= {"fp32", "bf16"},
                           "--precisions must be among fp32, bf16")
  flags.DEFINE_integer("repeats", 3, "Measurements per precision (each rebuilds the model); "
                       "the report gives every run and mean +- std.")
  flags.DEFINE_string("output", None, "Also write the results as JSON here.")
  flags.mark_flags_as_required(["data"])


def time_train(step, batches, batch_size):
  """Examples/second of a second pass over `batches` (the first traces every length bucket)."""
  for batch in batches:
    step(batch)
  start = time.perf_counter()
  for batch in batches:
    float(step(batch))
  return len(batches) * batch_size / (time.perf_counter() - start)


def encoder_gflop(config, seq_len):
  """Forward GFLOP of one example of `seq_len` tokens through the BERT encoder: per layer the
  q/k/v/output projections (8 L H^2), the feed-forward block (4 L H I) and the attention scores
  and mixing (4 L^2 H); a multiply-add counts 2. Training a step costs 3x (forward, and a
  backward of twice the forward)."""
  h, i, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
  per_layer = 8 * seq_len * h * h + 4 * seq_len * h * i + 4 * seq_len * seq_len * h
  return layers * per_layer / 1e9


def train_gflop_per_example(config, batches):
  """Mean training GFLOP per example over `batches`, at the length each batch is computed at
  (its padded, trimmed width: the work the machine does, padding included)."""
  work = [3 * encoder_gflop(config, int(b["input_mask"].shape[1])) * int(b["input_mask"].shape[0])
          for b in batches]
  return sum(work) / sum(int(b["input_mask"].shape[0]) for b in batches)


def matmul_peak_gflops(precision, size=2048, repeats=10):
  """This machine's measured matmul rate (GFLOP/s) in `precision`: the best of `repeats` timed
  [size, size] x [size, size] products, after a warm-up (bf16: the kernel mixed_bfloat16 uses)."""
  dtype = tf.bfloat16 if precision == "bf16" else tf.float32
  a = tf.random.normal([size, size], dtype=tf.float32)
  a, b = tf.cast(a, dtype), tf.cast(tf.transpose(a), dtype)
  product = tf.function(lambda x, y: tf.reduce_sum(tf.cast(tf.matmul(x, y)[:1, :1], tf.float32)))
  product(a, b).numpy()
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    product(a, b).numpy()
    best = min(best, time.perf_counter() - start)
  return 2 * size ** 3 / best / 1e9


def work_report(ex_per_s, gflop_per_example, peak):
  """The work-done columns every throughput row gets: GFLOP/example, GFLOP/s, share of peak."""
  achieved = ex_per_s * gflop_per_example
  return {"gflop_per_example": gflop_per_example, "achieved_gflops": achieved,
          "fraction_of_matmul_peak": achieved / peak}


def machine():
  """What the numbers were measured on: the CPU (model, cores, its bf16 / AVX-512 / AMX
  instructions, which decide what bf16 costs) and TensorFlow."""
  model = ""
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
  except OSError:
    pass
  features = sorted(f for f in runtime.cpu_flags()
                    if f.startswith(("avx512f", "avx512_bf16", "amx")) or f == "avx2")
  return {"cpu_count": os.cpu_count(), "processor": model or platform.processor()
          or platform.machine(), "cpu_features": features, "tensorflow": tf.__version__}


def _mean_std(runs):
  """[{name: value}] -> {name: {mean, std, runs}} (population std), for numeric names."""
  return {name: {"mean": float(np.mean([r[name] for r in runs])),
                 "std": float(np.std([r[name] for r in runs])), "runs": [r[name] for r in runs]}
          for name in runs[0]}


def run(measure, config_flags):
  """Calls `measure(precision)` --repeats times for each --precisions; prints and writes the
  report (mean +- std over the repeats)."""
  values = flags.FLAGS
  report = {"config": {name: values[name].value for name in config_flags + ["repeats"]},
            "machine": machine()}
  for precision in values.precisions:
    report[precision] = _mean_std([measure(precision) for _ in range(values.repeats)])
    print(precision, ", ".join(f"{name} {v['mean']:.2f} +- {v['std']:.2f}"
                               for name, v in report[precision].items()), flush=True)
  if values.output:
    io_utils.atomic_write_json(values.output, report)
  return report
