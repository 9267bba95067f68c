r"""Meta-train BERT: FOMAML or Reptile on multi-domain data (Meta-BERT's flags and defaults);
LEOPARD, SMLMT or Hybrid-SMLMT on task sources (the original's flag names and defaults); or MFT
and its multi-domain baselines (Mix, MTL, Adv) on the supervised trainer.

  python run_meta_train.py --algorithm fomaml --data ../shared/data/blitzer_mds_4domain \
      --test_domains kitchen --output_dir out/meta_fomaml
  python run_meta_train.py --algorithm hybrid_smlmt --data 'glue/SST-2/train.tsv:text=sentence' \
      --data smlmt/meta_pretrain_2.tf_record --data smlmt/meta_pretrain_3.tf_record \
      --num_train_task 4000 --output_dir out/hsmlmt
  python run_meta_train.py --algorithm mft --data train_all_domains.jsonl --output_dir out/mft

fomaml, reptile: a task is one domain, --num_support + --num_query of its examples. leopard,
smlmt, hybrid_smlmt: every --data (repeat the flag) is a task source of its own classes (each
domain of a file with domains, one source; an SMLMT file's blocks are ready-made tasks), drawn
with probability ~ sqrt(size), SMLMT files sharing --pretrain_task_weight. Writes output_dir/
{hyparams.txt, log.txt, ckpt/meta.epoch-E.step-S.*, tensorboard/, results.json}; the held-out
domains' meta-test accuracy is logged after every epoch. Re-running the same command resumes
from the newest checkpoint with the same task stream. Then:
  python run_finetune.py --bert_model out/meta_fomaml/ckpt/meta.epoch-3.step-30 ...
"""
import json

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from metabert_tf import backbones  # noqa: E402
from metabert_tf import cli  # noqa: E402
from metabert_tf import datasets  # noqa: E402
from metabert_tf import flag_rules  # noqa: E402
from metabert_tf import mft  # noqa: E402
from metabert_tf import mft_flags  # noqa: E402
from metabert_tf import multidomain_job  # noqa: E402
from metabert_tf import runtime  # noqa: E402
from metabert_tf import training  # noqa: E402
from metabert_tf.data import readers  # noqa: E402
from metabert_tf.errors import DataError  # noqa: E402
from metabert_tf.meta import base  # noqa: E402
from metabert_tf.meta import engine  # noqa: E402
from metabert_tf.meta import episodes  # noqa: E402
from metabert_tf.meta import job as meta_job  # noqa: E402
from metabert_tf.meta import reptile  # noqa: E402

cli.define_common_flags()
flags.adopt_module_key_flags(cli)  # --help lists the shared flags too
SUPERVISED = multidomain_job.METHODS
flags.DEFINE_enum("algorithm", "fomaml", sorted(meta_job.ALGORITHMS) + list(SUPERVISED),
                  "fomaml, reptile: meta-learning (episodes, inner loops); mft: Meta "
                  "Fine-Tuning; mix, mtl, adv: its baselines (pooled data, a head per domain, "
                  "an adversarial domain classifier).")
flags.DEFINE_enum("reptile_variant", "classic", list(reptile.VARIANTS),
                  "classic: theta += eps * mean(phi - theta); adam: theta - phi fed to Adam.")
flags.DEFINE_multi_string("data", None, "Multi-domain labeled data (any reader format with "
                          "domains); leopard, smlmt, hybrid_smlmt: each task source (repeat "
                          "the flag; tf_records and SMLMT files too). "
                    f"CSV/TSV/JSON columns as {readers.SPEC_HELP}.")
flags.DEFINE_list("test_domains", [], "Held-out domains: never meta-trained on, meta-tested.")
flags.DEFINE_string("meta_test_exclude", None, "Data a later evaluation scores (e.g. the "
                    "held-out domain's test set): the meta-test never draws its examples.")
flags.DEFINE_integer("num_train_task", 50, "Meta-training tasks (drawn once, reused each epoch).")
flags.DEFINE_integer("num_test_task", 3, "Meta-test tasks from the test domains.")
flags.DEFINE_integer("num_domain", 100, "Use the num_domain smallest training domains.")
flags.DEFINE_integer("num_support", 80, "Support examples per task.")
flags.DEFINE_integer("num_query", None, "Query examples per task (default: 20; leopard, smlmt, "
                     "hybrid_smlmt: 10).")
flags.DEFINE_enum("domain_sampling", "proportional", ["proportional", "uniform"],
                  "Task domain drawn proportionally to its size, or uniformly.")
