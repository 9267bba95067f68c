"""The LEOPARD few-shot protocol (Bansal et al. 2020): for every task, K and split F, fine-tune
on <task>_train_<F>_<K>.json and score accuracy on <task>_eval.json; report mean +- std over
the splits (the population std, as the LEOPARD papers do) per (task, K).

Methods (methods.LEOPARD): fine-tuning of `bert_model` (whatever checkpoint it is: a
meta-trained one is fine-tuned by its own recipe), with a prototype head start, or a frozen
encoder with logistic regression or the nearest class mean; and the meta-learned methods
(Proto-BERT, MT-BERT, FOMAML and Reptile with ProtoMAML's head, LEOPARD, SMLMT, Hybrid-SMLMT),
each meta-trained once from `bert_model` on the task sources (meta_stage.py: a cell of its
own, before its tasks), then fine-tuned (the LEOPARD family by the per-K table of
leopard_per_k_config) or, Proto-BERT, scored by its nearest class mean. One cell per (method,
task, K), its splits inside; runs in output_dir/<task>_k<K>_s<F> (fine-tuning) and
output_dir/<method>/<task>_k<K>_s<F> (the others). Writes output_dir/{summary.json,
results.md, results.png} and output_dir/leopard_benchmark.json (every run, and each
meta-learner's CPU time), the latter after every cell.
"""
import dataclasses
import hashlib
import os
from typing import List, Optional

from metabert_tf import datasets
from metabert_tf import evaluation
from metabert_tf import finetune_job
from metabert_tf import frozen
from metabert_tf import io_utils
from metabert_tf import runtime
from metabert_tf.errors import ConfigError
from metabert_tf.experiments import grid
from metabert_tf.experiments import meta_stage
from metabert_tf.experiments import methods as methods_lib
from metabert_tf.experiments import plots
from metabert_tf.experiments import recipes
from metabert_tf.experiments.grid import setting
from metabert_tf.meta import algorithms

NAME = "leopard"
FREE_FIELDS = ("tasks", "ks", "splits", "keep_checkpoints", "label", "methods",
               # the fine-tuning recipe: checked per finished run (_check_recipe)
               "steps", "epochs", "batch_size", "learning_rate", "per_k_config",
               "per_k_method", "leopard_per_k_config", "leopard_epochs_scale",
               *meta_stage.FIELDS)  # checked per meta-training (meta_stage.py)
RUNS_FILE = "leopard_benchmark.json"


