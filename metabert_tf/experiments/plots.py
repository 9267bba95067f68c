"""Figures of the protocols' summaries (matplotlib, written atomically as PNG)."""
from metabert_tf import io_utils


def _pyplot():
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  return plt


def _save(fig, path):
  fig.tight_layout()
  with io_utils.atomic_open(path, "wb") as f:
    fig.savefig(f, format="png", dpi=120)
  _pyplot().close(fig)


def _draw_accuracy_by_k(ax, summary, legend=True):
  ks = sorted({int(k) for by_k in summary.values() for k in by_k})
  for row, by_k in summary.items():
    mine = sorted(int(k) for k in by_k)
    ax.errorbar(mine, [100 * by_k[str(k)]["mean"] for k in mine],
                yerr=[100 * by_k[str(k)]["std"] for k in mine], marker="o", capsize=3, label=row)
  ax.set_xscale("log", base=2)
  ax.set_xticks(ks, [str(k) for k in ks])
  ax.set_xlabel("K (examples per label)")
  ax.set_ylabel("accuracy (%)")
  if legend:
    ax.legend(fontsize=7)


def accuracy_by_k(summary, path):
  """Accuracy (mean +- std over splits) against K, one line per row: {row: {K: stats}}."""
  fig, ax = _pyplot().subplots(figsize=(5, 3.5))
  _draw_accuracy_by_k(ax, summary)
  _save(fig, path)


def accuracy_by_k_per_task(per_task, path, columns=3):
  """One panel per task, accuracy against K per row: {task: {row: {K: stats}}}; one legend."""
  tasks = sorted(per_task)
  rows = -(-len(tasks) // columns)
  fig, axes = _pyplot().subplots(rows, columns, figsize=(4 * columns, 3 * rows + 0.8),
                                 squeeze=False)
  for ax, task in zip(axes.flat, tasks):
    _draw_accuracy_by_k(ax, per_task[task], legend=False)
    ax.set_title(task, fontsize=9)
  for ax in axes.flat[len(tasks):]:
    ax.axis("off")
  handles, labels = axes.flat[0].get_legend_handles_labels()
  fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=7)
  fig.tight_layout(rect=(0, 0.12 if rows == 1 else 0.08, 1, 1))
  with io_utils.atomic_open(path, "wb") as f:
    fig.savefig(f, format="png", dpi=120)
  _pyplot().close(fig)


def loss_curves(curves, path, window=10):
  """Query loss against tasks seen, one line per method ({label: [{tasks, query_loss,
  uniform_loss}]}), each a moving mean over `window` meta-steps, with the uniform guess's loss
  of the same steps dashed in the same colour."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  fig, ax = _pyplot().subplots(figsize=(6, 3.5))
  for label, curve in curves.items():
    if not curve:
      continue
    w = min(window, len(curve))
    smooth = lambda xs: np.convolve(xs, np.ones(w) / w, mode="valid")  # noqa: E731
    tasks = [c["tasks"] for c in curve][w - 1:]
    line, = ax.plot(tasks, smooth([c["query_loss"] for c in curve]), label=label)
    if all(c.get("uniform_loss") is not None for c in curve):
      ax.plot(tasks, smooth([c["uniform_loss"] for c in curve]), "--", color=line.get_color(),
              linewidth=0.8)
  ax.set_xlabel("meta-training tasks")
  ax.set_ylabel(f"query loss (mean of {window} steps)")
  ax.set_title("dashed: a uniform guess (mean ln N)", fontsize=8)
  ax.legend(fontsize=7)
  _save(fig, path)