flags.DEFINE_bool("class_balanced", False, "Balance the labels within support and query.")
flags.DEFINE_integer("outer_batch_size", None, "Tasks per meta-step (over all replicas; default "
                     "5; leopard, smlmt, hybrid_smlmt: 4, the release's 4 GPUs x 1 task).")
flags.DEFINE_integer("tasks_per_replica", 0, "Tasks each replica adapts per meta-step; must "
                     "equal outer_batch_size / replicas (0: computed from it).")
flags.DEFINE_integer("inner_batch_size", 16, "Support batch size in the inner loop.")
flags.DEFINE_integer("inner_update_step", None, "Inner passes over the support set (training; "
                     "default 10; leopard, smlmt, hybrid_smlmt: 1, the original's inner_epochs).")
flags.DEFINE_integer("inner_update_step_eval", None, "Inner passes over the support set "
                     "(meta-test; default 10; leopard family: 5).")
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
flags.DEFINE_float("learning_rate", None, "Peak AdamW learning rate (default 2e-5; leopard, "
                   "smlmt, hybrid_smlmt: the outer rate, 1e-5), 10% warm-up, linear decay "
                   "(mix, mtl, adv, mft).")
flags.DEFINE_string("eval_data", None, "Scored per domain after training (mix, mtl, adv, mft).")
flags.DEFINE_enum("mft_variant", "full", list(mft.VARIANTS), "full: typicality weighting and "
                  "domain corruption; dc: corruption only; tw: weighting only.")
mft_flags.define()  # --mft_alpha, --mft_lambda, --corruption_layers, --mft_typicality, ...
flags.DEFINE_float("adversarial_weight", 0.1, "adv: weight of the reversed domain loss.")
# leopard, smlmt, hybrid_smlmt (the original run_classifier_pretrain.py's names):
flags.DEFINE_float("train_lr", 1e-5, "Initial inner learning rates (learned with --is_meta_sgd).")
flags.DEFINE_integer("meta_batchsz", 80, "Support examples per task.")
flags.DEFINE_integer("num_batches", 8, "Support batches per task: the first generates the class "
                     "rows, each other one is an inner SGD step.")
flags.DEFINE_integer("SGD_K", 1, "Learned rates per group (only 1 is supported).")
flags.DEFINE_bool("warp_layers", None, "Do not adapt the feed-forward blocks and the task MLP in "
                  "the inner loop (default: off for leopard, on for smlmt, hybrid_smlmt).")
flags.DEFINE_bool("is_meta_sgd", True, "Learn the per-group inner learning rates.")
flags.DEFINE_integer("min_layer_with_grad", 0, "Encoder layers below this are not adapted.")
flags.DEFINE_bool("train_word_embeddings", True, "Adapt the embeddings in the inner loop.")
flags.DEFINE_bool("clip_lr", True, "Keep the learned rates in [1e-8, 1].")
flags.DEFINE_bool("average_query_loss", None, "Query loss averaged over inner steps (default: "
                  "with --warp_layers).")
flags.DEFINE_integer("average_query_every", 3, "With averaging: the query loss every N steps.")
flags.DEFINE_bool("weight_query_loss", True, "Weight step s's query loss 2^(s - T - 1).")
flags.DEFINE_float("pretrain_task_weight", None, "Share of SMLMT tasks (default: leopard 0, "
                   "smlmt 1, hybrid_smlmt 0.5).")
flags.DEFINE_bool("data_sqrt_sampling", True, "Sample sources ~ sqrt(size), else uniformly.")
flags.DEFINE_integer("max_examples_per_source", 0, "Read at most this many examples of each "
                     "labeled source (a seeded sample; 0: all); its sampling weight stays "
                     "sqrt(full size).")
flags.DEFINE_integer("label_emb_size", 256, "Task-feature size of the generated softmax.")
flags.mark_flags_as_required(["data", "output_dir"])
flag_rules.register()  # every numeric and list flag's bounds
FLAGS = flags.FLAGS

META_BERT = {"fomaml", "reptile"}
SOURCES = set(meta_job.TASK_SOURCE_ALGORITHMS)
MFT_FLAGS = ["mft_variant", "mft_alpha", "mft_prototypes", "mft_lambda", "corruption_layers",
             "mft_typicality", "mft_shared_domain_classifier", "mft_layer_mean",
             "mft_weight_corruption"]
