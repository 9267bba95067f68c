"""Choosing plain fine-tuning's recipe on tasks that are never reported: k-shot splits of the
meta-training sources (GLUE and AG News, ../shared/data/meta_train), one fine-tuning per
(candidate rule, source, K, split), scored on held-out examples of the same source.

A rule is `at least steps steps of batch_size and at least E epochs` (recipes.Recipe) for each
E of `epoch_choices`: with E = 1 that is the fixed 50 steps of batch 8, which trains K=16 of an
N-class task for only 50 * 8 / (16 N) epochs; a larger E makes the steps grow with N x K. The
chosen rule is the E of the best mean accuracy over every (source, K) (ties: the fewer epochs),
written to output_dir/summary.json ("chosen_epochs") with the table of every rule; the LEOPARD
benchmark then runs with --epochs E.

With leopard_per_k_config, the candidates are instead shares s of the LEOPARD release's per-K
epochs (`epochs_scales`; the release's 150N-200N epochs cost minutes per run on a CPU) for a
LEOPARD-family bert_model (its generated head, SGD at its learned rates): the benchmark's
--leopard_epochs_scale ("chosen_epochs_scale").

The first cell writes the splits: for each source a seeded sample of pool_examples examples,
split with data/kshot.py (K per label, nested over K) and the rest of the sample its eval file,
in LEOPARD layout under output_dir/data. Runs go to output_dir/runs/<source>_k<K>_s<F>_epochs<n>,
n the epochs a rule gives that split (rules that give the same n share the run).
"""
import dataclasses
import os
import random
from typing import List
from typing import Optional

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
  # A LEOPARD-family bert_model's rule instead: shares of the release's per-K epochs.
  leopard_per_k_config: Optional[str] = setting(None, "The per-K table (configs/leopard_per_k"
                                                ".json): compare shares of its epochs instead.")
  per_k_method: str = setting("leopard", "Its entry (leopard or hybrid_smlmt).")
  epochs_scales: List[float] = setting([1.0, 0.25, 0.1], "The shares s of its epochs compared.")


def check(config):
  unknown = [s for s in config.sources if s not in SOURCES]
  if unknown:
    raise ConfigError(f"must be among {', '.join(SOURCE_NAMES)}; got {', '.join(unknown)}",
                      field="sources")
  if not config.epoch_choices or min(config.epoch_choices) < 1:
    raise ConfigError(f"must be integers >= 1, got {config.epoch_choices}", field="epoch_choices")
  if config.leopard_per_k_config:
    if not config.epochs_scales or min(config.epochs_scales) <= 0:
      raise ConfigError(f"must be > 0, got {config.epochs_scales}", field="epochs_scales")
    recipes.read_per_k_config(config.leopard_per_k_config, config.per_k_method, config.ks,
                              "leopard_per_k_config")
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
    kshot.write_kshot_files(pool, name, data_dir(config), config.ks, config.splits,
                            config.seed, eval_rest=True, path=spec)


def candidates(config):
  """The rules compared: minimum epochs E, or shares s of the per-K table's epochs."""
  return config.epochs_scales if config.leopard_per_k_config else config.epoch_choices


def _recipe(config, rule, k):
  if not config.leopard_per_k_config:
    return recipes.Recipe(config.steps, config.batch_size, config.learning_rate, rule)
  per_k = recipes.read_per_k_config(config.leopard_per_k_config, config.per_k_method, [k],
                                    "leopard_per_k_config")
  return recipes.Recipe(learning_rate=config.learning_rate, per_k=per_k, epochs_scale=rule)


def _train_config(config, rule, name, k, split):
  train, _ = datasets.leopard_files(data_dir(config), name, k, split)
  return _recipe(config, rule, k).config(datasets.read(train), config.seed, k)


def _run_dir(config, rule, name, k, split):
  """Named by the epochs (and, per-K, the batch) the rule gives this split: rules that give the
  same share one run."""
  train = _train_config(config, rule, name, k, split)
  batch = f"_batch{train.batch_size}" if config.leopard_per_k_config else ""
  return os.path.join(config.output_dir, "runs",
                      f"{name}_k{k}_s{split}_epochs{train.epochs}{batch}")


def run_cell(config, cell):
  name, k = cell.key
  if name == "data":
    write_splits(config)
    return
  for split in range(config.splits):
    train, evals = datasets.leopard_files(data_dir(config), name, k, split)
    for rule in candidates(config):
      run_dir = _run_dir(config, rule, name, k, split)

      def work(run_dir=run_dir, train=train, evals=evals, rule=rule):
        runtime.prepare_output_dir(run_dir, overwrite=False)
        finetune_job.run_job(finetune_job.FinetuneJob(
            output_dir=run_dir, train_path=train, eval_path=evals, bert_model=config.bert_model,
            max_seq_length=config.max_seq_length, precision=config.precision,
            train=_train_config(config, rule, name, k, split)))
      grid.reuse_or_run(run_dir, work)
      grid.drop_checkpoints(run_dir)


def choose(by_rule):
  """The rule (E or s) of the best mean accuracy over every (source, K) cell ({rule: {cell:
  stats}}); ties go to the smaller value (the cheaper rule)."""
  means = {e: float(np.mean([s["mean"] for s in cells.values()])) for e, cells in by_rule.items()}
  return min(means, key=lambda e: (-round(means[e], 6), e)), means


def report(config, cells_run):
  accuracies = {}
  for cell in cells_run:
    name, k = cell.key
    if name == "data":
      continue
    for rule in candidates(config):
      runs = [grid.read_results(_run_dir(config, rule, name, k, f))
              for f in range(config.splits)]
      accuracies.setdefault(rule, {})[f"{name} K={k}"] = [r["accuracy"] for r in runs]
  by_rule = evaluation.mean_std_summary(accuracies)
  chosen, means = choose(by_rule)
  settings = list(next(iter(by_rule.values())))
  per_k = bool(config.leopard_per_k_config)
  describe = ((lambda s: f"{config.per_k_method} per-K epochs x {s}") if per_k else
              (lambda e: f">= {config.steps} steps, >= {e} epochs"))
  rows = {describe(rule): by_rule[rule] for rule in candidates(config)}
  table = evaluation.markdown_table(rows, settings, first="rule")
  table += "\n" + "\n".join(f"mean over cells, {describe(r)}: {100 * m:.2f}"
                            for r, m in means.items())
  table += (f"\nchosen: --leopard_epochs_scale {chosen}\n" if per_k else
            f"\nchosen: --epochs {chosen} (with --steps {config.steps})\n")
  io_utils.atomic_write_json(os.path.join(config.output_dir, "summary.json"), {
      "rules": {str(r): by_rule[r] for r in candidates(config)},
      "mean_over_cells": {str(r): m for r, m in means.items()},
      "chosen_epochs_scale" if per_k else "chosen_epochs": chosen,
      "steps": config.steps, "batch_size": config.batch_size,
      "learning_rate": config.learning_rate})
  io_utils.atomic_write_text(os.path.join(config.output_dir, "results.md"), table)
  return table
