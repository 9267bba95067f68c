r"""Meta-train BERT: FOMAML or Reptile on multi-domain data (Meta-BERT's flags and defaults), or
LEOPARD, SMLMT or Hybrid-SMLMT on task sources (the original's flag names and defaults). MFT and
its multi-domain baselines (Mix, MTL, Adv) train in run_multidomain.py; `--algorithm
mft|mix|mtl|adv` here runs that program with the same arguments.

  python run_meta_train.py --algorithm fomaml --data ../shared/data/blitzer_mds_4domain \
      --test_domains kitchen --output_dir out/meta_fomaml
  python run_meta_train.py --algorithm hybrid_smlmt --data 'glue/SST-2/train.tsv:text=sentence' \
      --data smlmt/meta_pretrain_2.tf_record --data smlmt/meta_pretrain_3.tf_record \
      --num_train_task 4000 --output_dir out/hsmlmt

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
import os
import sys

from absl import app
from absl import flags

from metabert_tf import backbones
from metabert_tf import cli
from metabert_tf import datasets
from metabert_tf import flag_rules
from metabert_tf import multidomain_job
from metabert_tf import runtime
from metabert_tf.data import readers
from metabert_tf.errors import DataError
from metabert_tf.meta import algorithms
from metabert_tf.meta import job as meta_job
from metabert_tf.meta import leopard
from metabert_tf.meta import reptile

FLAGS = flags.FLAGS
SUPERVISED = multidomain_job.METHODS  # run by programs/multidomain.py


def define_flags():
  """The program's flags (defined when run, not at import: see tests/test_layering.py)."""
  cli.define_common_flags()
  flags.adopt_module_key_flags(cli)  # --help lists the shared flags too
  flags.DEFINE_enum("algorithm", "fomaml", list(algorithms.NAMES),
                    "fomaml, reptile: Meta-BERT (episodes of domains, inner loops); leopard, "
                    "smlmt, hybrid_smlmt, proto_fomaml, proto_reptile (ProtoMAML's head), "
                    "proto_bert, mt_bert: task sources (mft, mix, mtl, adv: run_multidomain.py).")
  flags.DEFINE_enum("reptile_variant", "classic", list(reptile.VARIANTS),
                    "classic: theta += eps * mean(phi - theta); adam: theta - phi fed to Adam.")
  flags.DEFINE_multi_string("data", None, "Multi-domain labeled data (any reader format with "
                            "domains); the task-source algorithms (all but fomaml, reptile): "
                            "each task source (repeat the flag; tf_records and SMLMT files too). "
                      f"CSV/TSV/JSON columns as {readers.SPEC_HELP}.")
  flags.DEFINE_list("test_domains", [], "Held-out domains: never meta-trained on, meta-tested.")
  flags.DEFINE_string("meta_test_exclude", None, "Data a later evaluation scores (e.g. the "
                      "held-out domain's test set): the meta-test never draws its examples.")
  flags.DEFINE_integer("num_train_task", 50, "Meta-training tasks (drawn once, reused each epoch).")
  flags.DEFINE_integer("num_test_task", 3, "Meta-test tasks from the test domains.")
  flags.DEFINE_integer("num_domain", 100, "Use the num_domain smallest training domains.")
  flags.DEFINE_integer("num_support", 80, "fomaml, reptile: support examples per task (the "
                       "task-source algorithms: --meta_batchsz).")
  flags.DEFINE_integer("num_query", None, "Query examples per task (default: 20; the "
                       "task-source algorithms: 10).")
  flags.DEFINE_enum("domain_sampling", "proportional", ["proportional", "uniform"],
                    "Task domain drawn proportionally to its size, or uniformly.")
  flags.DEFINE_bool("class_balanced", False, "Balance the labels within support and query.")
  flags.DEFINE_integer("outer_batch_size", None, "Tasks per meta-step (over all replicas; default "
                       "5; the task-source algorithms: 4, LEOPARD's release: 4 GPUs x 1 task).")
  flags.DEFINE_integer("tasks_per_replica", 0, "Tasks each replica adapts per meta-step; must "
                       "equal outer_batch_size / replicas (0: computed from it).")
  flags.DEFINE_integer("inner_batch_size", 16, "fomaml, reptile: support batch size in the "
                       "inner loop (the task-source algorithms: --num_batches).")
  flags.DEFINE_integer("inner_update_step", None, "Inner passes over the support set (training; "
                       "default 10; the task-source algorithms: 1, LEOPARD's inner_epochs).")
  flags.DEFINE_integer("inner_update_step_eval", None, "Inner passes over the support set "
                       "(meta-test; default 10; the task-source algorithms: 5).")
  flags.DEFINE_float("inner_update_lr", 5e-5, "Inner learning rate.")
  flags.DEFINE_enum("inner_optimizer", "adam", ["adam", "sgd"], "Inner optimiser (Meta-BERT: Adam).")
  flags.DEFINE_float("outer_update_lr", 5e-5, "Outer Adam learning rate (FOMAML, Reptile adam).")
  flags.DEFINE_float("reptile_epsilon", 0.5, "Reptile classic step: theta += eps * mean(phi - theta).")
  flags.DEFINE_integer("epochs", None, "Passes over the num_train_task tasks, each in a new "
                       "order (default 3; the task-source algorithms: 1).")
  flags.DEFINE_integer("save_every_steps", 0, "Also checkpoint every N meta-steps (0: per epoch).")
  flags.DEFINE_list("label_list", None, "Label order (ids); default: the model's, else sorted.")
  flags.DEFINE_bool("progress", True, "Show progress bars.")
  flags.DEFINE_float("learning_rate", None, "leopard, smlmt, hybrid_smlmt (default 1e-5), "
                     "proto_bert, mt_bert (2e-5): the peak outer AdamW rate, 10% warm-up, "
                     "linear decay.")
  # leopard, smlmt, hybrid_smlmt (the original run_classifier_pretrain.py's names):
  flags.DEFINE_float("train_lr", 1e-5, "Initial inner learning rates (learned with --is_meta_sgd).")
  flags.DEFINE_integer("meta_batchsz", 80, "Task-source algorithms: support examples per task.")
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
  flags.DEFINE_enum("head_init", None, list(leopard.HEAD_INITS),
                    "The generated head's start: prototypes (default: a nearest-class-mean "
                    "classifier from the first meta-step) or released (the original's MLPs, whose "
                    "rows and logits start near zero).")
  flags.DEFINE_integer("label_emb_size", 256, "Task-feature size of the generated softmax, "
                       "with --head_init released only (the prototype start's task features "
                       "have the encoder's hidden size).")
  flags.mark_flags_as_required(["data", "output_dir"])
  flag_rules.register()  # every numeric and list flag's bounds