LEOPARD_FLAGS = ["train_lr", "meta_batchsz", "num_batches", "SGD_K", "warp_layers", "is_meta_sgd",
                 "min_layer_with_grad", "train_word_embeddings", "clip_lr", "average_query_loss",
                 "average_query_every", "weight_query_loss", "pretrain_task_weight",
                 "data_sqrt_sampling", "max_examples_per_source", "label_emb_size"]
# The algorithms that read each algorithm-specific flag (the others are read by all).
READ_ONLY_BY = {
    **dict.fromkeys(["reptile_variant", "reptile_epsilon"], {"reptile"}),
    **dict.fromkeys(["test_domains", "meta_test_exclude", "num_domain", "num_support",
                     "domain_sampling", "inner_batch_size", "inner_update_lr", "inner_optimizer",
                     "outer_update_lr"], META_BERT),
    **dict.fromkeys(["num_train_task", "num_test_task", "num_query", "outer_batch_size",
                     "tasks_per_replica", "inner_update_step", "inner_update_step_eval",
                     "class_balanced"], META_BERT | SOURCES),
    **dict.fromkeys(LEOPARD_FLAGS, SOURCES),
    **dict.fromkeys(["batch_size", "eval_data"], set(SUPERVISED)),
    **dict.fromkeys(MFT_FLAGS, {"mft"}),
    "adversarial_weight": {"adv"},
    "epochs": META_BERT | set(SUPERVISED),
    "learning_rate": SOURCES | set(SUPERVISED),
}


def config_from_flags():
  by_sources = FLAGS.algorithm in meta_job.TASK_SOURCE_ALGORITHMS
  warp = FLAGS.warp_layers
  if warp is None and by_sources:
    warp = meta_job.TASK_SOURCE_ALGORITHMS[FLAGS.algorithm][0]
  algorithm = base.make_config(
      meta_job.ALGORITHMS[FLAGS.algorithm], inner_update_lr=FLAGS.inner_update_lr,
      inner_optimizer=FLAGS.inner_optimizer, outer_update_lr=FLAGS.outer_update_lr,
      variant=FLAGS.reptile_variant, reptile_epsilon=FLAGS.reptile_epsilon,
      train_lr=FLAGS.train_lr, learning_rate=FLAGS.learning_rate or 1e-5, SGD_K=FLAGS.SGD_K,
      warp_layers=warp, is_meta_sgd=FLAGS.is_meta_sgd,
      min_layer_with_grad=FLAGS.min_layer_with_grad,
      train_word_embeddings=FLAGS.train_word_embeddings, clip_lr=FLAGS.clip_lr,
      average_query_loss=FLAGS.average_query_loss,
      average_query_every=FLAGS.average_query_every, weight_query_loss=FLAGS.weight_query_loss,
      label_emb_size=FLAGS.label_emb_size)
  # The LEOPARD family: meta_batchsz support examples in num_batches batches, 1 pass, 1 epoch
  # of num_train_task tasks (a stream), meta-tests adapted for 5 passes (the original's).
  defaults = (dict(num_support=FLAGS.meta_batchsz, num_query=10, passes=1, eval_passes=5,
                   inner_batch_size=FLAGS.meta_batchsz // FLAGS.num_batches, epochs=1,
                   outer_batch_size=4)
              if by_sources else
              dict(num_support=FLAGS.num_support, num_query=20, passes=10, eval_passes=10,
                   inner_batch_size=FLAGS.inner_batch_size, epochs=3, outer_batch_size=5))
  pick = lambda value, name: defaults[name] if value is None else value  # noqa: E731
  return engine.MetaConfig(
      episodes=episodes.EpisodeConfig(defaults["num_support"], pick(FLAGS.num_query, "num_query"),
                                      FLAGS.domain_sampling, FLAGS.class_balanced),
      num_train_task=FLAGS.num_train_task, num_test_task=FLAGS.num_test_task,
      outer_batch_size=pick(FLAGS.outer_batch_size, "outer_batch_size"),
      tasks_per_replica=FLAGS.tasks_per_replica,
      inner_batch_size=defaults["inner_batch_size"],
      inner_update_step=pick(FLAGS.inner_update_step, "passes"),
      inner_update_step_eval=pick(FLAGS.inner_update_step_eval, "eval_passes"),
      algorithm=algorithm, epochs=pick(FLAGS.epochs, "epochs"), seed=FLAGS.seed,
      progress=FLAGS.progress)


