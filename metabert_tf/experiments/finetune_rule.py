"""Choosing plain fine-tuning's recipe on tasks that are never reported: k-shot splits of the
meta-training sources (GLUE and AG News, ../shared/data/meta_train), one fine-tuning per
(candidate rule, source, K, split), scored on held-out examples of the same source.

A rule is `at least steps steps of batch_size and at least E epochs` (recipes.Recipe) for each
E of `epoch_choices`: with E = 1 that is the fixed 50 steps of batch 8, which trains K=16 of an
N-class task for only 50 * 8 / (16 N) epochs; a larger E makes the steps grow with N x K. The
chosen rule is the E of the best mean accuracy over every (source, K) (ties: the fewer epochs),
written to output_dir/summary.json ("chosen_epochs") with the table of every rule; the LEOPARD
benchmark then runs with --epochs E.

The first cell writes the splits: for each source a seeded sample of pool_examples examples,
split with data/kshot.py (K per label, nested over K) and the rest of the sample its eval file,
in LEOPARD layout under output_dir/data. Runs go to output_dir/runs/<source>_k<K>_s<F>_epochs<n>,
n the epochs a rule gives that split (rules that give the same n share the run).
"""
import dataclasses
import os
import random
from typing import List

import numpy as np

from metabert_tf import datasets
from metabert_tf import evaluation
from metabert_tf import finetune_job
from metabert_tf import io_utils
from metabert_tf import runtime
from metabert_tf.data import kshot
from metabert_tf.errors import ConfigError
from metabert_tf.experiments import grid
from metabert_tf.experiments import meta_stage
from metabert_tf.experiments import recipes
from metabert_tf.experiments.grid import setting

NAME = "finetune_rule"
FREE_FIELDS = ()
# Selection tasks: a name for each labeled source of meta_stage.LABELED_SOURCES.
SOURCE_NAMES = ("sst2", "cola", "mrpc", "rte", "qnli", "agnews")
SOURCES = dict(zip(SOURCE_NAMES, meta_stage.LABELED_SOURCES))


@dataclasses.dataclass
class Config:
  output_dir: str = setting(None, "Where the splits, the runs and the table go.")
  meta_train_dir: str = setting("../shared/data/meta_train", "GLUE and AG News as distributed.")
  sources: List[str] = setting(["sst2", "agnews", "mrpc", "qnli"],
                               f"Selection tasks, among {', '.join(SOURCE_NAMES)}.")
  ks: List[int] = setting([4, 16], "Examples per label.")
  splits: int = setting(3, "Splits F = 0..splits-1 of each source.")
  pool_examples: int = setting(600, "Examples sampled from each source: the splits and, the "
                               "rest, its eval file.")
  epoch_choices: List[int] = setting([1, 10, 30], "The candidate rules' minimum epochs E.")
  steps: int = setting(50, "Every rule's minimum training steps.")
  batch_size: int = setting(8, "Training batch size.")
  learning_rate: float = setting(1e-4, "Peak AdamW learning rate.")
  bert_model: str = setting("minilm-l6", "Backbone (see run_finetune.py --bert_model).")
  max_seq_length: int = setting(128, "Sequence length.")
  precision: str = setting("bf16", "Compute precision.", ["fp32", "bf16"])
  seed: int = setting(0, "Seed of the samples, the splits and the training.")
  process_per_cell: bool = setting(True, "Run each (source, K) in a child process.")


def check(config):
  unknown = [s for s in config.sources if s not in SOURCES]
  if unknown:
    raise ConfigError(f"must be among {', '.join(SOURCE_NAMES)}; got {', '.join(unknown)}",
                      field="sources")
  if not config.epoch_choices or min(config.epoch_choices) < 1:
    raise ConfigError(f"must be integers >= 1, got {config.epoch_choices}", field="epoch_choices")
  needed = config.splits * max(config.ks)
  if config.pool_examples <= 2 * needed:
    raise ConfigError(f"must leave examples to score after {config.splits} splits of "
                      f"K={max(config.ks)} per label: > {2 * needed}", field="pool_examples")
  for name in config.sources:
    spec = os.path.join(config.meta_train_dir, SOURCES[name])
    if not datasets.exists(spec):
      raise ConfigError(f"has no {name} source ({spec} not found)", field="meta_train_dir")


