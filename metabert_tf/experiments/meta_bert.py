"""Meta-BERT's experiment: leave one domain out, meta-train on the rest, adapt to the held-out one.

For every held-out domain D and seed s (one cell each, seed-major so that a grid stopped
part-way has results on every domain):
  * D's examples are shuffled (seed s): the first test_size are the test set, the rest the pool;
  * each meta-learning method (methods.META_BERT) meta-trains on the other domains (seed s);
  * each method (plain BERT = bert_model, and each meta-learned checkpoint) is then
    (a) fine-tuned on `shots` examples drawn from the pool and on K per label for each of `ks`
        (k-shot split s), and (b) evaluated zero-shot; accuracy on the test set.
Results are mean +- std over held-out domains x seeds, and each meta-learned method's paired
gain over plain BERT (same domain, seed and examples). Writes output_dir/{summary.json,
results.md}; runs in output_dir/<D>_seed<s>/<method>/<setting>.
"""
import collections
import dataclasses
import os
from typing import List, Optional

import numpy as np
import tensorflow as tf

from metabert_tf import datasets
from metabert_tf import evaluation
from metabert_tf import finetune_job
from metabert_tf import io_utils
from metabert_tf.data import kshot
from metabert_tf.data import readers
from metabert_tf.errors import ConfigError
from metabert_tf.errors import DataError
from metabert_tf.experiments import grid
from metabert_tf.experiments import methods as methods_lib
from metabert_tf.experiments import recipes
from metabert_tf.experiments.grid import setting
from metabert_tf.meta import algorithms
from metabert_tf.meta import engine
from metabert_tf.meta import episodes
from metabert_tf.meta import job as meta_job

NAME = "meta_bert"
FREE_FIELDS = ("held_out", "seeds", "methods")


@dataclasses.dataclass
class Config:
  data: Optional[str] = setting(None, "Multi-domain labeled data (e.g. the Amazon reviews dir).")
  output_dir: Optional[str] = setting(None, "Where the runs and the tables go.")
  held_out: List[str] = setting([], "Domains to hold out in turn (default: every domain).")
  seeds: List[int] = setting([0, 1, 2], "Seeds (also the k-shot split index).")
  methods: List[str] = setting(["bert", "fomaml", "reptile"], "bert = no meta-training.")
  test_size: int = setting(1000, "Test examples taken from the held-out domain.")
  shots: int = setting(80, "The 'N examples' setting (0: skip).")
  ks: List[int] = setting([4, 8, 16], "K-per-label settings.")
  bert_model: str = setting("minilm-l6", "Backbone.")
  max_seq_length: int = setting(128, "Sequence length.")
  precision: str = setting("bf16", "Compute precision.", ["fp32", "bf16"])
  process_per_cell: bool = setting(True, "Run each held-out domain x seed in a child process.")
  # Meta-training (CPU-sized defaults; Meta-BERT's are 50 tasks, 10 passes, 3 epochs).
  num_train_task: int = setting(40, "Meta-training tasks.")
  outer_batch_size: int = setting(2, "Tasks per meta-step.")
  inner_batch_size: int = setting(16, "Inner batch size.")
  inner_update_step: int = setting(1, "Inner passes over the support examples.")
  inner_update_lr: float = setting(5e-5, "Inner (Adam) learning rate.")
  outer_update_lr: float = setting(5e-5, "FOMAML outer Adam learning rate.")
  reptile_epsilon: float = setting(0.5, "Reptile (classic) outer step size.")
  meta_epochs: int = setting(1, "Passes over the meta-training tasks.")
  num_support: int = setting(80, "Support examples per task.")
  num_query: int = setting(20, "Query examples per task.")
  # Fine-tuning on the held-out domain (the plain fine-tuning recipe of docs/results.md).
  steps: int = setting(50, "Fine-tuning steps per run.")
  batch_size: int = setting(8, "Fine-tuning batch size.")
  learning_rate: float = setting(1e-4, "Fine-tuning learning rate.")


def settings(config):
  return (["zero"] + ([f"n{config.shots}"] if config.shots else [])
          + [f"k{k}" for k in config.ks])


def _domains(config, examples):
  return config.held_out or sorted({e.domain for e in examples})


def check(config):
  """The methods, and every held-out domain is in `data` and big enough."""
  methods_lib.check(methods_lib.META_BERT, config.methods)
  if not config.data:
    raise ConfigError("is required", field="data")
  examples = readers.read_examples(config.data)
  datasets.require_domains(examples, config.data)
  sizes = collections.Counter(e.domain for e in examples)
  for domain in _domains(config, examples):
    if domain not in sizes:
      raise ConfigError(f"no domain {domain!r} in {config.data} (have {sorted(sizes)})",
                        field="held_out")
    if sizes[domain] < config.test_size + max(config.shots, 1):
      raise ConfigError(f"domain {domain!r} has {sizes[domain]} examples: too few for "
                        f"test_size={config.test_size} plus shots={config.shots}",
                        field="test_size")
  if len(sizes) < 2:
    raise DataError(config.data, f"needs 2 or more domains (has {sorted(sizes)})")


