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
from absl import logging  # noqa: E402
import tensorflow as tf  # noqa: E402

from data_prep import readers  # noqa: E402
from data_prep.examples import DataError  # noqa: E402
from metabert_tf import backbones  # noqa: E402
from metabert_tf import checkpoints  # noqa: E402
from metabert_tf import datasets  # noqa: E402
from metabert_tf import io_utils  # noqa: E402
from metabert_tf import records  # noqa: E402
from metabert_tf import run_utils  # noqa: E402
from metabert_tf.meta import engine  # noqa: E402
from metabert_tf.meta import episodes  # noqa: E402
from metabert_tf.meta import fomaml  # noqa: E402
from metabert_tf.meta import reptile  # noqa: E402

ALGORITHMS = {m.NAME: m for m in (fomaml, reptile)}

run_utils.define_common_flags()
flags.DEFINE_enum("algorithm", "fomaml", sorted(ALGORITHMS), "Meta-learning algorithm.")
flags.DEFINE_enum("reptile_variant", "classic", list(reptile.VARIANTS),
                  "classic: theta += eps * mean(phi - theta); adam: theta - phi fed to Adam.")
flags.DEFINE_string("data", None, "Multi-domain labeled data (any reader format with domains).")
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
flags.DEFINE_integer("tasks_per_replica", 0, "Tasks each replica adapts per meta-step "
                     "(0: outer_batch_size / replicas).")
flags.DEFINE_integer("inner_batch_size", 16, "Support batch size in the inner loop.")
flags.DEFINE_integer("inner_update_step", 10, "Inner passes over the support set (training).")
flags.DEFINE_integer("inner_update_step_eval", 10, "Inner passes over the support set (meta-test).")
flags.DEFINE_float("inner_update_lr", 5e-5, "Inner learning rate.")
flags.DEFINE_enum("inner_optimizer", "adam", ["adam", "sgd"], "Inner optimiser (Meta-BERT: Adam).")
flags.DEFINE_float("outer_update_lr", 5e-5, "Outer learning rate (Reptile classic: epsilon).")
flags.DEFINE_integer("epochs", 3, "Passes over the num_train_task tasks.")
flags.DEFINE_integer("save_every_steps", 0, "Also checkpoint every N meta-steps (0: per epoch).")
flags.DEFINE_list("label_list", None, "Label order (ids); default: the model's, else sorted.")
flags.DEFINE_bool("progress", True, "Show progress bars.")
flags.mark_flags_as_required(["data", "output_dir"])
FLAGS = flags.FLAGS


def choose_domains(examples, test_domains, num_domain):
  """(domain_list, train_domains): the num_domain smallest non-test domains are meta-trained."""
  sizes = {}
  for i, e in enumerate(examples):
    if not e.domain:
      raise DataError(FLAGS.data, "example has no domain; meta-training needs domains", i)
    sizes[e.domain] = sizes.get(e.domain, 0) + 1
  unknown = sorted(set(test_domains) - set(sizes))
  if unknown:
    raise DataError("--test_domains", f"domains {unknown} are not in {FLAGS.data} "
                    f"(have {sorted(sizes)})")
  rest = sorted((d for d in sizes if d not in test_domains), key=lambda d: (sizes[d], d))
  if not rest:
    raise DataError("--test_domains", "no domain is left for meta-training")
  return sorted(sizes), sorted(rest[:num_domain])


def config_from_flags():
  return engine.MetaConfig(
      episodes=episodes.EpisodeConfig(FLAGS.num_support, FLAGS.num_query, FLAGS.domain_sampling,
                                      FLAGS.class_balanced),
      num_train_task=FLAGS.num_train_task, num_test_task=FLAGS.num_test_task,
      outer_batch_size=FLAGS.outer_batch_size, tasks_per_replica=FLAGS.tasks_per_replica,
      inner_batch_size=FLAGS.inner_batch_size, inner_update_step=FLAGS.inner_update_step,
      inner_update_step_eval=FLAGS.inner_update_step_eval, inner_update_lr=FLAGS.inner_update_lr,
      inner_optimizer=FLAGS.inner_optimizer, outer_update_lr=FLAGS.outer_update_lr,
      variant=FLAGS.reptile_variant, epochs=FLAGS.epochs, seed=FLAGS.seed,
      progress=FLAGS.progress)


def run():
  for name in ("num_train_task", "num_support", "num_query", "outer_batch_size", "epochs",
               "inner_batch_size", "inner_update_step", "num_domain"):
    if FLAGS[name].value <= 0:
      raise flags.ValidationError(f"--{name} must be positive, got {FLAGS[name].value}")
  data = datasets.resolve(FLAGS.data, FLAGS.data_dir)
  if not os.path.exists(data):
    raise DataError(data, "file or directory not found")
  run_utils.prepare_output_dir(FLAGS.output_dir, FLAGS.overwrite_output_dir)
  run_utils.write_hyparams(FLAGS.output_dir)
  run_utils.log_to_file(FLAGS.output_dir)
  run_utils.set_seed(FLAGS.seed)
  run_utils.set_precision(FLAGS.precision)
  strategy = run_utils.get_strategy(FLAGS.distribution_strategy, FLAGS.tpu)

  examples = readers.read_examples(data)
  domain_list, train_domains = choose_domains(examples, FLAGS.test_domains, FLAGS.num_domain)
  logging.info("Meta-training domains %s; test domains %s", train_domains, FLAGS.test_domains)
  with strategy.scope():
    backbone = backbones.load_backbone(FLAGS.bert_model, FLAGS.do_lower_case)
  label_list = datasets.choose_label_list([examples], FLAGS.label_list or backbone.label_list,
                                          source=None)
  pooling = FLAGS.pooling or backbone.pooling
  features = records.encode(examples, backbone.input_encoder(FLAGS.max_seq_length), label_list,
                            domain_list, source=data)
  metadata = checkpoints.metadata_variable(
      backbone.config, backbone.vocab, backbone.lower_case, label_list, FLAGS.max_seq_length,
      pooling=pooling, stage="meta_train", algorithm=FLAGS.algorithm,
      train_domains=train_domains, test_domains=list(FLAGS.test_domains))
  trainer = engine.MetaTrainer(strategy, ALGORITHMS[FLAGS.algorithm], backbone, label_list,
                               pooling, features, domain_list, train_domains,
                               list(FLAGS.test_domains), config_from_flags(), FLAGS.output_dir,
                               metadata)
  history = trainer.train(FLAGS.save_every_steps)
  results = {"algorithm": FLAGS.algorithm, "label_list": label_list, "pooling": pooling,
             "train_domains": train_domains, "test_domains": list(FLAGS.test_domains),
             "meta_test_history": history,
             "checkpoint": tf.train.latest_checkpoint(os.path.join(FLAGS.output_dir, "ckpt"))}
  io_utils.atomic_write_json(os.path.join(FLAGS.output_dir, "results.json"), results)
  print(json.dumps({"checkpoint": results["checkpoint"], "meta_test_history": history}))


def main(_):
  with run_utils.user_errors_exit():
    run()


if __name__ == "__main__":
  app.run(main)