META_BERT = {n for n, e in algorithms.REGISTRY.items() if not e.by_sources}
SOURCES = {n for n, e in algorithms.REGISTRY.items() if e.by_sources}
LEOPARD_FLAGS = ["train_lr", "SGD_K", "warp_layers", "is_meta_sgd", "min_layer_with_grad",
                 "train_word_embeddings", "clip_lr", "average_query_loss", "average_query_every",
                 "weight_query_loss", "pretrain_task_weight", "data_sqrt_sampling",
                 "max_examples_per_source", "label_emb_size", "learning_rate", "head_init"]
# Flags named as a field of an algorithm's Config (reptile_variant: Reptile's `variant`).
CONFIG_FLAGS = {**{n: n for n in ["inner_update_lr", "inner_optimizer", "outer_update_lr",
                                  "reptile_epsilon", *LEOPARD_FLAGS]},
                "reptile_variant": "variant"}
# The algorithms that read each algorithm-specific flag (the others are read by all): a Config
# flag by those whose Config has the field; the rest by those drawing tasks from domains
# (Meta-BERT's) or from task sources.
READ_ONLY_BY = {
    **{flag: set(algorithms.reading(field)) for flag, field in CONFIG_FLAGS.items()},
    **dict.fromkeys(["test_domains", "meta_test_exclude", "num_domain", "num_support",
                     "domain_sampling", "inner_batch_size"], META_BERT),
    **dict.fromkeys(["meta_batchsz", "num_batches"], SOURCES),
}


