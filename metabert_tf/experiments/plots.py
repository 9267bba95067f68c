"""Figures of the protocols' summaries (matplotlib, written atomically as PNG)."""
from metabert_tf import io_utils


def accuracy_by_k(summary, path):
  """Accuracy (mean +- std over splits) against K, one line per row: {row: {K: stats}}."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  fig, ax = plt.subplots(figsize=(5, 3.5))
  ks = []
  for task, by_k in summary.items():
    ks = sorted(int(k) for k in by_k)
    means = [100 * by_k[str(k)]["mean"] for k in ks]
    stds = [100 * by_k[str(k)]["std"] for k in ks]
    ax.errorbar(ks, means, yerr=stds, marker="o", capsize=3, label=task)
  ax.set_xscale("log", base=2)
  ax.set_xticks(ks, [str(k) for k in ks])
  ax.set_xlabel("K (examples per label)")
  ax.set_ylabel("accuracy (%)")
  ax.legend(fontsize=8)
  fig.tight_layout()
  with io_utils.atomic_open(path, "wb") as f:
    fig.savefig(f, format="png", dpi=120)
  plt.close(fig)


def loss_curves(curves, path, window=10):
  """Query loss against tasks seen, one line per method ({label: [{tasks, query_loss,
  uniform_loss}]}), each a moving mean over `window` meta-steps, with the uniform guess's loss
  of the same steps dashed in the same colour."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  fig, ax = plt.subplots(figsize=(6, 3.5))
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
  fig.tight_layout()
  with io_utils.atomic_open(path, "wb") as f:
    fig.savefig(f, format="png", dpi=120)
  plt.close(fig)
