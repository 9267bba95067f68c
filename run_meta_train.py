r"""Meta-train BERT with FOMAML or Reptile on multi-domain data (Meta-BERT's flags and defaults).

  python run_meta_train.py --algorithm fomaml --data ../shared/data/blitzer_mds_4domain \
      --test_domains kitchen --output_dir out/meta_fomaml

A task is one domain: --num_support + --num_query of its examples. Writes output_dir/
{hyparams.txt, log.txt, ckpt/meta.epoch-E.step-S.*, tensorboard/, results.json}; the held-out
domains' meta-test accuracy is logged after every epoch. Re-running the same command resumes
from the newest checkpoint with the same task stream. Then:
  python run_finetune.py --bert_model out/meta_fomaml/ckpt/meta.epoch-3.step-30 ...
"""
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from data_prep import readers  # noqa: E402
from data_prep.examples import DataError  # noqa: E402
from metabert_tf import datasets  # noqa: E402
from metabert_tf import run_utils  # noqa: E402
from metabert_tf.meta import engine  # noqa: E402
from metabert_tf.meta import episodes  # noqa: E402
from metabert_tf.meta import job as meta_job  # noqa: E402
from metabert_tf.meta import reptile  # noqa: E402

run_utils.define_common_flags()
flags.DEFINE_enum("algorithm", "fomaml", sorted(meta_job.ALGORITHMS), "Meta-learning algorithm.")
flags.DEFINE_enum("reptile_variant", "classic", list(reptile.VARIANTS),
                  "classic: theta += eps * mean(phi - theta); adam: theta - phi fed to Adam.")
flags.DEFINE_string("data", None, "Multi-domain labeled data (any reader format with domains); "
                    f"CSV/TSV/JSON columns as {readers.SPEC_HELP}.")
flags.DEFINE_list("test_domains", [], "Held-out domains: never meta-trained on, meta-tested.")
flags.DEFINE_integer("num_train_task", 50, "Meta-training tasks (drawn once, reused each epoch).")
flags.DEFINE_integer("num_test_task", 3, "Meta-test tasks from the test domains.")
flags.DEFINE_integer("num_domain", 100, "Use the num_domain smallest training domains.")
flags.DEFINE_integer("num_support", 80, "Support examples per task.")
flags.DEFINE_integer("num_query", 20, "Query examples per task.")
flags.DEFINE_enum("domain_sampling", "proportional", ["proportional", "uniform"],
                  "Task domain drawn proportionally to its size, or uniformly.")
flags.DEFINE_bool("class_balanced", False, "Balance the labels within support and query.")
flags.DEFINE_integer("outer_batch_size", 5, "Tasks per meta-step (over all replicas).")
flags.DEFINE_integer("tasks_per_replica", 0, "Tasks each replica adapts per meta-step; must "
                     "equal outer_batch_size / replicas (0: computed from it).")
flags.DEFINE_integer("inner_batch_size", 16, "Support batch size in the inner loop.")
flags.DEFINE_integer("inner_update_step", 10, "Inner passes over the support set (training).")
flags.DEFINE_integer("inner_update_step_eval", 10, "Inner passes over the support set (meta-test).")
flags.DEFINE_float("inner_update_lr", 5e-5, "Inner learning rate.")
flags.DEFINE_enum("inner_optimizer", "adam", ["adam", "sgd"], "Inner optimiser (Meta-BERT: Adam).")
flags.DEFINE_float("outer_update_lr", 5e-5, "Outer Adam learning rate (FOMAML, Reptile adam).")
flags.DEFINE_float("reptile_epsilon", 0.5, "Reptile classic step: theta += eps * mean(phi - theta).")
flags.DEFINE_integer("epochs", 3, "Passes over the num_train_task tasks.")
flags.DEFINE_integer("save_every_steps", 0, "Also checkpoint every N meta-steps (0: per epoch).")
flags.DEFINE_list("label_list", None, "Label order (ids); default: the model's, else sorted.")
flags.DEFINE_bool("progress", True, "Show progress bars.")
flags.mark_flags_as_required(["data", "output_dir"])
FLAGS = flags.FLAGS


def config_from_flags():
  return engine.MetaConfig(
      episodes=episodes.EpisodeConfig(FLAGS.num_support, FLAGS.num_query, FLAGS.domain_sampling,
                                      FLAGS.class_balanced),
      num_train_task=FLAGS.num_train_task, num_test_task=FLAGS.num_test_task,
      outer_batch_size=FLAGS.outer_batch_size, tasks_per_replica=FLAGS.tasks_per_replica,
      inner_batch_size=FLAGS.inner_batch_size, inner_update_step=FLAGS.inner_update_step,
      inner_update_step_eval=FLAGS.inner_update_step_eval, inner_update_lr=FLAGS.inner_update_lr,
      inner_optimizer=FLAGS.inner_optimizer, outer_update_lr=FLAGS.outer_update_lr,
      variant=FLAGS.reptile_variant, reptile_epsilon=FLAGS.reptile_epsilon,
      epochs=FLAGS.epochs, seed=FLAGS.seed,
      progress=FLAGS.progress)


def run():
  for name in ("num_train_task", "num_support", "num_query", "outer_batch_size", "epochs",
               "inner_batch_size", "inner_update_step", "num_domain"):
    if FLAGS[name].value <= 0:
      raise flags.ValidationError(f"--{name} must be positive, got {FLAGS[name].value}")
  for name in ("num_test_task", "inner_update_step_eval", "tasks_per_replica", "save_every_steps"):
    if FLAGS[name].value < 0:
      raise flags.ValidationError(f"--{name} must be >= 0, got {FLAGS[name].value}")
  if FLAGS.outer_batch_size > FLAGS.num_train_task:
    raise flags.ValidationError(f"--outer_batch_size ({FLAGS.outer_batch_size}) must be at most "
                                f"--num_train_task ({FLAGS.num_train_task})")
  job = meta_job.MetaJob(
      output_dir=FLAGS.output_dir, data=datasets.resolve(FLAGS.data, FLAGS.data_dir),
      algorithm=FLAGS.algorithm, test_domains=list(FLAGS.test_domains),
      num_domain=FLAGS.num_domain, bert_model=FLAGS.bert_model, do_lower_case=FLAGS.do_lower_case,
      label_list=FLAGS.label_list, max_seq_length=FLAGS.max_seq_length,
      precision=FLAGS.precision, pooling=FLAGS.pooling, save_every_steps=FLAGS.save_every_steps,
      meta=config_from_flags())
  if not datasets.exists(job.data):
    raise DataError(job.data, "file or directory not found")
  strategy = run_utils.get_strategy(FLAGS.distribution_strategy, FLAGS.tpu)
  run_utils.start_run(FLAGS.output_dir, FLAGS.overwrite_output_dir, strategy)
  results = meta_job.run_meta_job(job, strategy)
  print(json.dumps({k: results[k] for k in ("checkpoint", "meta_test_history")}))


def main(_):
  with run_utils.user_errors_exit():
    run()


if __name__ == "__main__":
  app.run(main)
