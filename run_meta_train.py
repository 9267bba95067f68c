r"""Meta-train BERT on multi-domain data: FOMAML or Reptile (Meta-BERT's flags and defaults),
or MFT and its multi-domain baselines (Mix, MTL, Adv) on the supervised trainer.

  python run_meta_train.py --algorithm fomaml --data ../shared/data/blitzer_mds_4domain \
      --test_domains kitchen --output_dir out/meta_fomaml
  python run_meta_train.py --algorithm mft --data train_all_domains.jsonl --output_dir out/mft

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
from metabert_tf import backbones  # noqa: E402
from metabert_tf import datasets  # noqa: E402
from metabert_tf import mft  # noqa: E402
from metabert_tf import multidomain_job  # noqa: E402
from metabert_tf import run_utils  # noqa: E402
from metabert_tf import training  # noqa: E402
from metabert_tf.meta import base  # noqa: E402
from metabert_tf.meta import engine  # noqa: E402
from metabert_tf.meta import episodes  # noqa: E402
from metabert_tf.meta import job as meta_job  # noqa: E402
from metabert_tf.meta import reptile  # noqa: E402

run_utils.define_common_flags()
flags.adopt_module_key_flags(run_utils)  # --help lists the shared flags too
SUPERVISED = multidomain_job.METHODS
flags.DEFINE_enum("algorithm", "fomaml", sorted(meta_job.ALGORITHMS) + list(SUPERVISED),
                  "fomaml, reptile: meta-learning (episodes, inner loops); mft: Meta "
                  "Fine-Tuning; mix, mtl, adv: its baselines (pooled data, a head per domain, "
                  "an adversarial domain classifier).")
flags.DEFINE_enum("reptile_variant", "classic", list(reptile.VARIANTS),
                  "classic: theta += eps * mean(phi - theta); adam: theta - phi fed to Adam.")
flags.DEFINE_string("data", None, "Multi-domain labeled data (any reader format with domains); "
                    f"CSV/TSV/JSON columns as {readers.SPEC_HELP}.")
flags.DEFINE_list("test_domains", [], "Held-out domains: never meta-trained on, meta-tested.")
flags.DEFINE_string("meta_test_exclude", None, "Data a later evaluation scores (e.g. the "
                    "held-out domain's test set): the meta-test never draws its examples.")
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
flags.DEFINE_integer("epochs", None, "fomaml, reptile: passes over the num_train_task tasks "
                     "(default 3); mix, mtl, adv, mft: passes over the data (default 2).")
flags.DEFINE_integer("save_every_steps", 0, "Also checkpoint every N meta-steps (0: per epoch).")
flags.DEFINE_list("label_list", None, "Label order (ids); default: the model's, else sorted.")
flags.DEFINE_bool("progress", True, "Show progress bars.")
# mix, mtl, adv, mft (the supervised trainer):
flags.DEFINE_integer("batch_size", 32, "Training batch size (mix, mtl, adv, mft).")
flags.DEFINE_float("learning_rate", 2e-5, "Peak AdamW learning rate, 10% warm-up, linear decay "
                   "(mix, mtl, adv, mft).")
flags.DEFINE_string("eval_data", None, "Scored per domain after training (mix, mtl, adv, mft).")
flags.DEFINE_enum("mft_variant", "full", list(mft.VARIANTS), "full: typicality weighting and "
                  "domain corruption; dc: corruption only; tw: weighting only.")
flags.DEFINE_float("mft_alpha", 0.5, "Weight of the own-domain prototype in the typicality.")
flags.DEFINE_integer("mft_prototypes", 1, "Prototypes per domain and class (k-means when > 1).")
flags.DEFINE_float("mft_lambda", 0.1, "Weight of the domain-corruption loss.")
flags.DEFINE_list("corruption_layers", None, "1-based layers whose features the corruption "
                  "loss reaches; default: three evenly spaced ending at the top (2,4,6 of 6).")
flags.DEFINE_enum("mft_typicality", "paper", ["paper", "easytransfer"], "paper: mean cosine to "
                  "the other domains' prototypes; easytransfer: cosine to their mean.")
flags.DEFINE_bool("mft_shared_domain_classifier", False, "One domain classifier for every "
                  "corruption layer (EasyTransfer) instead of one per layer (paper).")
flags.DEFINE_enum("mft_layer_mean", "tokens", list(mft.LAYER_MEANS), "tokens: mean of a "
                  "layer's token vectors without [CLS] and padding; all: every position.")
flags.DEFINE_bool("mft_weight_corruption", True, "Typicality-weight the corruption loss too "
                  "(paper); EasyTransfer does not.")
flags.DEFINE_float("adversarial_weight", 0.1, "adv: weight of the reversed domain loss.")
flags.mark_flags_as_required(["data", "output_dir"])
run_utils.require_int_list("corruption_layers", minimum=1)
FLAGS = flags.FLAGS


def config_from_flags():
  algorithm = base.make_config(
      meta_job.ALGORITHMS[FLAGS.algorithm], inner_update_lr=FLAGS.inner_update_lr,
      inner_optimizer=FLAGS.inner_optimizer, outer_update_lr=FLAGS.outer_update_lr,
      variant=FLAGS.reptile_variant, reptile_epsilon=FLAGS.reptile_epsilon)
  return engine.MetaConfig(
      episodes=episodes.EpisodeConfig(FLAGS.num_support, FLAGS.num_query, FLAGS.domain_sampling,
                                      FLAGS.class_balanced),
      num_train_task=FLAGS.num_train_task, num_test_task=FLAGS.num_test_task,
      outer_batch_size=FLAGS.outer_batch_size, tasks_per_replica=FLAGS.tasks_per_replica,
      inner_batch_size=FLAGS.inner_batch_size, inner_update_step=FLAGS.inner_update_step,
      inner_update_step_eval=FLAGS.inner_update_step_eval, algorithm=algorithm,
      epochs=FLAGS.epochs or 3, seed=FLAGS.seed, progress=FLAGS.progress)


def supervised_job(data):
  return multidomain_job.MultiDomainJob(
      output_dir=FLAGS.output_dir, data=data, method=FLAGS.algorithm,
      eval_data=datasets.resolve(FLAGS.eval_data, FLAGS.data_dir), bert_model=FLAGS.bert_model,
      do_lower_case=FLAGS.do_lower_case, label_list=FLAGS.label_list,
      max_seq_length=FLAGS.max_seq_length, precision=FLAGS.precision, pooling=FLAGS.pooling,
      train=training.FinetuneConfig(epochs=FLAGS.epochs or 2, batch_size=FLAGS.batch_size,
                                    learning_rate=FLAGS.learning_rate,
                                    save_every_steps=FLAGS.save_every_steps, seed=FLAGS.seed,
                                    progress=FLAGS.progress),
      mft=mft.MFTConfig(
          variant=FLAGS.mft_variant, alpha=FLAGS.mft_alpha, num_prototypes=FLAGS.mft_prototypes,
          corruption_weight=FLAGS.mft_lambda, typicality_formula=FLAGS.mft_typicality,
          corruption_layers=[int(x) for x in FLAGS.corruption_layers or []] or None,
          shared_domain_classifier=FLAGS.mft_shared_domain_classifier,
          layer_mean=FLAGS.mft_layer_mean, weight_corruption=FLAGS.mft_weight_corruption,
          seed=FLAGS.seed),
      adversarial_weight=FLAGS.adversarial_weight)


def validate_flags():
  if FLAGS.algorithm in SUPERVISED and FLAGS.test_domains:
    raise flags.ValidationError(f"--test_domains is for meta-learning; --algorithm "
                                f"{FLAGS.algorithm} trains on every domain of --data")
  for name in ("batch_size", "mft_prototypes"):
    if FLAGS[name].value <= 0:
      raise flags.ValidationError(f"--{name} must be positive, got {FLAGS[name].value}")
  if FLAGS.epochs is not None and FLAGS.epochs <= 0:
    raise flags.ValidationError(f"--epochs must be positive, got {FLAGS.epochs}")
  for name in ("num_train_task", "num_support", "num_query", "outer_batch_size",
               "inner_batch_size", "inner_update_step", "num_domain"):
    if FLAGS[name].value <= 0:
      raise flags.ValidationError(f"--{name} must be positive, got {FLAGS[name].value}")
  for name in ("num_test_task", "inner_update_step_eval", "tasks_per_replica", "save_every_steps"):
    if FLAGS[name].value < 0:
      raise flags.ValidationError(f"--{name} must be >= 0, got {FLAGS[name].value}")
  if FLAGS.outer_batch_size > FLAGS.num_train_task:
    raise flags.ValidationError(f"--outer_batch_size ({FLAGS.outer_batch_size}) must be at most "
                                f"--num_train_task ({FLAGS.num_train_task})")


def run():
  validate_flags()
  data = datasets.resolve(FLAGS.data, FLAGS.data_dir)
  for path in (data, datasets.resolve(FLAGS.eval_data, FLAGS.data_dir)):
    if path and not datasets.exists(path):
      raise DataError(path, "file or directory not found")
  backbones.describe_backbone(FLAGS.bert_model, FLAGS.do_lower_case).check_max_seq_length(
      FLAGS.max_seq_length)  # before output_dir is made
  strategy = run_utils.get_strategy(FLAGS.distribution_strategy, FLAGS.tpu)
  if FLAGS.algorithm in SUPERVISED:
    job = supervised_job(data)
    run_utils.start_run(FLAGS.output_dir, FLAGS.overwrite_output_dir, strategy)
    results = multidomain_job.run_multidomain_job(job, strategy)
    run_utils.print_result(json.dumps({k: results[k] for k in ("checkpoint", "eval")
                                       if k in results}))
    return
  job = meta_job.MetaJob(
      output_dir=FLAGS.output_dir, data=data,
      algorithm=FLAGS.algorithm, test_domains=list(FLAGS.test_domains),
      num_domain=FLAGS.num_domain, bert_model=FLAGS.bert_model, do_lower_case=FLAGS.do_lower_case,
      label_list=FLAGS.label_list, max_seq_length=FLAGS.max_seq_length,
      precision=FLAGS.precision, pooling=FLAGS.pooling, save_every_steps=FLAGS.save_every_steps,
      meta_test_exclude=datasets.resolve(FLAGS.meta_test_exclude, FLAGS.data_dir),
      meta=config_from_flags())
  run_utils.start_run(FLAGS.output_dir, FLAGS.overwrite_output_dir, strategy)
  results = meta_job.run_meta_job(job, strategy)
  run_utils.print_result(json.dumps({k: results[k] for k in ("checkpoint", "meta_test_history")}))


def main(_):
  with run_utils.user_errors_exit():
    run()


if __name__ == "__main__":
  app.run(main)
