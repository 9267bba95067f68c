r"""Fine-tune a BERT classifier on a (few-shot) task, evaluate it, export it.

  python run_finetune.py --task sentiment_books --k 16 --split 0 \
      --data_dir ../shared/data/leopard/json --output_dir out/sb_16_0
  python run_finetune.py --train_file train.jsonl --eval_file test.jsonl --output_dir out/x
  python run_finetune.py --bert_model out/meta/ckpt --zero_shot --eval_file ... --output_dir ...

Writes output_dir/{hyparams.txt, log.txt, ckpt/, tensorboard/, results.json, export/}.
Re-running the same command resumes from the last checkpoint (--overwrite_output_dir restarts).
"""
import json
import os

from absl import app
from absl import flags

from metabert_tf import backbones
from metabert_tf import cli
from metabert_tf import datasets
from metabert_tf import finetune_job
from metabert_tf import flag_rules
from metabert_tf import io_utils
from metabert_tf import runtime
from metabert_tf import training
from metabert_tf.data import readers
from metabert_tf.errors import DataError
from metabert_tf.experiments import recipes

FLAGS = flags.FLAGS


def define_flags():
  """The program's flags (defined when run, not at import: see tests/test_layering.py)."""
  cli.define_common_flags()
  flags.adopt_module_key_flags(cli)  # --help lists the shared flags too
  flags.DEFINE_string("train_file", None, "Training data: any reader format or a tf_record; "
                      f"CSV/TSV/JSON columns as {readers.SPEC_HELP}.")
  flags.DEFINE_string("eval_file", None, "Evaluation data: any reader format or a tf_record; "
                      f"CSV/TSV/JSON columns as {readers.SPEC_HELP}.")
  flags.DEFINE_string("task", None, "LEOPARD-layout task name under --data_dir (with --k, --split).")
  flags.DEFINE_integer("k", None, "Examples per label of the k-shot split (with --task).")
  flags.DEFINE_integer("split", 0, "Which k-shot split F (0..9) (with --task).")
  flags.DEFINE_list("label_list", None, "Label order (ids); default: the model's, else sorted.")
  flags.DEFINE_integer("epochs", 10, "Training epochs.")
  flags.DEFINE_integer("batch_size", 16, "Training batch size (global, over all replicas).")
  flags.DEFINE_integer("eval_batch_size", 64, "Evaluation batch size.")
  flags.DEFINE_float("learning_rate", 2e-5, "Peak AdamW learning rate (10% warm-up, linear decay).")
  flags.DEFINE_integer("save_every_steps", 0, "Checkpoint every N steps (0: every epoch).")
  flags.DEFINE_bool("zero_shot", False, "Evaluate without training (a checkpoint's classifier).")
  flags.DEFINE_string("export_dir", None, "SavedModel destination (default output_dir/export).")
  flags.DEFINE_bool("export", True, "Export a SavedModel taking raw strings after training.")
  flags.DEFINE_bool("progress", True, "Show progress bars.")
  flags.DEFINE_bool("allow_unseen_eval_labels", False, "Evaluate even when the eval data has labels "
                    "the training data (the classifier head) lacks: their examples count as "
                    "errors. Default: stop with an error naming them.")
  flags.DEFINE_bool("leopard_head", True, "From a leopard/smlmt/hybrid_smlmt checkpoint: generate "
                    "the class weights from the first batch and train with the learned per-layer "
                    "rates (--noleopard_head: plain fine-tuning of its encoder, new dense head, "
                    "AdamW).")
  flags.DEFINE_enum("head_init", "random", list(finetune_job.HEAD_INITS), "The dense head's "
                    "start: random (N(0, 0.02)), or prototypes (W_c = 2 mu_c, b_c = -|mu_c|^2 "
                    "from the training examples' features: the nearest class mean, ProtoMAML's).")
  flags.DEFINE_string("per_k_config", None, "With --task/--k: epochs and batch size from this JSON "
                      "(configs/leopard_per_k.json: {method: {K: [epochs, batch] per class}}) x N, "
                      "instead of --epochs/--batch_size.")
  flags.DEFINE_string("per_k_method", "leopard", "Which method's settings of --per_k_config.")
  flags.mark_flags_as_required(["output_dir"])
  flag_rules.register()  # every numeric and list flag's bounds



