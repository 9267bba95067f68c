r"""Meta-BERT's experiment: leave one domain out, meta-train on the rest, adapt to the held-out one.

  python -m metabert_tf.meta.experiment --data ../shared/data/blitzer_mds_4domain \
      --seeds 0,1,2 --output_dir results/meta_bert

For every held-out domain D and seed s:
  * D's examples are shuffled (seed s): the first --test_size are the test set, the rest the pool;
  * FOMAML and Reptile meta-train on the other domains (run_meta_train.py's engine, seed s);
  * each method (plain BERT = --bert_model, and each meta-learned checkpoint) is then
    (a) fine-tuned on --shots examples drawn from the pool and on K per label for each --ks
        (data_prep.kshot, split s), and (b) evaluated zero-shot; accuracy on the test set.
Results are mean +- std over held-out domains x seeds, and each meta-learned method's paired
gain over plain BERT (same domain, seed and examples). Finished runs are reused (resumable).
Writes output_dir/{summary.json, results.md}.
"""
import collections
import json
import math
import os
import shutil

from absl import app
from absl import flags
from absl import logging
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from data_prep import kshot
from data_prep import readers
from data_prep.examples import DataError
from metabert_tf import datasets
from metabert_tf import evaluation
from metabert_tf import finetune_job
from metabert_tf import flag_rules
from metabert_tf import io_utils
from metabert_tf import run_utils
from metabert_tf import training
from metabert_tf.meta import base
from metabert_tf.meta import engine
from metabert_tf.meta import episodes
from metabert_tf.meta import job as meta_job

flags.DEFINE_string("data", None, "Multi-domain labeled data (e.g. the Amazon reviews dir).")
flags.DEFINE_string("output_dir", None, "Where runs and tables go.")
flags.DEFINE_list("held_out", None, "Domains to hold out in turn (default: every domain).")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds (also the k-shot split index).")
flags.DEFINE_list("methods", ["bert", "fomaml", "reptile"], "bert = no meta-training.")
flags.DEFINE_integer("test_size", 1000, "Test examples taken from the held-out domain.")
flags.DEFINE_integer("shots", 80, "The 'N examples' setting (0: skip).")
flags.DEFINE_list("ks", ["4", "8", "16"], "K-per-label settings.")
flags.DEFINE_string("bert_model", "minilm-l6", "Backbone.")
flags.DEFINE_integer("max_seq_length", 128, "Sequence length.")
flags.DEFINE_enum("precision", "bf16", ["fp32", "bf16"], "Compute precision.")
flags.DEFINE_bool("process_per_cell", True, "Run each held-out domain x seed in a child process "
                  "(TensorFlow does not give back the memory of the models a run builds: "
                  "~350 MB each, which ends a 180-run experiment in one process).")
# Meta-training (CPU-sized defaults; Meta-BERT's are 50 tasks, 10 passes, 3 epochs).
flags.DEFINE_integer("num_train_task", 40, "Meta-training tasks.")
flags.DEFINE_integer("outer_batch_size", 2, "Tasks per meta-step.")
flags.DEFINE_integer("inner_batch_size", 16, "Inner batch size.")
flags.DEFINE_integer("inner_update_step", 1, "Inner passes over the 80 support examples.")
flags.DEFINE_float("inner_update_lr", 5e-5, "Inner (Adam) learning rate.")
flags.DEFINE_float("outer_update_lr", 5e-5, "FOMAML outer Adam learning rate.")
flags.DEFINE_float("reptile_epsilon", 0.5, "Reptile (classic) outer step size.")
flags.DEFINE_integer("meta_epochs", 1, "Passes over the meta-training tasks.")
flags.DEFINE_integer("num_support", 80, "Support examples per task.")
flags.DEFINE_integer("num_query", 20, "Query examples per task.")
# Fine-tuning on the held-out domain (the plain fine-tuning recipe of docs/results.md).
flags.DEFINE_integer("steps", 50, "Fine-tuning steps per run.")
flags.DEFINE_integer("batch_size", 8, "Fine-tuning batch size.")
flags.DEFINE_float("learning_rate", 1e-4, "Fine-tuning learning rate.")
flags.mark_flags_as_required(["data", "output_dir"])
flags.register_validator("methods", lambda v: set(v) <= {"bert", *meta_job.ALGORITHMS},
                         f"--methods must be among bert, {', '.join(sorted(meta_job.ALGORITHMS))}")
