"""What both throughput benchmarks share: their common flags and the report they print/write."""
import json
import os
import platform
import time

from absl import flags
import numpy as np
import tensorflow as tf

from metabert_tf import io_utils
from metabert_tf import tokenization


def define_flags(data_help):
  flags.DEFINE_string("data", None, data_help)
  flags.DEFINE_string("bert_model", "minilm-l6", "Backbone.")
  flags.DEFINE_integer("max_seq_length", 128, "Sequence length.",
                       lower_bound=tokenization.MIN_SEQ_LENGTH)
  flags.DEFINE_list("precisions", ["fp32", "bf16"], "Precisions to measure.")
  flags.register_validator("precisions", lambda v: bool(v) and set(v) <= {"fp32", "bf16"},
                           "--precisions must be among fp32, bf16")
  flags.DEFINE_integer("repeats", 3, "Measurements per precision (each rebuilds the model); "
                       "the report gives every run and mean +- std.", lower_bound=1)
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
            "machine": {"cpu_count": os.cpu_count(), "processor": platform.processor() or
                        platform.machine(), "tensorflow": tf.__version__}}
  for precision in values.precisions:
    report[precision] = _mean_std([measure(precision) for _ in range(values.repeats)])
    print(precision, ", ".join(f"{name} {v['mean']:.2f} +- {v['std']:.2f}"
                               for name, v in report[precision].items()), flush=True)
  if values.output:
    io_utils.atomic_write_json(values.output, report)
  return report
