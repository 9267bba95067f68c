r"""Evaluation harness: the LEOPARD few-shot protocol over tasks x K x splits, as a table and plot.

  python -m metabert_tf.harness --data_dir ../shared/data/leopard/json \
      --tasks sentiment_books,scitail --ks 4,8,16 --splits 10 --output_dir results/baseline

For every (task, K, split F) it fine-tunes `--bert_model` on <task>_train_<F>_<K>.json and
evaluates accuracy on <task>_eval.json (Bansal et al. 2020's protocol), then reports
mean +- std (population std over the splits, as the LEOPARD papers do) per (task, K). Finished
runs (their results.json) are reused, so a killed harness picks up where it stopped. Each
(task, K) runs in a child process (--process_per_cell), so a grid of any size fits in memory.
Writes output_dir/{summary.json, results.md, results.png}.
"""
import itertools
import json
import math
import os
import shutil

from absl import app
from absl import flags
from absl import logging
from tqdm import tqdm

from metabert_tf import datasets
from metabert_tf import evaluation
from metabert_tf import finetune_job
from metabert_tf import flag_rules
from metabert_tf import io_utils
from metabert_tf import leopard_finetune
from metabert_tf import run_utils
from metabert_tf import training

flags.DEFINE_string("data_dir", None, "LEOPARD-layout directory (<task>/<task>_train_F_K.json).")
flags.DEFINE_list("tasks", ["sentiment_books", "scitail"], "Tasks to run.")
flags.DEFINE_list("ks", ["4", "8", "16"], "Examples per label.")
flags.DEFINE_integer("splits", 10, "Splits F = 0..splits-1.")
flags.DEFINE_string("output_dir", None, "Where per-run dirs and the tables go.")
flags.DEFINE_string("bert_model", "minilm-l6", "Backbone (see run_finetune.py --bert_model).")
flags.DEFINE_integer("steps", 50, "Training steps per run (epochs = ceil(steps / steps_per_epoch)).")
flags.DEFINE_integer("batch_size", 8, "Training batch size.")
flags.DEFINE_float("learning_rate", 1e-4, "Peak AdamW learning rate.")
flags.DEFINE_enum("pooling", None, ["pooler", "mean"], "Default: the backbone's.")
flags.DEFINE_integer("max_seq_length", 128, "Sequence length.")
flags.DEFINE_enum("precision", "fp32", ["fp32", "bf16"], "Compute precision.")
flags.DEFINE_integer("seed", 0, "Training seed (the same for every split).")
flags.DEFINE_bool("keep_checkpoints", False, "Keep each run's ckpt/ (large).")
flags.DEFINE_string("label", "fine-tuning", "Name of this method in the table.")
flags.DEFINE_string("per_k_config", None, "JSON of {method: {K: [epochs per class, batch per "
                    "class]}} (configs/leopard_per_k.json): epochs and batch size = those x N, "
                    "instead of --steps / --batch_size.")
flags.DEFINE_string("per_k_method", "leopard", "Which method's settings of --per_k_config.")
flags.DEFINE_bool("leopard_head", True, "As run_finetune.py's: a LEOPARD-family --bert_model "
                  "gets its generated class rows and learned rates (--noleopard_head: plain "
                  "fine-tuning of its encoder).")
flags.DEFINE_bool("process_per_cell", True, "Run each (task, K) in a child process (TensorFlow "
                  "keeps ~350 MB for every model a process builds, whatever is freed).")
flags.mark_flags_as_required(["data_dir", "output_dir"])
flag_rules.register()  # every numeric and list flag's bounds
FLAGS = flags.FLAGS


def run_grid(tasks, ks, splits, output_dir, make_job):
  """Runs (or reuses) every (task, k, split); returns {task: {k: [accuracy per split]}}."""
  grid = [(t, k, f) for t in tasks for k in ks for f in range(splits)]
  accuracies = {t: {k: [] for k in ks} for t in tasks}
  for task, k, split in tqdm(grid, desc="harness", unit="run"):
    run_dir = os.path.join(output_dir, f"{task}_k{k}_s{split}")
    result_file = os.path.join(run_dir, "results.json")
    if not os.path.exists(result_file):
      job = make_job(task, k, split, run_dir)
      run_utils.prepare_output_dir(run_dir, overwrite=False)
      finetune_job.run_job(job)
    with open(result_file) as f:
      accuracies[task][k].append(json.load(f)["accuracy"])
  return accuracies