flag_rules.register()  # every numeric and list flag's bounds
FLAGS = flags.FLAGS


def _write_json_examples(path, examples):
  if not os.path.exists(path):
    io_utils.atomic_write_json(path, [kshot.leopard_record(e) for e in examples])
  return path


def prepare_domain(examples, domain, seed, run_dir):
  """Writes the held-out domain's test set and training sets; returns {setting: path}."""
  own = [e for e in examples if e.domain == domain]
  # [seed, 11]: the test/pool split's own stream, apart from meta-training's ([seed, ...]).
  order = np.random.default_rng([seed, 11]).permutation(len(own))
  test = [own[i] for i in order[:FLAGS.test_size]]
  pool = [own[i] for i in order[FLAGS.test_size:]]
  paths = {"test": _write_json_examples(os.path.join(run_dir, "test.json"), test)}
  if FLAGS.shots:
    paths[f"n{FLAGS.shots}"] = _write_json_examples(os.path.join(run_dir, f"n{FLAGS.shots}.json"),
                                                    pool[:FLAGS.shots])
  ks = [int(k) for k in FLAGS.ks]
  if ks:
    splits = kshot.build_kshot_splits(pool, ks, num_splits=seed + 1, seed=0,
                                      path=f"{FLAGS.data} ({domain} after --test_size)")
    for k in ks:
      paths[f"k{k}"] = _write_json_examples(os.path.join(run_dir, f"k{k}.json"),
                                            [pool[i] for i in splits[(seed, k)]])
  return paths


def meta_train(method, domain, seed, run_dir, paths):
  config = engine.MetaConfig(
      episodes=episodes.EpisodeConfig(FLAGS.num_support, FLAGS.num_query),
      num_train_task=FLAGS.num_train_task, num_test_task=0,
      outer_batch_size=FLAGS.outer_batch_size, inner_batch_size=FLAGS.inner_batch_size,
      inner_update_step=FLAGS.inner_update_step, epochs=FLAGS.meta_epochs, seed=seed,
      progress=False, algorithm=base.make_config(
          meta_job.ALGORITHMS[method], inner_update_lr=FLAGS.inner_update_lr,
          outer_update_lr=FLAGS.outer_update_lr, reptile_epsilon=FLAGS.reptile_epsilon))
  out = os.path.join(run_dir, method, "meta")
  done = os.path.join(out, "results.json")
  if not os.path.exists(done):
    meta_job.run_meta_job(meta_job.MetaJob(
        output_dir=out, data=FLAGS.data, algorithm=method, test_domains=[domain],
        bert_model=FLAGS.bert_model, max_seq_length=FLAGS.max_seq_length,
        # Were the meta-test turned on, it must not draw the examples scored below.
        meta_test_exclude=paths["test"], precision=FLAGS.precision, meta=config))
  # Looked up, not read from results.json: the output dir may have moved since.
  return tf.train.latest_checkpoint(os.path.join(out, "ckpt"))


def adapt(model, setting, paths, seed, out):
  """Fine-tunes (or, for `zero`, only evaluates) `model`; returns the test accuracy."""
  done = os.path.join(out, "results.json")
  if not os.path.exists(done):
    train = None if setting == "zero" else paths[setting]
    n = 0 if train is None else len(readers.read_examples(train))
    epochs = math.ceil(FLAGS.steps / max(1, math.ceil(n / FLAGS.batch_size)))
    finetune_job.run_job(finetune_job.FinetuneJob(
        output_dir=out, train_path=train, eval_path=paths["test"], bert_model=model,
        max_seq_length=FLAGS.max_seq_length, precision=FLAGS.precision,
        train=training.FinetuneConfig(epochs=epochs, batch_size=FLAGS.batch_size,
                                      learning_rate=FLAGS.learning_rate, seed=seed,
                                      progress=False, save_every_steps=training.SAVE_AT_END_ONLY)))
    shutil.rmtree(os.path.join(out, "ckpt"), ignore_errors=True)  # large, and not needed again
  with open(done) as f:
    return json.load(f)["accuracy"]


