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
import sys
import time

from absl import app
from absl import flags
from absl import logging
import tensorflow as tf

from data_prep.examples import DataError
from metabert_tf import backbones
from metabert_tf import checkpoints
from metabert_tf import classifier
from metabert_tf import datasets
from metabert_tf import evaluation
from metabert_tf import export
from metabert_tf import io_utils
from metabert_tf import run_utils
from metabert_tf import training

run_utils.define_common_flags()
flags.DEFINE_string("train_file", None, "Training data: any reader format or a tf_record.")
flags.DEFINE_string("eval_file", None, "Evaluation data: any reader format or a tf_record.")
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
FLAGS = flags.FLAGS


def validate_flags():
  if FLAGS.task and FLAGS.train_file:
    raise flags.ValidationError("pass either --task (with --k/--split) or --train_file, not both")
  if FLAGS.task and FLAGS.k is None:
    raise flags.ValidationError("--task needs --k (examples per label)")
  if not (FLAGS.task or FLAGS.train_file or FLAGS.zero_shot):
    raise flags.ValidationError("give --task/--k/--split or --train_file (or --zero_shot)")
  if not (FLAGS.task or FLAGS.eval_file or FLAGS.train_file):
    raise flags.ValidationError("--zero_shot needs --eval_file or --task")
  for name in ("epochs", "batch_size", "eval_batch_size", "max_seq_length"):
    if FLAGS[name].value <= 0:
      raise flags.ValidationError(f"--{name} must be positive, got {FLAGS[name].value}")


def data_paths():
  if FLAGS.task:
    train, evals = datasets.leopard_files(FLAGS.data_dir, FLAGS.task, FLAGS.k, FLAGS.split)
    return (None if FLAGS.zero_shot else train), (FLAGS.eval_file or evals)
  return (None if FLAGS.zero_shot else datasets.resolve(FLAGS.train_file, FLAGS.data_dir),
          datasets.resolve(FLAGS.eval_file, FLAGS.data_dir))


def run():
  validate_flags()
  run_utils.prepare_output_dir(FLAGS.output_dir, FLAGS.overwrite_output_dir)
  run_utils.write_hyparams(FLAGS.output_dir)
  run_utils.log_to_file(FLAGS.output_dir)
  run_utils.set_seed(FLAGS.seed)
  run_utils.set_precision(FLAGS.precision)
  strategy = run_utils.get_strategy(FLAGS.distribution_strategy, FLAGS.tpu)
  train_path, eval_path = data_paths()
  if eval_path and not os.path.exists(eval_path):
    raise DataError(eval_path, "evaluation file not found")

  with strategy.scope():
    backbone = backbones.load_backbone(FLAGS.bert_model, FLAGS.do_lower_case)
  input_encoder = backbone.input_encoder(FLAGS.max_seq_length)
  example_sets = [datasets.read(p) for p in (train_path, eval_path)
                  if p and not datasets.is_tf_record(p)]
  given = FLAGS.label_list or backbone.label_list
  label_list = datasets.choose_label_list(example_sets, given, source=None if not FLAGS.zero_shot
                                          else eval_path)
  logging.info("Labels (id order): %s", label_list)

  with strategy.scope():
    model = classifier.Classifier(backbone.encoder, len(label_list)).build_all()
    if backbone.checkpoint_prefix and backbone.label_list == label_list:
      tf.train.Checkpoint(head=model.head).read(backbone.checkpoint_prefix).expect_partial()
      logging.info("Classifier head restored from %s", backbone.checkpoint_prefix)
    elif FLAGS.zero_shot:
      logging.warning("--zero_shot with a model that has no trained classifier for these labels:"
                      " the head is random, expect chance accuracy")
    metadata = checkpoints.metadata_variable(backbone.config, backbone.vocab, backbone.lower_case,
                                             label_list, FLAGS.max_seq_length, stage="finetune")
  results = {"bert_model": FLAGS.bert_model, "label_list": label_list,
             "train_file": train_path, "eval_file": eval_path}
  if train_path:
    train_features = datasets.load_features(train_path, input_encoder, label_list)
    config = training.FinetuneConfig(
        epochs=FLAGS.epochs, batch_size=FLAGS.batch_size, learning_rate=FLAGS.learning_rate,
        save_every_steps=FLAGS.save_every_steps, seed=FLAGS.seed, progress=FLAGS.progress)
    results["num_train_examples"] = int(len(train_features["label_ids"]))
    results.update(training.finetune(strategy, model, train_features, FLAGS.output_dir,
                                     config, metadata))
  if eval_path:
    eval_features = datasets.load_features(eval_path, input_encoder, label_list)
    start = time.time()
    metrics = evaluation.evaluate(model, eval_features, len(label_list), FLAGS.eval_batch_size,
                                  FLAGS.progress)
    metrics["eval_seconds"] = time.time() - start
    results.update(metrics)
    logging.info("Eval on %s: accuracy %.4f, macro-F1 %.4f (%d examples)", eval_path,
                 metrics["accuracy"], metrics["macro_f1"], metrics["num_examples"])
  if FLAGS.export and train_path:
    export_dir = FLAGS.export_dir or os.path.join(FLAGS.output_dir, "export")
    export.export_saved_model(model, input_encoder, label_list, export_dir)
    results["export_dir"] = export_dir
  io_utils.atomic_write_json(os.path.join(FLAGS.output_dir, "results.json"), results)
  print(json.dumps({k: results[k] for k in ("accuracy", "macro_f1", "num_examples")
                    if k in results}))


def main(_):
  with run_utils.user_errors_exit():
    run()


if __name__ == "__main__":
  app.run(main)