@dataclasses.dataclass
class Config:
  data_dir: Optional[str] = setting(None, "LEOPARD-layout directory "
                                    "(<task>/<task>_train_F_K.json).")
  output_dir: Optional[str] = setting(None, "Where the runs and the tables go.")
  tasks: List[str] = setting(["sentiment_books", "scitail"], "Tasks to run.")
  ks: List[int] = setting([4, 8, 16], "Examples per label.")
  splits: int = setting(10, "Splits F = 0..splits-1.")
  bert_model: str = setting("minilm-l6", "Backbone (see run_finetune.py --bert_model).")
  steps: int = setting(50, "At least this many training steps per run.")
  epochs: int = setting(1, "At least this many epochs per run (more steps than `steps` when "
                       "the training set is large: the finetune_rule protocol chooses it).")
  batch_size: int = setting(8, "Training batch size.")
  learning_rate: float = setting(1e-4, "Peak AdamW learning rate.")
  pooling: Optional[str] = setting(None, "Default: the backbone's.", ["pooler", "mean"])
  max_seq_length: int = setting(128, "Sequence length.")
  precision: str = setting("fp32", "Compute precision.", ["fp32", "bf16"])
  seed: int = setting(0, "Training seed (the same for every split).")
  keep_checkpoints: bool = setting(False, "Keep each run's ckpt/ (large).")
  label: str = setting("fine-tuning", "Name of the fine-tuning method in the table.")
  methods: List[str] = setting(["fine-tuning"], "Methods (experiments/methods.py LEOPARD): "
                               f"{', '.join(methods_lib.LEOPARD)}.")
  per_k_config: Optional[str] = setting(None, "JSON of {method: {K: [epochs per class, batch "
                                        "per class]}} (configs/leopard_per_k.json): epochs and "
                                        "batch size = those x N, instead of steps/batch_size.")
  per_k_method: str = setting("leopard", "Which method's settings of per_k_config.")
  leopard_head: bool = setting(True, "A LEOPARD-family bert_model gets its generated class rows "
                               "and learned rates (false: plain fine-tuning of its encoder).")
  head_init: str = setting("random", "The dense head's start (run_finetune.py --head_init).",
                           ["random", "prototypes"])
  process_per_cell: bool = setting(True, "Run each (task, K) in a child process.")
  # The meta-learned methods' stage (meta_stage.py).
  meta_train_dir: str = setting("../shared/data/meta_train", "GLUE and AG News as distributed "
                                "(the labeled task sources).")
  smlmt_data: List[str] = setting([], "SMLMT task files (data_prep.smlmt) for smlmt and "
                                  "hybrid-smlmt.")
  meta_tasks: int = setting(400, "Meta-training tasks of every meta-learned method (unless "
                            "meta_tasks_by_method names it).")
  meta_tasks_by_method: List[str] = setting(
      [], "method:tasks entries: that method's meta-training tasks (e.g. an equal CPU budget: "
      "tasks in proportion to each method's measured tasks/hour).")
  meta_seed: int = setting(0, "Meta-training seed.")
  meta_learning_rate: float = setting(2e-5, "Peak outer AdamW rate (LEOPARD family, "
                                      "Proto-BERT, MT-BERT).")
  meta_max_seq_length: int = setting(128, "Meta-training sequence length (batches are trimmed "
                                     "to their longest example).")
  max_examples_per_source: int = setting(0, "Read at most this many examples of each labeled "
                                         "source (0: all).")
  leopard_per_k_config: Optional[str] = setting(
      None, "The per-K fine-tuning table of the meta-learned LEOPARD-family methods "
      "(configs/leopard_per_k.json; smlmt takes hybrid_smlmt's entry).")
  leopard_epochs_scale: float = setting(1.0, "Their epochs: the table's times this (rounded up; "
                                        "the finetune_rule protocol chooses it).")


def _per_k_method(method):
  """The entry of leopard_per_k_config a LEOPARD-family method is fine-tuned by (else None)."""
  if method.meta_algorithm not in algorithms.LEOPARD_FAMILY or not method.leopard_head:
    return None
  return "hybrid_smlmt" if method.meta_algorithm == "smlmt" else method.meta_algorithm


def check(config):
  """The methods, every split file, the per-K settings, the meta-training sources and the
  recipe of every finished run, before hours of runs."""
  chosen = methods_lib.check(methods_lib.LEOPARD, config.methods)
  budgeted = list(meta_stage.parse_tasks_by_method(config.meta_tasks_by_method))
  methods_lib.check({n: m for n, m in methods_lib.LEOPARD.items() if m.meta_algorithm},
                    budgeted, field="meta_tasks_by_method")
  for task in config.tasks:
    for k in config.ks:
      for split in range(config.splits):
        datasets.leopard_files(config.data_dir, task, k, split)
  recipes.read_per_k_config(config.per_k_config, config.per_k_method, config.ks)
  for method in chosen:
    if _per_k_method(method):
      if not config.leopard_per_k_config:
        raise ConfigError(f"{method.name} is fine-tuned by a per-K table: give "
                          "configs/leopard_per_k.json", field="leopard_per_k_config")
      recipes.read_per_k_config(config.leopard_per_k_config, _per_k_method(method), config.ks,
                                "leopard_per_k_config")
    if method.meta_algorithm:
      meta_stage.check(config, method)
    prior, _ = recorded(config)
    for task in config.tasks:
      for k in config.ks:
        for split in range(config.splits):
          if method.frozen:
            continue
          run_dir = _run_dir(config, method.name, task, k, split)
          job = _job(config, method, run_dir, *datasets.leopard_files(config.data_dir, task, k,
                                                                       split), k)
          if os.path.exists(os.path.join(run_dir, "results.json")):
            _check_recipe(run_dir, grid.read_results(run_dir).get("train_config", {}), job)
          elif (method.name, task, k, split) in prior:
            _check_recipe(f"{RUNS_FILE}: {method.name} {task} K={k} split {split}",
                          prior[(method.name, task, k, split)].get("recipe", {}), job)