def markdown_table(summary, label):
  ks = sorted({int(k) for by_k in summary.values() for k in by_k})
  lines = [f"| task | method | " + " | ".join(f"K={k}" for k in ks) + " |",
           "|---|---|" + "---|" * len(ks)]
  for task, by_k in summary.items():
    cells = [f"{100 * by_k[str(k)]['mean']:.1f} +- {100 * by_k[str(k)]['std']:.1f}"
             if str(k) in by_k else "" for k in ks]
    lines.append(f"| {task} | {label} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def plot(summary, label, path):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(5, 3.5))
  for task, by_k in summary.items():
    ks = sorted(int(k) for k in by_k)
    means = [100 * by_k[str(k)]["mean"] for k in ks]
    stds = [100 * by_k[str(k)]["std"] for k in ks]
    ax.errorbar(ks, means, yerr=stds, marker="o", capsize=3, label=f"{task} ({label})")
  ax.set_xscale("log", base=2)
  ax.set_xticks(ks, [str(k) for k in ks])
  ax.set_xlabel("K (examples per label)")
  ax.set_ylabel("accuracy (%)")
  ax.legend(fontsize=8)
  fig.tight_layout()
  with io_utils.atomic_open(path, "wb") as f:
    fig.savefig(f, format="png", dpi=120)
  plt.close(fig)


def main(_):
  with run_utils.user_errors_exit():
    ks = [int(k) for k in FLAGS.ks]
    for task, k, split in itertools.product(FLAGS.tasks, ks, range(FLAGS.splits)):
      datasets.leopard_files(FLAGS.data_dir, task, k, split)  # all there, before hours of runs
    run_utils.start_grid(FLAGS.output_dir,
                         free_flags=["tasks", "ks", "splits", "keep_checkpoints", "label"])
    cells = [(t, k) for t in FLAGS.tasks for k in ks]
    if FLAGS.process_per_cell and len(cells) > 1:
      run_utils.run_cells_in_children(
          "metabert_tf.harness", output_dir=FLAGS.output_dir,
          cells=[(f"{t}, K={k}", [f"--tasks={t}", f"--ks={k}"]) for t, k in cells])

    per_k = leopard_finetune.read_per_k_config(FLAGS.per_k_config, FLAGS.per_k_method, ks)

    def make_job(task, k, split, run_dir):
      train_path, eval_path = datasets.leopard_files(FLAGS.data_dir, task, k, split)
      examples = datasets.read(train_path)
      batch_size = FLAGS.batch_size
      epochs = math.ceil(FLAGS.steps / math.ceil(len(examples) / batch_size))
      if per_k:
        epochs, batch_size = leopard_finetune.epochs_and_batch(per_k[str(k)], examples)
      return finetune_job.FinetuneJob(
          output_dir=run_dir, train_path=train_path, eval_path=eval_path,
          bert_model=FLAGS.bert_model, max_seq_length=FLAGS.max_seq_length,
          precision=FLAGS.precision, pooling=FLAGS.pooling, leopard_head=FLAGS.leopard_head,
          train=training.FinetuneConfig(
              epochs=epochs, batch_size=batch_size, learning_rate=FLAGS.learning_rate,
              seed=FLAGS.seed, progress=False, save_every_steps=training.SAVE_AT_END_ONLY))

    accuracies = run_grid(FLAGS.tasks, ks, FLAGS.splits, FLAGS.output_dir, make_job)
    if run_utils.is_grid_cell():
      return  # the parent drops checkpoints and writes the tables
    if not FLAGS.keep_checkpoints:
      for entry in os.listdir(FLAGS.output_dir):
        shutil.rmtree(os.path.join(FLAGS.output_dir, entry, "ckpt"), ignore_errors=True)
    summary = evaluation.mean_std_summary(accuracies)
    io_utils.atomic_write_json(os.path.join(FLAGS.output_dir, "summary.json"), summary)
    table = markdown_table(summary, FLAGS.label)
    io_utils.atomic_write_text(os.path.join(FLAGS.output_dir, "results.md"), table)
    plot(summary, FLAGS.label, os.path.join(FLAGS.output_dir, "results.png"))
    logging.info("Results:\n%s", table)
    run_utils.print_result(table)


if __name__ == "__main__":
  app.run(main)
