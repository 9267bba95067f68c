"""What both throughput benchmarks share: their common flags and the report they print/write."""
import json
import os
import platform

from absl import flags
import tensorflow as tf

from metabert_tf import io_utils


def define_flags(data_help):
  flags.DEFINE_string("data", None, data_help)
  flags.DEFINE_string("bert_model", "minilm-l6", "Backbone.")
  flags.DEFINE_integer("max_seq_length", 128, "Sequence length.")
  flags.DEFINE_list("precisions", ["fp32", "bf16"], "Precisions to measure.")
  flags.DEFINE_string("output", None, "Also write the results as JSON here.")
  flags.mark_flags_as_required(["data"])


def run(measure, config_flags):
  """Calls `measure(precision)` for each --precisions; prints and writes the report."""
  values = flags.FLAGS
  report = {"config": {name: values[name].value for name in config_flags},
            "machine": {"cpu_count": os.cpu_count(), "processor": platform.processor() or
                        platform.machine(), "tensorflow": tf.__version__}}
  for precision in values.precisions:
    report[precision] = measure(precision)
    print(precision, json.dumps(report[precision]), flush=True)
  if values.output:
    io_utils.atomic_write_json(values.output, report)
  return report