def supervised_job(data):
  return multidomain_job.MultiDomainJob(
      output_dir=FLAGS.output_dir, data=data, method=FLAGS.algorithm,
      eval_data=datasets.resolve(FLAGS.eval_data, FLAGS.data_dir), bert_model=FLAGS.bert_model,
      do_lower_case=FLAGS.do_lower_case, label_list=FLAGS.label_list,
      max_seq_length=FLAGS.max_seq_length, precision=FLAGS.precision, pooling=FLAGS.pooling,
      train=training.FinetuneConfig(epochs=FLAGS.epochs or 2, batch_size=FLAGS.batch_size,
                                    learning_rate=FLAGS.learning_rate or 2e-5,
                                    save_every_steps=FLAGS.save_every_steps, seed=FLAGS.seed,
                                    progress=FLAGS.progress),
      mft=mft_flags.config(FLAGS.mft_variant, FLAGS.seed),
      adversarial_weight=FLAGS.adversarial_weight)


def validate_flags():
  cli.refuse_unread_flags(READ_ONLY_BY, FLAGS.algorithm, "algorithm")
  if FLAGS.algorithm in meta_job.TASK_SOURCE_ALGORITHMS:
    if FLAGS.num_batches < 2 or FLAGS.meta_batchsz % FLAGS.num_batches:
      raise flags.ValidationError(f"--meta_batchsz ({FLAGS.meta_batchsz}) must be a multiple of "
                                  f"--num_batches ({FLAGS.num_batches}), which must be >= 2")
  elif len(FLAGS.data) != 1:
    raise flags.ValidationError(f"--algorithm {FLAGS.algorithm} takes one --data, got "
                                f"{len(FLAGS.data)}")
  outer = FLAGS.outer_batch_size or (4 if FLAGS.algorithm in meta_job.TASK_SOURCE_ALGORITHMS
                                     else 5)
  if outer > FLAGS.num_train_task:
    raise flags.ValidationError(f"--outer_batch_size ({outer}) must be at most "
                                f"--num_train_task ({FLAGS.num_train_task})")


def run():
  validate_flags()
  sources = [datasets.resolve(d, FLAGS.data_dir) for d in FLAGS.data]
  data = sources if FLAGS.algorithm in meta_job.TASK_SOURCE_ALGORITHMS else sources[0]
  for path in sources + [datasets.resolve(FLAGS.eval_data, FLAGS.data_dir)]:
    if path and not datasets.exists(path):
      raise DataError(path, "file or directory not found")
  # First: a multi-worker strategy must exist before TensorFlow runs any op.
  strategy = runtime.get_strategy(FLAGS.distribution_strategy, FLAGS.tpu)
  # Before output_dir is made: a model that cannot be read leaves nothing behind.
  backbones.check_readable(FLAGS.bert_model, FLAGS.do_lower_case, FLAGS.max_seq_length)
  if FLAGS.algorithm in SUPERVISED:
    job = supervised_job(data)
    cli.start_run(FLAGS.output_dir, FLAGS.overwrite_output_dir, strategy)
    results = multidomain_job.run_multidomain_job(job, strategy)
    cli.print_result(json.dumps({k: results[k] for k in ("checkpoint", "eval")
                                       if k in results}))
    return
  job = meta_job.MetaJob(
      output_dir=FLAGS.output_dir, data=data,
      algorithm=FLAGS.algorithm, test_domains=list(FLAGS.test_domains),
      num_domain=FLAGS.num_domain, bert_model=FLAGS.bert_model, do_lower_case=FLAGS.do_lower_case,
      label_list=FLAGS.label_list, max_seq_length=FLAGS.max_seq_length,
      precision=FLAGS.precision, pooling=FLAGS.pooling, save_every_steps=FLAGS.save_every_steps,
      meta_test_exclude=datasets.resolve(FLAGS.meta_test_exclude, FLAGS.data_dir),
      meta=config_from_flags(), pretrain_task_weight=FLAGS.pretrain_task_weight,
      data_sqrt_sampling=FLAGS.data_sqrt_sampling,
      max_examples_per_source=FLAGS.max_examples_per_source)
  inputs = meta_job.read_inputs(job)  # bad data fails before output_dir is made
  cli.start_run(FLAGS.output_dir, FLAGS.overwrite_output_dir, strategy)
  results = meta_job.run_meta_job(job, strategy, inputs)
  cli.print_result(json.dumps({k: results[k] for k in ("checkpoint", "meta_test_history")}))


def main(_):
  with cli.user_errors_exit():
    run()


if __name__ == "__main__":
  app.run(main)
