"""Tables and plots of a LEOPARD benchmark's runs (output_dir/leopard_benchmark.json, written by
the leopard protocol after every cell), complete or not:

  python -m metabert_tf.experiments.benchmark_report --runs docs/measurements/leopard_benchmark.json \
      --output docs/measurements/leopard_benchmark.md --plot docs/measurements/leopard_benchmark.png \
      --per_task_plot docs/measurements/leopard_benchmark_tasks.png \
      --curves_plot docs/measurements/leopard_meta_curves.png

Per task: accuracy mean +- std (population) over its splits. Averaged over tasks: per split, the
mean over the tasks that have it, then mean +- std over the splits that every task has (a cell
short of tasks is left out and says so). Each method's relative gain over plain fine-tuning, and
its CPU cost: meta-training seconds, fitting and scoring seconds per run (mean); each
meta-training's query loss at its end beside a uniform guess's, and its curve as a plot.
"""
import collections
import json
import sys

import numpy as np

from metabert_tf import io_utils
from metabert_tf.errors import DataError
from metabert_tf.experiments import methods as methods_lib
from metabert_tf.experiments import plots

BASELINE = "fine-tuning"


def _by_cell(runs):
  """{(method, task, k): {split: run}}."""
  cells = collections.defaultdict(dict)
  for r in runs:
    cells[(r["method"], r["task"], r["k"])][r["split"]] = r
  return cells


def summarize(record):
  """{"per_task": {method: {task: {K: stats}}}, "average": {method: {K: stats}}} of a record."""
  cells = _by_cell(record["runs"])
  tasks = sorted({t for _, t, _ in cells})
  per_task, average = collections.defaultdict(dict), collections.defaultdict(dict)
  for (method, task, k), splits in sorted(cells.items()):
    acc = [splits[f]["accuracy"] for f in sorted(splits)]
    per_task[method].setdefault(task, {})[str(k)] = {
        "mean": float(np.mean(acc)), "std": float(np.std(acc)), "n": len(acc),
        "not_learned": sum(bool(splits[f].get("did_not_learn")) for f in splits)}
  for method in per_task:
    for k in sorted({k for m, _, k in cells if m == method}):
      have = [cells.get((method, t, k), {}) for t in tasks]
      shared = sorted(set.intersection(*(set(h) for h in have))) if all(have) else []
      if not shared:
        continue
      by_split = [np.mean([h[f]["accuracy"] for h in have]) for f in shared]
      average[method][str(k)] = {"mean": float(np.mean(by_split)), "std": float(np.std(by_split)),
                                 "n": len(shared), "tasks": len(tasks)}
  return {"tasks": tasks, "per_task": dict(per_task), "average": dict(average)}


def _label(method):
  m = methods_lib.LEOPARD.get(method)
  return m.label if m else method


def _stats(s):
  if s is None:
    return ""
  mark = f" ({s['not_learned']}/{s['n']} did not learn)" if s.get("not_learned") else ""
  return f"{100 * s['mean']:.1f} +- {100 * s['std']:.1f} (n={s['n']}){mark}"


def markdown(record):
  summary = summarize(record)
  ks = sorted({str(r["k"]) for r in record["runs"]}, key=int)
  lines = [f"Averaged over the {len(summary['tasks'])} tasks ({', '.join(summary['tasks'])}): "
           "accuracy (%), mean +- std over splits (n splits); gain relative to fine-tuning.", "",
           "| method | " + " | ".join(f"K={k}" for k in ks) + " | "
           + " | ".join(f"vs fine-tuning, K={k}" for k in ks) + " |",
           "|---" * (1 + 2 * len(ks)) + "|"]
  base = summary["average"].get(BASELINE, {})
  for method, by_k in summary["average"].items():
    gains = [f"{100 * (by_k[k]['mean'] / base[k]['mean'] - 1):+.1f}%" if k in by_k and k in base
             else "" for k in ks]
    lines.append(f"| {_label(method)} | " + " | ".join(_stats(by_k.get(k)) for k in ks)
                 + " | " + " | ".join(gains) + " |")
  lines += ["", "Per task:", "", "| task | method | " + " | ".join(f"K={k}" for k in ks) + " |",
            "|---" * (2 + len(ks)) + "|"]
  for method, by_task in summary["per_task"].items():
    for task, by_k in sorted(by_task.items()):
      lines.append(f"| {task} | {_label(method)} | "
                   + " | ".join(_stats(by_k.get(k)) for k in ks) + " |")
  lines += ["", "CPU cost: meta-training (tasks, hours), and per run the mean seconds of fitting "
            "(fine-tuning, or the frozen features and classifier) and of scoring the eval file.", "",
            "| method | meta-training | query loss, last 10% of steps (uniform guess) "
            "| fit s/run | eval s/run |", "|---|---|---|---|---|"]
  for method in summary["per_task"]:
    meta = record.get("meta_training", {}).get(method)
    runs = [r for r in record["runs"] if r["method"] == method]
    fit = [r["train_seconds"] for r in runs if r.get("train_seconds") is not None]
    score = [r["eval_seconds"] for r in runs if r.get("eval_seconds") is not None]
    cost = f"{meta['num_tasks']} tasks, {meta['seconds'] / 3600:.2f} h" if meta else "none"
    per_run = " | ".join(f"{np.mean(x):.0f}" if x else "" for x in (fit, score))
    lines.append(f"| {_label(method)} | {cost} | {_final_loss(meta)} | {per_run} |")
  return "\n".join(lines) + "\n", summary


