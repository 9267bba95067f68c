"""The LEOPARD benchmark's meta-training stage: a meta-learned method's checkpoint, meta-trained
once on the task sources (the GLUE and AG News files of ../shared/data/meta_train, plus
pre-generated SMLMT tasks for the methods that use them), every method with the same task
shape and the same number of tasks, fp32, resumable (a checkpoint every 10 meta-steps).

The run is output_dir/meta/<method>; its results.json holds its meta-training seconds and
query_loss_history.json its training curve.
"""
import os

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
  return os.path.join(config.output_dir, "meta", method.name)


def job(config, method):
  algorithm = method.meta_algorithm
  entry = algorithms.get(algorithm)
  defaults = entry.engine_defaults
  meta = engine.MetaConfig(
      episodes=episodes.EpisodeConfig(defaults["num_support"], defaults["num_query"]),
      num_train_task=config.meta_tasks, num_test_task=0,
      outer_batch_size=defaults["outer_batch_size"], inner_batch_size=defaults["inner_batch_size"],
      inner_update_step=defaults["inner_update_step"],
      inner_update_step_eval=defaults["inner_update_step_eval"], epochs=1, seed=config.meta_seed,
      progress=False, algorithm=algorithms.make_config(
          algorithm, learning_rate=config.meta_learning_rate,
          max_examples_per_source=config.max_examples_per_source))
  return meta_job.MetaJob(output_dir=run_dir(config, method), data=sources(config, algorithm),
                          algorithm=algorithm, bert_model=config.bert_model,
                          max_seq_length=config.meta_max_seq_length, precision="fp32",
                          save_every_steps=SAVE_EVERY_STEPS, meta=meta)


def check(config, method):
  """Reads the sources (a bad one fails before any run)."""
  meta_job.read_inputs(job(config, method))


def run(config, method):
  """Meta-trains `method` (or reuses/resumes its run); returns its results."""
  out = run_dir(config, method)
  grid.reuse_or_run(out, lambda: meta_job.run_meta_job(job(config, method)))
  return grid.read_results(out)