def cells(config):
  domains = _domains(config, readers.read_examples(config.data))
  return [grid.Cell(f"held-out {d}, seed {s}", (d, s)) for s in config.seeds for d in domains]


def _write_json_examples(path, examples):
  if not os.path.exists(path):
    io_utils.atomic_write_json(path, [kshot.leopard_record(e) for e in examples])
  return path


def prepare_domain(config, examples, domain, seed, run_dir):
  """Writes the held-out domain's test set and training sets; returns {setting: path}."""
  own = [e for e in examples if e.domain == domain]
  # [seed, 11]: the test/pool split's own stream, apart from meta-training's ([seed, ...]).
  order = np.random.default_rng([seed, 11]).permutation(len(own))
  test = [own[i] for i in order[:config.test_size]]
  pool = [own[i] for i in order[config.test_size:]]
  paths = {"test": _write_json_examples(os.path.join(run_dir, "test.json"), test)}
  if config.shots:
    paths[f"n{config.shots}"] = _write_json_examples(
        os.path.join(run_dir, f"n{config.shots}.json"), pool[:config.shots])
  if config.ks:
    splits = kshot.build_kshot_splits(pool, config.ks, num_splits=seed + 1, seed=0,
                                      path=f"{config.data} ({domain} after test_size)")
    for k in config.ks:
      paths[f"k{k}"] = _write_json_examples(os.path.join(run_dir, f"k{k}.json"),
                                            [pool[i] for i in splits[(seed, k)]])
  return paths


def meta_train(config, method, domain, seed, run_dir, paths):
  """The meta-learned checkpoint of `method` (a Method with meta_algorithm) for this cell."""
  algorithm = method.meta_algorithm
  meta = engine.MetaConfig(
      episodes=episodes.EpisodeConfig(config.num_support, config.num_query),
      num_train_task=config.num_train_task, num_test_task=0,
      outer_batch_size=config.outer_batch_size, inner_batch_size=config.inner_batch_size,
      inner_update_step=config.inner_update_step, epochs=config.meta_epochs, seed=seed,
      progress=False, algorithm=algorithms.make_config(
          algorithm, inner_update_lr=config.inner_update_lr,
          outer_update_lr=config.outer_update_lr, reptile_epsilon=config.reptile_epsilon))
  out = os.path.join(run_dir, method.name, "meta")
  grid.reuse_or_run(out, lambda: meta_job.run_meta_job(meta_job.MetaJob(
      output_dir=out, data=config.data, algorithm=algorithm, test_domains=[domain],
      bert_model=config.bert_model, max_seq_length=config.max_seq_length,
      # Were the meta-test turned on, it must not draw the examples scored below.
      meta_test_exclude=paths["test"], precision=config.precision, meta=meta)))
  # Looked up, not read from results.json: the output dir may have moved since.
  return tf.train.latest_checkpoint(os.path.join(out, "ckpt"))


def adapt(config, model, setting_name, paths, seed, out):
  """Fine-tunes (or, for `zero`, only evaluates) `model`; returns the test accuracy."""
  def work():
    train = None if setting_name == "zero" else paths[setting_name]
    examples = [] if train is None else readers.read_examples(train)
    recipe = recipes.Recipe(config.steps, config.batch_size, config.learning_rate)
    finetune_job.run_job(finetune_job.FinetuneJob(
        output_dir=out, train_path=train, eval_path=paths["test"], bert_model=model,
        max_seq_length=config.max_seq_length, precision=config.precision,
        train=recipe.config(examples, seed),
        allow_random_head=True))  # plain BERT zero-shot: the chance baseline of the table
  accuracy = grid.reuse_or_run(out, work)["accuracy"]
  grid.drop_checkpoints(out)
  return accuracy


def run_cell(config, cell):
  domain, seed = cell.key
  examples = readers.read_examples(config.data)
  run_dir = os.path.join(config.output_dir, f"{domain}_seed{seed}")
  os.makedirs(run_dir, exist_ok=True)
  io_utils.remove_leftovers(run_dir)  # test.json etc. half-written by a killed run
  paths = prepare_domain(config, examples, domain, seed, run_dir)
  for method in methods_lib.check(methods_lib.META_BERT, config.methods):
    model = config.bert_model
    if method.meta_algorithm:
      model = meta_train(config, method, domain, seed, run_dir, paths)
    for name in settings(config):
      adapt(config, model, name, paths, seed, os.path.join(run_dir, method.name, name))


def report(config, cells_run):
  accuracies = {m: {s: [] for s in settings(config)} for m in config.methods}
  for cell in cells_run:
    domain, seed = cell.key
    for m in config.methods:
      for s in settings(config):
        run_dir = os.path.join(config.output_dir, f"{domain}_seed{seed}", m, s)
        accuracies[m][s].append(grid.read_results(run_dir)["accuracy"])
  summary = evaluation.mean_std_summary({**accuracies,
                                         **evaluation.paired_gains(accuracies, "bert")})
  io_utils.atomic_write_json(os.path.join(config.output_dir, "summary.json"), summary)
  table = evaluation.markdown_table(summary, settings(config))
  io_utils.atomic_write_text(os.path.join(config.output_dir, "results.md"), table)
  return table