def config_from_flags():
  """The engine's MetaConfig with the algorithm's Config (meta_job.meta_config): a flag left
  unset takes the algorithm's default (its ENGINE_DEFAULTS and Config, algorithms.py)."""
  names = meta_job.ENGINE_SETTINGS + meta_job.DOMAIN_SETTINGS + meta_job.SOURCE_SETTINGS
  return meta_job.meta_config(
      FLAGS.algorithm, strict=False,
      **{name: FLAGS[name].value for name in names if name in FLAGS},
      **{field: FLAGS[flag].value for flag, field in CONFIG_FLAGS.items()})


def validate_flags():
  cli.refuse_unread_flags(READ_ONLY_BY, FLAGS.algorithm, "algorithm")
  if FLAGS["label_emb_size"].present and FLAGS.head_init != "released":
    raise flags.ValidationError("--label_emb_size is read with --head_init released only: the "
                                "prototype start (the default) uses the hidden size")
  if not algorithms.get(FLAGS.algorithm).by_sources and len(FLAGS.data) != 1:
    raise flags.ValidationError(f"--algorithm {FLAGS.algorithm} takes one --data, got "
                                f"{len(FLAGS.data)}")


def run():
  validate_flags()
  sources = [datasets.resolve(d, FLAGS.data_dir) for d in FLAGS.data]
  data = sources if algorithms.get(FLAGS.algorithm).by_sources else sources[0]
  for path in sources:
    if not datasets.exists(path):
      raise DataError(path, "file or directory not found")
  # First: a multi-worker strategy must exist before TensorFlow runs any op.
  strategy = runtime.get_strategy(FLAGS.distribution_strategy, FLAGS.tpu)
  # Before output_dir is made: a model that cannot be read leaves nothing behind.
  backbones.check_readable(FLAGS.bert_model, FLAGS.do_lower_case, FLAGS.max_seq_length)
  job = meta_job.MetaJob(
      output_dir=FLAGS.output_dir, data=data,
      algorithm=FLAGS.algorithm, test_domains=list(FLAGS.test_domains),
      num_domain=FLAGS.num_domain, bert_model=FLAGS.bert_model, do_lower_case=FLAGS.do_lower_case,
      label_list=FLAGS.label_list, max_seq_length=FLAGS.max_seq_length,
      precision=FLAGS.precision, pooling=FLAGS.pooling, save_every_steps=FLAGS.save_every_steps,
      meta_test_exclude=datasets.resolve(FLAGS.meta_test_exclude, FLAGS.data_dir),
      meta=config_from_flags())
  inputs = meta_job.read_inputs(job)  # bad data fails before output_dir is made
  cli.start_run(FLAGS.output_dir, FLAGS.overwrite_output_dir, strategy)
  results = meta_job.run_meta_job(job, strategy, inputs)
  cli.print_result(json.dumps({k: results[k] for k in ("checkpoint", "meta_test_history")}))


def main(_):
  with cli.user_errors_exit():
    run()


def forward_multidomain(argv):
  """`--algorithm mft|mix|mtl|adv`: those train in run_multidomain.py (programs/multidomain.py);
  run it instead, with the same arguments (so older commands keep working)."""
  for i, arg in enumerate(argv):
    value = (arg.split("=", 1)[1] if arg.startswith("--algorithm=")
             else argv[i + 1] if arg == "--algorithm" and i + 1 < len(argv) else None)
    if value in SUPERVISED:
      os.execv(sys.executable, [sys.executable, "-m", "metabert_tf.programs.multidomain",
                                *argv[1:]])


if __name__ == "__main__":
  forward_multidomain(sys.argv)
  define_flags()
  app.run(main)