def cells(config):
  """A meta-training cell before the first method that needs it (methods that share one, e.g.
  proto-bert and proto-bert-ft, get one cell), then a cell per (method, task, K)."""
  out, staged = [], set()
  for m in config.methods:
    method = methods_lib.LEOPARD[m]
    if method.meta_algorithm and method.stage_name not in staged:
      staged.add(method.stage_name)
      out.append(grid.Cell(f"{method.stage_name}: meta-training", (method.stage_name, None, None)))
    # the method is named once there are several (the default is plain fine-tuning alone)
    prefix = f"{m}: " if len(config.methods) > 1 else ""
    out += [grid.Cell(f"{prefix}{task}, K={k}", (m, task, k))
            for task in config.tasks for k in config.ks]
  return out


def _run_dir(config, method, task, k, split):
  name = f"{task}_k{k}_s{split}"
  return os.path.join(config.output_dir, *([] if method == "fine-tuning" else [method]), name)


def _job(config, method, run_dir, train, evals, k):
  bert_model = (meta_stage.run_dir(config, method) if method.meta_algorithm
                else config.bert_model)
  model = dict(bert_model=bert_model, max_seq_length=config.max_seq_length,
               precision=config.precision, pooling=config.pooling)
  if method.frozen:
    return frozen.FrozenJob(output_dir=run_dir, train_path=train, eval_path=evals,
                            classifier=method.frozen, **model)
  per_k = (recipes.read_per_k_config(config.leopard_per_k_config, _per_k_method(method), [k])
           if _per_k_method(method) else
           recipes.read_per_k_config(config.per_k_config, config.per_k_method, [k]))
  recipe = recipes.Recipe(config.steps, config.batch_size, config.learning_rate, config.epochs,
                          per_k=per_k, epochs_scale=(config.leopard_epochs_scale
                                                     if _per_k_method(method) else 1.0))
  head_init = config.head_init if method.name == "fine-tuning" else method.head_init
  return finetune_job.FinetuneJob(
      output_dir=run_dir, train_path=train, eval_path=evals,
      leopard_head=config.leopard_head and method.leopard_head,
      head_init=head_init, train=recipe.config(datasets.read(train), config.seed, k), **model)


def run_cell(config, cell):
  name, task, k = cell.key
  method = methods_lib.LEOPARD[name]
  if task is None:  # the method's meta-training
    meta_stage.run(config, method)
    write_runs(config)
    return
  for split, run_dir in _not_recorded_elsewhere(config, method, task, k):
    train, evals = datasets.leopard_files(config.data_dir, task, k, split)

    def work(run_dir=run_dir, train=train, evals=evals):
      runtime.prepare_output_dir(run_dir, overwrite=False)
      job = _job(config, method, run_dir, train, evals, k)
      (frozen.run_job if method.frozen else finetune_job.run_job)(job)
    grid.reuse_or_run(run_dir, work)
    grid.drop_checkpoints(run_dir, config.keep_checkpoints)
  write_runs(config)


def finished(config, cell):
  """Every split of a (method, task, K) cell is finished (here, or recorded elsewhere and still
  valid): run_cell would only reuse them. A meta-training cell is always run (its stage checks
  its settings and resumes); recipes of finished runs were checked by check()."""
  name, task, k = cell.key
  if task is None:
    return False
  return all(os.path.exists(os.path.join(run_dir, "results.json")) for _, run_dir in
             _not_recorded_elsewhere(config, methods_lib.LEOPARD[name], task, k))


def _not_recorded_elsewhere(config, method, task, k):
  """[(split, run_dir)] of the cell but those finished elsewhere: not here, recorded in
  leopard_benchmark.json and still valid (they are not re-run)."""
  prior, meta_before = recorded(config)
  out = []
  for split in range(config.splits):
    run_dir = _run_dir(config, method.name, task, k, split)
    if (os.path.exists(os.path.join(run_dir, "results.json"))
        or not _still_valid(config, method, prior.get((method.name, task, k, split)),
                            meta_before)):
      out.append((split, run_dir))
  return out


RECIPE_FIELDS = ("epochs", "batch_size", "learning_rate", "seed")