def cells(config):
  return [grid.Cell("k-shot splits of the sources", ("data", None))] + [
      grid.Cell(f"{name}, K={k}", (name, k)) for name in config.sources for k in config.ks]


def data_dir(config):
  return os.path.join(config.output_dir, "data")


def write_splits(config):
  """The LEOPARD-layout splits and eval file of every source (kept when already written)."""
  for name in config.sources:
    if os.path.exists(os.path.join(data_dir(config), name, f"{name}_eval.json")):
      continue
    spec = os.path.join(config.meta_train_dir, SOURCES[name])
    examples = datasets.read(spec)
    pool = random.Random(f"{config.seed}:{name}").sample(
        examples, min(config.pool_examples, len(examples)))
    kshot.write_kshot_files(pool, name, data_dir(config), config.ks, config.splits, config.seed, eval_rest=True, path=spec)


def _recipe(config, epochs):
  return recipes.Recipe(config.steps, config.batch_size, config.learning_rate, epochs)


def _run_dir(config, epochs, name, k, split):
  """Named by the epochs the rule gives this split: rules that give the same share one run."""
  train, _ = datasets.leopard_files(data_dir(config), name, k, split)
  actual = _recipe(config, epochs).config(datasets.read(train), config.seed).epochs
  return os.path.join(config.output_dir, "runs", f"{name}_k{k}_s{split}_epochs{actual}")


def run_cell(config, cell):
  name, k = cell.key
  if name == "data":
    write_splits(config)
    return
  for split in range(config.splits):
    train, evals = datasets.leopard_files(data_dir(config), name, k, split)
    for epochs in config.epoch_choices:
      run_dir = _run_dir(config, epochs, name, k, split)

      def work(run_dir=run_dir, train=train, evals=evals, epochs=epochs):
        runtime.prepare_output_dir(run_dir, overwrite=False)
        finetune_job.run_job(finetune_job.FinetuneJob(
            output_dir=run_dir, train_path=train, eval_path=evals, bert_model=config.bert_model,
            max_seq_length=config.max_seq_length, precision=config.precision,
            train=_recipe(config, epochs).config(datasets.read(train), config.seed)))
      grid.reuse_or_run(run_dir, work)
      grid.drop_checkpoints(run_dir)


def choose(by_rule):
  """The E of the best mean accuracy over every (source, K) cell ({E: {cell: stats}}); ties go
  to the fewer epochs (the cheaper rule)."""
  means = {e: float(np.mean([s["mean"] for s in cells.values()])) for e, cells in by_rule.items()}
  return min(means, key=lambda e: (-round(means[e], 6), e)), means


def report(config, cells_run):
  accuracies = {}
  for cell in cells_run:
    name, k = cell.key
    if name == "data":
      continue
    for epochs in config.epoch_choices:
      runs = [grid.read_results(_run_dir(config, epochs, name, k, f))
              for f in range(config.splits)]
      accuracies.setdefault(epochs, {})[f"{name} K={k}"] = [r["accuracy"] for r in runs]
  by_rule = evaluation.mean_std_summary(accuracies)
  chosen, means = choose(by_rule)
  settings = list(next(iter(by_rule.values())))
  rows = {f">= {config.steps} steps, >= {e} epochs": by_rule[e] for e in config.epoch_choices}
  table = evaluation.markdown_table(rows, settings, first="rule")
  table += "\n" + "\n".join(f"mean over cells, >= {e} epochs: {100 * m:.2f}"
                            for e, m in means.items())
  table += f"\nchosen: --epochs {chosen} (with --steps {config.steps})\n"
  io_utils.atomic_write_json(os.path.join(config.output_dir, "summary.json"), {
      "rules": {str(e): by_rule[e] for e in config.epoch_choices},
      "mean_over_cells": {str(e): m for e, m in means.items()}, "chosen_epochs": chosen,
      "steps": config.steps, "batch_size": config.batch_size,
      "learning_rate": config.learning_rate})
  io_utils.atomic_write_text(os.path.join(config.output_dir, "results.md"), table)
  return table