def check_held_out(examples, domains):
  """Every held-out domain is in --data and big enough, checked before hours of runs."""
  datasets.require_domains(examples, FLAGS.data)
  sizes = collections.Counter(e.domain for e in examples)
  for domain in domains:
    if domain not in sizes:
      raise DataError("--held_out", f"no domain {domain!r} in {FLAGS.data} (have {sorted(sizes)})")
    if sizes[domain] < FLAGS.test_size + max(FLAGS.shots, 1):
      raise DataError("--test_size", f"domain {domain!r} has {sizes[domain]} examples: too few "
                      f"for --test_size={FLAGS.test_size} plus --shots={FLAGS.shots}")
  if len(sizes) < 2:
    raise DataError(FLAGS.data, f"needs 2 or more domains (has {sorted(sizes)})")


def main(_):
  with run_utils.user_errors_exit():
    examples = readers.read_examples(FLAGS.data)
    domains = FLAGS.held_out or sorted({e.domain for e in examples})
    check_held_out(examples, domains)
    run_utils.start_grid(FLAGS.output_dir, free_flags=["held_out", "seeds", "methods"])
    settings = ["zero"] + ([f"n{FLAGS.shots}"] if FLAGS.shots else []) + [f"k{k}" for k in FLAGS.ks]
    accuracies = {m: {s: [] for s in settings} for m in FLAGS.methods}
    # Seed-major, so that a run stopped part-way has results on every domain.
    grid = [(d, int(s)) for s in FLAGS.seeds for d in domains]
    if FLAGS.process_per_cell and len(grid) > 1:
      run_utils.run_cells_in_children(
          "metabert_tf.meta.experiment", output_dir=FLAGS.output_dir,
          cells=[(f"held-out {d}, seed {s}", [f"--held_out={d}", f"--seeds={s}"]) for d, s in grid])
    meta_methods = [m for m in FLAGS.methods if m != "bert"]
    bar = tqdm(total=len(grid) * (len(meta_methods) + len(FLAGS.methods) * len(settings)),
               desc="runs (meta-training and adaptation)", unit="run")
    for domain, seed in grid:
      run_dir = os.path.join(FLAGS.output_dir, f"{domain}_seed{seed}")
      os.makedirs(run_dir, exist_ok=True)
      io_utils.remove_leftovers(run_dir)  # test.json etc. half-written by a killed run
      paths = prepare_domain(examples, domain, seed, run_dir)
      for method in FLAGS.methods:
        model = FLAGS.bert_model
        if method in meta_methods:
          bar.set_postfix_str(f"{domain} seed {seed}: meta-train {method}")
          model = meta_train(method, domain, seed, run_dir, paths)
          bar.update()
        for setting in settings:
          bar.set_postfix_str(f"{domain} seed {seed}: {method} {setting}")
          accuracies[method][setting].append(
              adapt(model, setting, paths, seed, os.path.join(run_dir, method, setting)))
          bar.update()
    bar.close()
    if run_utils.is_grid_cell():
      return  # the parent writes the tables
    summary = evaluation.mean_std_summary({**accuracies,
                                           **evaluation.paired_gains(accuracies, "bert")})
    io_utils.atomic_write_json(os.path.join(FLAGS.output_dir, "summary.json"), summary)
    table = evaluation.markdown_table(summary, settings)
    io_utils.atomic_write_text(os.path.join(FLAGS.output_dir, "results.md"), table)
    logging.info("Results:\n%s", table)
    run_utils.print_result(table)


if __name__ == "__main__":
  app.run(main)