def _check_recipe(where, done, job):
  """A finished fine-tuning run (`where`, its train_config `done`) is reused only under the
  recipe that made it. The recipe's settings are free in the grid's fingerprint, so a recipe
  can be chosen (finetune_rule.py) while the frozen baselines and the meta-trainings, which do
  not read it, already run."""
  changed = [f for f in RECIPE_FIELDS if done.get(f) != getattr(job.train, f)]
  if changed:
    raise ConfigError(f"{where} was fine-tuned with another recipe ("
                      + ", ".join(f"{f} {done.get(f)}, now {getattr(job.train, f)}"
                                  for f in changed)
                      + "): use the settings that made it, or another --output_dir")


def settings(config):
  """The grid's settings a run depends on (its fingerprint less the free fields and where it
  is written)."""
  free = set(FREE_FIELDS) | set(grid.ALWAYS_FREE) | {"output_dir"}
  return {n: v for n, v in dataclasses.asdict(config).items() if n not in free}


def _meta_run_id(config, method):
  """Which meta-training a meta-learned method's runs were fine-tuned from (a digest of its
  results.json), or None while it is not finished here."""
  path = os.path.join(meta_stage.run_dir(config, method), "results.json")
  if not os.path.exists(path):
    return None
  with open(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()[:16]


def recorded(config):
  """({(method, task, k, split): run}, {method: meta-training}) recorded in
  output_dir/leopard_benchmark.json, e.g. finished on another machine whose run directories are
  not here (scripts/leopard_benchmark.sh starts a new output_dir from the committed copy). A file
  of other settings is refused."""
  # benchmark_report is imported in functions, not with the package: `python -m
  # metabert_tf.experiments.benchmark_report` then loads it once, as __main__ (runpy warns)
  path = os.path.join(config.output_dir, RUNS_FILE)
  if not os.path.exists(path):
    return {}, {}
  from metabert_tf.experiments import benchmark_report  # pylint: disable=import-outside-toplevel
  record = benchmark_report.load(path, hint=": restore it from "
                                 "docs/measurements/leopard_benchmark.json or move it away")
  before = record.get("settings")
  if before is None:
    raise ConfigError(f"{path} does not say which settings made its runs (an older version "
                      "wrote it): move it away to start over")
  changed = sorted(n for n, v in settings(config).items()
                   if n in before and not grid.same_setting(before[n], v))
  if changed:
    raise ConfigError(f"{path} records runs of other settings ({', '.join(changed)}: "
                      f"{[before[n] for n in changed]}): use those settings, or remove it")
  runs = {(r["method"], r["task"], r["k"], r["split"]): r for r in record.get("runs", [])}
  return runs, record.get("meta_training", {})


def _still_valid(config, method, run, meta_before):
  """A recorded run counts: a meta-learned method's only when it was fine-tuned from the
  meta-training here or, while none has finished here, from a recorded one of this grid's
  meta-training settings (it is then re-run after the one here)."""
  if run is None:
    return False
  if not method.meta_algorithm:
    return True
  here = _meta_run_id(config, method)
  if here is not None:
    return run.get("meta_run") == here
  meta = meta_before.get(method.name, {})
  return (run.get("meta_run") is not None and meta.get("meta_run") == run.get("meta_run")
          and meta.get("stage") == meta_stage.stage_settings(config, method))


def collect_runs(config):
  """Every finished run: those of the run directories here, else those recorded in
  leopard_benchmark.json that are still valid (_still_valid); recorded runs outside this
  invocation's methods, tasks, K and splits are kept as they are."""
  prior, meta_before = recorded(config)
  mine = {(m, t, k, f) for m in config.methods for t in config.tasks for k in config.ks
          for f in range(config.splits)}
  runs = [run for key, run in prior.items() if key not in mine]
  for name in config.methods:
    method = methods_lib.LEOPARD[name]
    meta_run = _meta_run_id(config, method) if method.meta_algorithm else None
    for task in config.tasks:
      for k in config.ks:
        for split in range(config.splits):
          run_dir = _run_dir(config, name, task, k, split)
          if not os.path.exists(os.path.join(run_dir, "results.json")):
            run = prior.get((name, task, k, split))
            if _still_valid(config, method, run, meta_before):
              runs.append(run)
            continue
          r = grid.read_results(run_dir)
          runs.append({"method": name, "task": task, "k": k, "split": split,
                       "accuracy": r["accuracy"], "meta_learned": bool(method.meta_algorithm),
                       "train_seconds": r.get("train_seconds"),
                       "eval_seconds": r.get("eval_seconds"),
                       "did_not_learn": evaluation.did_not_learn(r),
                       "recipe": {f: r.get("train_config", {}).get(f) for f in RECIPE_FIELDS},
                       "meta_run": meta_run})
  return runs


def write_runs(config):
  """output_dir/leopard_benchmark.json: every finished run of the grid so far, {"settings",
  "runs": [{method, task, k, split, accuracy, meta_learned, train_seconds, eval_seconds,
  did_not_learn, recipe, meta_run}]}, and each meta-learned method's meta-training (tasks, CPU
  seconds, seed, its query-loss curve). Runs and meta-trainings recorded there before and still
  valid are kept."""
  _, before = recorded(config)
  meta = {name: m for name, m in before.items() if name not in config.methods}
  for name in config.methods:
    method = methods_lib.LEOPARD[name]
    if not method.meta_algorithm:
      continue
    if _meta_run_id(config, method) is None:
      if before.get(name, {}).get("stage") == meta_stage.stage_settings(config, method):
        meta[name] = before[name]
      continue
    done = grid.read_results(meta_stage.run_dir(config, method))
    meta[name] = {"algorithm": method.meta_algorithm, "num_tasks": done.get("num_tasks"),
                  "seconds": done.get("train_seconds"), "seed": config.meta_seed,
                  "meta_run": _meta_run_id(config, method),
                  "stage": meta_stage.stage_settings(config, method),
                  "curve": meta_stage.curve(config, method)}
  runs = collect_runs(config)
  io_utils.atomic_write_json(os.path.join(config.output_dir, RUNS_FILE),
                             {"settings": settings(config), "runs": runs, "meta_training": meta})


def report(config, cells_run):
  accuracies, not_learned = {}, {}
  wanted = {cell.key for cell in cells_run}
  for r in collect_runs(config):
    name, task, k = r["method"], r["task"], r["k"]
    if (name, task, k) not in wanted:
      continue
    row = (task, config.label if name == "fine-tuning" else methods_lib.LEOPARD[name].label)
    accuracies.setdefault(row, {}).setdefault(k, []).append(r["accuracy"])
    not_learned[(row, str(k))] = not_learned.get((row, str(k)), 0) + bool(r["did_not_learn"])
  by_row = evaluation.mean_std_summary(accuracies)
  for row, by_k in by_row.items():  # the guard: runs whose model did not learn, counted
    for k, stats in by_k.items():
      stats["not_learned"] = not_learned[(row, k)]
  # summary.json: {task: {K: stats}} of the fine-tuning method, as before; with other methods,
  # every method's under "methods": {label: {task: {K: stats}}}.
  summary = {task: by_k for (task, label), by_k in by_row.items() if label == config.label}
  if config.methods != ["fine-tuning"]:
    summary["methods"] = {}
    for (task, label), by_k in by_row.items():
      summary["methods"].setdefault(label, {})[task] = by_k
  io_utils.atomic_write_json(os.path.join(config.output_dir, "summary.json"), summary)
  rows = {f"{task} | {label}": by_k for (task, label), by_k in by_row.items()}
  table = evaluation.markdown_table(rows, [str(k) for k in config.ks], first="task | method",
                                    column_names=[f"K={k}" for k in config.ks])
  if any(not_learned.values()):
    table += ("\n(m/n did not learn): m of the n runs ended with a training loss no lower than at "
              "the start, or predict one class for every eval example.\n")
  io_utils.atomic_write_text(os.path.join(config.output_dir, "results.md"), table)
  plots.accuracy_by_k({f"{task}, {label}": by_k for (task, label), by_k in by_row.items()},
                      os.path.join(config.output_dir, "results.png"))
  write_runs(config)  # and its averages over tasks, with each method's cost
  from metabert_tf.experiments import benchmark_report  # pylint: disable=import-outside-toplevel
  benchmark_report.write(benchmark_report.load(os.path.join(config.output_dir, RUNS_FILE)),
                         os.path.join(config.output_dir, "benchmark.md"),
                         os.path.join(config.output_dir, "benchmark.png"),
                         os.path.join(config.output_dir, "meta_curves.png"),
                         os.path.join(config.output_dir, "benchmark_tasks.png"))
  return table
