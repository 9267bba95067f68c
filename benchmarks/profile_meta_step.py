r"""Where a meta-step's time goes: a TensorFlow profile of the benchmark's FOMAML meta-steps,
summed by op type and by part of the model.

  .venv/bin/python benchmarks/profile_meta_step.py --data ../shared/data/blitzer_mds_4domain \
      --precisions bf16 --profile_steps 2

Same configuration and flags as meta_train_throughput.py (which builds the trainer). After 2
warm-up meta-steps, --profile_steps meta-steps run under `tf.profiler`; the op events of TF's
compute threads are then summed (per meta-step) by op type and by group (matrix multiplies,
dropout, GELU, the inner optimizer's update, ...), as a share of all op time. Profiling slows a
step down, so this reports shares, not throughput. The trace stays in --trace_dir for
TensorBoard's profile tab.
"""
import collections
import glob
import os
import tempfile

import os, sys  # noqa: E401,E402
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo
from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import metabert_tf  # noqa: F401,E402  (first: it keeps TF's C++ log lines quiet)
import tensorflow as tf  # noqa: E402
from tensorflow.tsl.profiler.protobuf import xplane_pb2  # noqa: E402

import meta_train_throughput  # noqa: E402  (defines the benchmark's flags)
from metabert_tf import flag_rules  # noqa: E402
from metabert_tf import io_utils  # noqa: E402
from metabert_tf.data import readers  # noqa: E402

flags.DEFINE_integer("profile_steps", 2, "Meta-steps to profile (after 2 warm-up steps).")
flags.DEFINE_string("trace_dir", None, "Where the trace goes (default: a temporary directory).")
flags.DEFINE_integer("top", 15, "Op types to list.")
flags.register_validator("profile_steps", lambda v: 1 <= v <= FLAGS.steps,
                         "--profile_steps must be between 1 and --steps (tasks are made for --steps)")
flag_rules.register()  # every numeric and list flag's bounds
FLAGS = flags.FLAGS

MATMUL_TYPES = ("Einsum", "MatMul", "BatchMatMulV2", "FusedMatMul")
# Op-name patterns of the groups the speed work looked at (first match wins).
GROUPS = (("matrix multiplies", lambda name, typ: typ in MATMUL_TYPES),
          ("dropout", lambda name, typ: "dropout" in name),
          ("GELU", lambda name, typ: "gelu" in name.lower() or "activation" in name),
          ("inner optimizer update", lambda name, typ: typ.startswith("ResourceApply")
           or ("while" in name and "classifier" not in name and "gradient_tape" not in name)),
          ("softmax", lambda name, typ: "softmax" in name.lower()),
          ("layer norm", lambda name, typ: "norm" in name.lower()))


def op_times(trace_dir):
  """{(op name, op type): total seconds} over the TF compute threads of the newest trace."""
  path = sorted(glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True))[-1]
  space = xplane_pb2.XSpace()
  with open(path, "rb") as f:
    space.ParseFromString(f.read())
  times = collections.Counter()
  for plane in space.planes:
    names = {key: meta.name for key, meta in plane.event_metadata.items()}
    for line in plane.lines:
      if not line.name.startswith("tf_Compute"):
        continue
      for event in line.events:
        name = names.get(event.metadata_id, "?")
        if name.startswith("ExecutorState") or name == "ParallelFor" or ":" not in name:
          continue  # scheduling wrappers, not ops
        op_name, op_type = name.rsplit(":", 1)
        op_type = op_type.removeprefix("_").removeprefix("Mkl")  # oneDNN's kernels: _MklEinsum
        times[(op_name, op_type)] += event.duration_ps * 1e-12
  return times


def summarize(times, steps):
  total = sum(times.values())
  by_type, by_group = collections.Counter(), collections.Counter()
  for (name, typ), seconds in times.items():
    by_type[typ] += seconds
    group = next((g for g, matches in GROUPS if matches(name, typ)), "other")
    by_group[group] += seconds
  share = lambda c: {k: {"ms_per_step": 1e3 * v / steps, "share": v / total}
                     for k, v in c.most_common()}
  return {"op_ms_per_step": 1e3 * total / steps, "by_group": share(by_group),
          "by_type": dict(list(share(by_type).items())[:FLAGS.top])}


def profile(precision, examples, trace_dir):
  with tempfile.TemporaryDirectory() as tmp:
    trainer = meta_train_throughput.build_trainer(precision, examples, tmp)
    for step in range(2):
      trainer.train_step(step)
    tf.profiler.experimental.start(trace_dir)
    for step in range(2, 2 + FLAGS.profile_steps):
      trainer.train_step(step)
    tf.profiler.experimental.stop()
  return summarize(op_times(trace_dir), FLAGS.profile_steps)


def main(_):
  examples = readers.read_examples(FLAGS.data)
  report = {}
  for precision in FLAGS.precisions:
    trace_dir = os.path.join(FLAGS.trace_dir or tempfile.mkdtemp(), precision)
    report[precision] = result = profile(precision, examples, trace_dir)
    print(f"{precision}: {result['op_ms_per_step']:.0f} ms of op time per meta-step "
          f"(trace: {trace_dir})")
    for title in ("by_group", "by_type"):
      print(f"  {title.replace('_', ' ')}:")
      for key, v in result[title].items():
        print(f"    {key:<28} {v['ms_per_step']:8.0f} ms  {100 * v['share']:5.1f}%")
  if FLAGS.output:
    io_utils.atomic_write_json(FLAGS.output, report)


if __name__ == "__main__":
  app.run(main)