def _final_loss(meta):
  """The mean query loss of the last 10% of a meta-training's steps, and a uniform guess's."""
  curve = (meta or {}).get("curve") or []
  if not curve:
    return ""
  tail = curve[-max(1, len(curve) // 10):]
  uniform = [c["uniform_loss"] for c in tail if c.get("uniform_loss") is not None]
  text = f"{np.mean([c['query_loss'] for c in tail]):.3f}"
  return text + (f" ({np.mean(uniform):.3f})" if len(uniform) == len(tail) else "")


def write(record, output=None, plot=None, curves_plot=None, per_task_plot=None):
  """The markdown (to `output`), the accuracy-vs-K plot (averaged over tasks; per task, one
  panel each) and the meta-training curves' plot."""
  text, summary = markdown(record)
  if output:
    io_utils.atomic_write_text(output, text)
  if plot and summary["average"]:
    plots.accuracy_by_k({_label(m): by_k for m, by_k in summary["average"].items()}, plot)
  if per_task_plot and summary["per_task"]:
    by_task = collections.defaultdict(dict)
    for method, tasks in summary["per_task"].items():
      for task, by_k in tasks.items():
        by_task[task][_label(method)] = by_k
    plots.accuracy_by_k_per_task(dict(by_task), per_task_plot)
  curves = {_label(m): meta.get("curve") for m, meta in record.get("meta_training", {}).items()}
  if curves_plot and any(curves.values()):
    plots.loss_curves(curves, curves_plot)
  return text


def load(path, hint=""):
  """A leopard_benchmark.json ({"runs": [...], ...}); a DataError naming the file otherwise,
  ending with `hint` (what to do about it)."""
  try:
    with open(path, encoding="utf-8") as f:
      record = json.load(f)
  except OSError as e:
    raise DataError(path, (e.strerror or str(e)) + hint) from None
  except json.JSONDecodeError as e:
    raise DataError(path, f"not valid JSON ({e.msg}, line {e.lineno}){hint}") from None
  if not isinstance(record, dict) or not isinstance(record.get("runs"), list):
    raise DataError(path, 'expected a JSON object with a "runs" list' + hint)
  return record


def main(argv):
  del argv
  from absl import flags  # pylint: disable=import-outside-toplevel
  try:
    print(write(load(flags.FLAGS.runs), flags.FLAGS.output, flags.FLAGS.plot,
                flags.FLAGS.curves_plot, flags.FLAGS.per_task_plot), end="")
  except DataError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  from absl import app, flags  # pylint: disable=ungrouped-imports
  flags.DEFINE_string("runs", None, "A leopard_benchmark.json.")
  flags.DEFINE_string("output", None, "Write the markdown here.")
  flags.DEFINE_string("plot", None, "Write the accuracy-vs-K plot (averaged over tasks) here.")
  flags.DEFINE_string("per_task_plot", None, "Write the accuracy-vs-K plot of every task (a "
                      "panel each) here.")
  flags.DEFINE_string("curves_plot", None, "Write the meta-training curves (query loss vs tasks, "
                      "and a uniform guess's) here.")
  flags.mark_flag_as_required("runs")
  app.run(main)
