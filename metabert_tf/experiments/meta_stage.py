"""The LEOPARD benchmark's meta-training stage: a meta-learned method's checkpoint, meta-trained
once on the task sources (the GLUE and AG News files of ../shared/data/meta_train, plus
pre-generated SMLMT tasks for the methods that use them), every method with the same task
shape and the same number of tasks, fp32, resumable (a checkpoint every 10 meta-steps).

The run is output_dir/meta/<method>; its results.json holds its meta-training seconds and
query_loss_history.json its training curve.
"""
import json
import os

from metabert_tf import io_utils
from metabert_tf.errors import ConfigError
from metabert_tf.experiments import grid
from metabert_tf.meta import algorithms
from metabert_tf.meta import engine
from metabert_tf.meta import episodes
from metabert_tf.meta import job as meta_job

# The labeled sources, as data specs relative to the meta-training directory (GLUE and AG News
# as distributed; ../shared/NOTES.md): SST-2, CoLA, MRPC and RTE train, QNLI dev, AG News dev.
LABELED_SOURCES = (
    "glue/SST-2/train.tsv:text=sentence",
    "glue/CoLA/train.tsv:header=none,text=3,label=1",
    "glue/MRPC/train.tsv:label=Quality,text=#1 String,text_b=#2 String",
    "glue/RTE/train.tsv",
    "glue/QNLI/dev.tsv:text=question,text_b=sentence",
    "agnews/dev.tsv:header=none,text=0,label=1",
)
SAVE_EVERY_STEPS = 10


def uses_smlmt(algorithm):
  return getattr(algorithms.make_config(algorithm), "pretrain_task_weight", 0.0) > 0.0


def sources(config, algorithm):
  """The --data specs `algorithm` meta-trains on under the protocol's `config`."""
  labeled = [os.path.join(config.meta_train_dir, s) for s in LABELED_SOURCES]
  if not uses_smlmt(algorithm):
    return labeled
  if not config.smlmt_data:
    raise ConfigError(f"{algorithm} meta-trains on SMLMT tasks: generate them with "
                      "`python -m data_prep.smlmt` (docs/results.md) and name the files",
                      field="smlmt_data")
  smlmt = list(config.smlmt_data)
  return smlmt if algorithms.make_config(algorithm).pretrain_task_weight >= 1.0 else labeled + smlmt


def run_dir(config, method):
  return os.path.join(config.output_dir, "meta", method.stage_name)


def job(config, method):
  algorithm = method.meta_algorithm
  entry = algorithms.get(algorithm)
  defaults = entry.engine_defaults
  meta = engine.MetaConfig(
      episodes=episodes.EpisodeConfig(defaults["num_support"], defaults["num_query"]),
      num_train_task=num_tasks(config, method), num_test_task=0,
      outer_batch_size=defaults["outer_batch_size"], inner_batch_size=defaults["inner_batch_size"],
      inner_update_step=defaults["inner_update_step"],
      inner_update_step_eval=defaults["inner_update_step_eval"], epochs=1, seed=config.meta_seed,
      progress=True, algorithm=algorithms.make_config(
          algorithm, learning_rate=config.meta_learning_rate,
          max_examples_per_source=config.max_examples_per_source))
  return meta_job.MetaJob(output_dir=run_dir(config, method), data=sources(config, algorithm),
                          algorithm=algorithm, bert_model=config.bert_model,
                          max_seq_length=config.meta_max_seq_length, precision="fp32",
                          save_every_steps=SAVE_EVERY_STEPS, meta=meta)


# The source lists this process has read and found good: most methods meta-train on the same
# six files, which take a minute to read and encode.
_CHECKED = set()


def check(config, method):
  """Reads the sources and compares the settings with a run already there (a bad source or
  a changed setting fails before any run)."""
  out = run_dir(config, method)
  _check_settings(config, method, record=False)
  if os.path.exists(os.path.join(out, "results.json")):  # a finished stage is not re-read
    return
  key = (tuple(sources(config, method.meta_algorithm)), config.bert_model,
         config.meta_max_seq_length, config.max_examples_per_source,
         algorithms.get(method.meta_algorithm).by_sources)
  if key not in _CHECKED:
    meta_job.read_inputs(job(config, method))
    _CHECKED.add(key)


# The protocol's settings a meta-training depends on: free in the grid's fingerprint (baselines
# run before them do not depend on them), checked per method against its run's stage.json.
FIELDS = ("meta_train_dir", "smlmt_data", "meta_tasks", "meta_tasks_by_method", "meta_seed",
          "meta_learning_rate", "meta_max_seq_length", "max_examples_per_source")


def num_tasks(config, method):
  """The method's meta-training tasks: its entry of meta_tasks_by_method, else meta_tasks."""
  by_method = parse_tasks_by_method(config.meta_tasks_by_method)
  return by_method.get(method.stage_name, config.meta_tasks)


def parse_tasks_by_method(entries):
  """{method: tasks} of ["method:tasks", ...]."""
  out = {}
  for entry in entries:
    name, _, count = entry.partition(":")
    if not count.isdigit() or int(count) < 1 or name in out:
      raise ConfigError(f"entries must be method:tasks (tasks >= 1, each method once), got "
                        f"{entry!r}", field="meta_tasks_by_method")
    out[name] = int(count)
  return out


def stage_settings(config, method):
  """What `method`'s meta-training depends on: the stage's settings, its own task count."""
  settings = {name: getattr(config, name) for name in FIELDS + ("bert_model",)
              if name != "meta_tasks_by_method"}
  settings["meta_tasks"] = num_tasks(config, method)
  return settings


def _check_settings(config, method, record=True):
  """Refuses other settings than those of the method's run already there (its stage.json);
  with `record`, writes them there."""
  out = run_dir(config, method)
  settings = stage_settings(config, method)
  path = os.path.join(out, "stage.json")
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      old = json.load(f)
    changed = sorted(n for n in settings if old.get(n) != settings[n])
    if changed:
      raise ConfigError(f"{out} was meta-trained with other settings ({', '.join(changed)}: "
                        f"{[old.get(n) for n in changed]}): use the same, or another "
                        "--output_dir", field=changed[0])
  if record:
    os.makedirs(out, exist_ok=True)
    io_utils.atomic_write_json(path, settings)


def curve(config, method):
  """[{tasks, query_loss, uniform_loss}] of the method's meta-training, one per meta-step: the
  tasks seen so far, the mean query loss of the step's tasks and a uniform guess's (mean ln N)."""
  path = os.path.join(run_dir(config, method), "query_loss_history.json")
  if not os.path.exists(path):
    return []
  with open(path, encoding="utf-8") as f:
    history = json.load(f)
  per_step = algorithms.get(method.meta_algorithm).engine_defaults["outer_batch_size"]
  return [{"tasks": min(h["step"] * per_step, num_tasks(config, method)),
           "query_loss": h["query_loss"],
           "uniform_loss": h.get("uniform_loss")} for h in history]


def run(config, method):
  """Meta-trains `method` (or reuses/resumes its run); returns its results."""
  out = run_dir(config, method)
  _check_settings(config, method)
  grid.reuse_or_run(out, lambda: meta_job.run_meta_job(job(config, method)))
  return grid.read_results(out)
