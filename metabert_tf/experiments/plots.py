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