def validate_flags():
  if FLAGS.task and FLAGS.train_file:
    raise flags.ValidationError("pass either --task (with --k/--split) or --train_file, not both")
  if FLAGS.task and FLAGS.k is None:
    raise flags.ValidationError("--task needs --k (examples per label)")
  if not (FLAGS.task or FLAGS.train_file or FLAGS.zero_shot):
    raise flags.ValidationError("give --task/--k/--split or --train_file (or --zero_shot)")
  if FLAGS.zero_shot and FLAGS.train_file:
    raise flags.ValidationError("--zero_shot evaluates without training: pass --eval_file, "
                                "not --train_file")
  if FLAGS.zero_shot and not (FLAGS.task or FLAGS.eval_file):
    raise flags.ValidationError("--zero_shot needs --eval_file or --task")
  if FLAGS.per_k_config and FLAGS.k is None:
    raise flags.ValidationError("--per_k_config needs --task and --k")
  for name in ("split", "per_k_method"):  # read only with --task / --per_k_config
    flag = FLAGS[name]
    if (flag.present and flag.value != flag.default
        and not (FLAGS.task if name == "split" else FLAGS.per_k_config)):
      raise flags.ValidationError(f"--{name} is read only with "
                                  f"{'--task' if name == 'split' else '--per_k_config'}; drop it")
  if FLAGS["export_dir"].present and not FLAGS.export:
    raise flags.ValidationError("--export_dir is not read with --noexport; drop one of them")


def data_paths():
  """(train, eval) paths, checked to exist: before output_dir is made, not after."""
  eval_file = datasets.resolve(FLAGS.eval_file, FLAGS.data_dir)
  if FLAGS.task:
    train, evals = datasets.leopard_files(FLAGS.data_dir, FLAGS.task, FLAGS.k, FLAGS.split)
    paths = (None if FLAGS.zero_shot else train), (eval_file or evals)
  else:
    paths = (None if FLAGS.zero_shot else datasets.resolve(FLAGS.train_file, FLAGS.data_dir),
             eval_file)
  for flag, path in zip(("--train_file", "--eval_file"), paths):
    if path and not datasets.exists(path):
      raise DataError(path, f"file not found ({flag})")
  return paths


def run():
  validate_flags()
  train_path, eval_path = data_paths()
  if train_path:
    datasets.check_trainable(train_path)
  epochs, batch_size = FLAGS.epochs, FLAGS.batch_size
  if FLAGS.per_k_config and train_path:
    per_class = recipes.read_per_k_config(
        FLAGS.per_k_config, FLAGS.per_k_method, [FLAGS.k])[str(FLAGS.k)]
    epochs, batch_size = recipes.epochs_and_batch(per_class, datasets.read(train_path))
  # First: a multi-worker strategy must exist before TensorFlow runs any op.
  strategy = runtime.get_strategy(FLAGS.distribution_strategy, FLAGS.tpu)
  # The model and every output path are checked before output_dir is made.
  backbones.check_readable(FLAGS.bert_model, FLAGS.do_lower_case, FLAGS.max_seq_length)
  if FLAGS.export and FLAGS.export_dir:
    io_utils.check_writable(FLAGS.export_dir, "--export_dir", directory=True)
  cli.start_run(FLAGS.output_dir, FLAGS.overwrite_output_dir, strategy)
  job = finetune_job.FinetuneJob(
      output_dir=FLAGS.output_dir, train_path=train_path, eval_path=eval_path,
      bert_model=FLAGS.bert_model, do_lower_case=FLAGS.do_lower_case,
      label_list=FLAGS.label_list, max_seq_length=FLAGS.max_seq_length,
      train=training.FinetuneConfig(
          epochs=epochs, batch_size=batch_size, learning_rate=FLAGS.learning_rate,
          save_every_steps=FLAGS.save_every_steps, seed=FLAGS.seed, progress=FLAGS.progress),
      eval_batch_size=FLAGS.eval_batch_size, precision=FLAGS.precision, pooling=FLAGS.pooling,
      allow_unseen_eval_labels=FLAGS.allow_unseen_eval_labels, leopard_head=FLAGS.leopard_head,
      head_init=FLAGS.head_init,
      export_dir=(FLAGS.export_dir or os.path.join(FLAGS.output_dir, "export"))
      if FLAGS.export else None)
  results = finetune_job.run_job(job, strategy)
  cli.print_result(json.dumps({k: results[k] for k in (
      "accuracy", "macro_f1", "num_examples", "export_dir") if k in results}))


def main(_):
  with cli.user_errors_exit():
    run()


if __name__ == "__main__":
  define_flags()
  app.run(main)
