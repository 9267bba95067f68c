r"""The MFT paper's Amazon experiment (Wang et al. 2020, Table 3 and the few-shot table).

  python -m data_prep.mft_splits --data ../shared/data/blitzer_mds_4domain \
      --output_dir data/mft_amazon
  python -m metabert_tf.mft_experiment --data_dir data/mft_amazon --output_dir results/mft \
      --seeds 0,1,2

Methods (rows of Table 3), each scored on every domain's test set:
  bert_s    BERT (S): one model per domain, fine-tuned on that domain's training data
  mix, mtl, adv   one model on every domain's data (multidomain_job: pooled, a head per domain,
            adversarial domain classifier), scored per domain
  mft_dc, mft_tw, mft_full   MFT (variant) on every domain's data, then BERT (S) from it
  mix_s     the control for MFT's two stages: BERT (Mix), then BERT (S) from it (MFT with
            neither typicality weights nor corruption loss); not in the paper
Fractions: 100 is Table 3; 5, 10, 20 are the few-shot table (bert_s and mft_full, with MFT on
the same reduced data). Each seed x method x fraction runs in a child process; killed, the
experiment reuses every finished run (results.json). Writes summary.json and results.md.
"""
import json
import math
import os
import shutil

from absl import app
from absl import flags
from absl import logging

from data_prep.examples import DataError
from metabert_tf import evaluation
from metabert_tf import finetune_job
from metabert_tf import flag_rules
from metabert_tf import io_utils
from metabert_tf import mft_flags
from metabert_tf import multidomain_job
from metabert_tf import run_utils
from metabert_tf import training

METHODS = ("bert_s", "mix", "mtl", "adv", "mft_dc", "mft_tw", "mft_full", "mix_s")
# Two-stage methods: a multi-domain stage (its job method), then per-domain fine-tuning from it.
STAGED = {"mft_dc": "mft", "mft_tw": "mft", "mft_full": "mft", "mix_s": "mix"}
FEW_SHOT_METHODS = ("bert_s", "mft_full")
NAMES = {"bert_s": "BERT (S)", "mix": "BERT (Mix)", "mtl": "BERT (MTL)", "adv": "BERT (Adv)",
         "mft_dc": "MFT (DC)", "mft_tw": "MFT (TW)", "mft_full": "MFT (Full)",
         "mix_s": "BERT (Mix) then S"}

flags.DEFINE_string("data_dir", None, "Split files written by data_prep.mft_splits.")
flags.DEFINE_string("output_dir", None, "Where runs and tables go.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Training seeds.")
flags.DEFINE_list("methods", list(METHODS), "Rows of Table 3.")
flags.DEFINE_list("fractions", ["100", "5", "10", "20"], "Percent of each domain's training "
                  "data: 100 for Table 3, others for the few-shot table.")
flags.DEFINE_enum("eval_split", "test", ["test", "dev"], "Score on test, or on dev (to tune).")
flags.DEFINE_string("bert_model", "minilm-l6", "Backbone.")
flags.DEFINE_integer("max_seq_length", 128, "Sequence length.")
flags.DEFINE_enum("precision", "bf16", ["fp32", "bf16"], "Compute precision.")
flags.DEFINE_integer("epochs", 2, "Epochs of per-domain fine-tuning and of mix/mtl/adv.")
flags.DEFINE_integer("min_steps", 50, "Fine-tuning runs get at least this many steps (small "
                     "few-shot sets get more epochs).")
flags.DEFINE_integer("mft_epochs", 1, "Epochs of the multi-domain stage of MFT and mix_s.")
flags.DEFINE_integer("batch_size", 32, "Training batch size.")
flags.DEFINE_float("learning_rate", 2e-5, "Peak AdamW learning rate (every stage).")
mft_flags.define()  # --mft_lambda, --corruption_layers, and the EasyTransfer options
flags.DEFINE_float("adversarial_weight", 0.1, "BERT (Adv): weight of the reversed domain loss.")
flags.DEFINE_bool("keep_checkpoints", False, "Keep each run's ckpt/ (large).")
flags.DEFINE_bool("process_per_cell", True, "Run each seed x method x fraction in a child "
                  "process (TensorFlow keeps ~350 MB for every model a process builds).")
flags.mark_flags_as_required(["data_dir", "output_dir"])
flags.register_validator("methods", lambda v: set(v) <= set(METHODS),
                         f"--methods must be among {', '.join(METHODS)}")
flag_rules.register()  # every numeric and list flag's bounds
FLAGS = flags.FLAGS


def split_path(domain, split, fraction=100):
  name = f"{split}_{fraction}pct" if fraction != 100 else split
  return os.path.join(FLAGS.data_dir, domain, f"{name}.jsonl") if domain else os.path.join(
      FLAGS.data_dir, f"all_{name}.jsonl")


def domains():
  with open(os.path.join(FLAGS.data_dir, "splits.json")) as f:
    return sorted({key.split("/")[0] for key in json.load(f)["counts"]})


def _config(seed, examples, epochs):
  steps_per_epoch = math.ceil(examples / FLAGS.batch_size)
  return training.FinetuneConfig(
      epochs=max(epochs, math.ceil(FLAGS.min_steps / steps_per_epoch)),
      batch_size=FLAGS.batch_size, learning_rate=FLAGS.learning_rate, seed=seed, progress=False,
      save_every_steps=training.SAVE_AT_END_ONLY)


def _count(path):
  with open(path) as f:
    return sum(1 for line in f if line.strip())


def _drop_checkpoints(run_dir):
  if not FLAGS.keep_checkpoints:
    shutil.rmtree(os.path.join(run_dir, "ckpt"), ignore_errors=True)


def fine_tune(domain, fraction, seed, model, out):
  """BERT (S) on one domain from `model`; returns its accuracy on the eval split."""
  done = os.path.join(out, "results.json")
  if not os.path.exists(done):
    train = split_path(domain, "train", fraction)
    finetune_job.run_job(finetune_job.FinetuneJob(
        output_dir=out, train_path=train, eval_path=split_path(domain, FLAGS.eval_split),
        bert_model=model, max_seq_length=FLAGS.max_seq_length, precision=FLAGS.precision,
        train=_config(seed, _count(train), FLAGS.epochs)))
    _drop_checkpoints(out)
  with open(done) as f:
    return json.load(f)["accuracy"]


def multidomain(method, fraction, seed, out, epochs, eval_data=None):
  """Trains `method` (mix, mtl, adv, mft) on every domain; returns its results."""
  done = os.path.join(out, "results.json")
  if not os.path.exists(done):
    variant = method.split("_", 1)[1] if method.startswith("mft_") else "full"
    train = split_path(None, "train", fraction)
    multidomain_job.run_multidomain_job(multidomain_job.MultiDomainJob(
        output_dir=out, data=train, eval_data=eval_data,
        method=STAGED.get(method, method), bert_model=FLAGS.bert_model,
        max_seq_length=FLAGS.max_seq_length, precision=FLAGS.precision,
        train=_config(seed, _count(train), epochs), adversarial_weight=FLAGS.adversarial_weight,
        mft=mft_flags.config(variant, seed)))
  with open(done) as f:
    return json.load(f)


def run_cell(seed, method, fraction):
  """{domain: accuracy} of one seed x method x fraction (reusing finished runs)."""
  run_dir = os.path.join(FLAGS.output_dir, f"seed{seed}", method, f"{fraction}pct")
  os.makedirs(run_dir, exist_ok=True)
  if method in ("mix", "mtl", "adv"):
    out = os.path.join(run_dir, "multi")
    results = multidomain(method, fraction, seed, out, FLAGS.epochs,
                          eval_data=split_path(None, FLAGS.eval_split))
    _drop_checkpoints(out)
    return {d: m["accuracy"] for d, m in results["eval"]["by_domain"].items()}
  model = FLAGS.bert_model
  pending = [d for d in domains() if not os.path.exists(os.path.join(run_dir, d, "results.json"))]
  stage_dir = os.path.join(run_dir, STAGED.get(method, ""))
  if method in STAGED and pending:
    model = multidomain(method, fraction, seed, stage_dir, FLAGS.mft_epochs)["checkpoint"]
  accuracies = {d: fine_tune(d, fraction, seed, model, os.path.join(run_dir, d))
                for d in domains()}
  if method in STAGED:
    _drop_checkpoints(stage_dir)
  return accuracies


def grid():
  cells = []
  for seed in map(int, FLAGS.seeds):
    for fraction in map(int, FLAGS.fractions):
      cells += [(seed, method, fraction) for method in FLAGS.methods
                if fraction == 100 or method in FEW_SHOT_METHODS]
  return cells


def tables(results):
  """Table 3 (methods x domains and their average, mean +- std over seeds) and the few-shot
  table (average over domains), each with the paired gains of MFT (Full) over its baselines."""
  names = domains()
  runs = {m: [r for (s, mm, f), r in sorted(results.items()) if mm == m and f == 100]
          for m in FLAGS.methods}
  table = {NAMES[m]: {**{d: [r[d] for r in rs] for d in names},
                      "average": [sum(r.values()) / len(r) for r in rs]}
           for m, rs in runs.items() if rs}
  gains = {}
  for base in ("BERT (S)", "BERT (Mix)", "BERT (Mix) then S"):
    if "MFT (Full)" in table and base in table:
      gains.update(evaluation.paired_gains({"MFT (Full)": table["MFT (Full)"], base: table[base]},
                                           base))
  few = {NAMES[m]: {f"{f}%": [sum(r.values()) / len(r) for (s, mm, ff), r in
                              sorted(results.items()) if mm == m and ff == f]
                    for f in map(int, FLAGS.fractions) if f != 100}
         for m in FEW_SHOT_METHODS if m in FLAGS.methods}
  few = {m: cols for m, cols in few.items() if cols and all(cols.values())}
  if len(few) == 2:
    few.update(evaluation.paired_gains(few, "BERT (S)"))
  return (evaluation.mean_std_summary({**table, **gains}),
          evaluation.mean_std_summary(few))


def main(_):
  with run_utils.user_errors_exit():
    if not os.path.exists(os.path.join(FLAGS.data_dir, "splits.json")):
      raise DataError(FLAGS.data_dir, "no splits.json: write the splits with "
                      "python -m data_prep.mft_splits first")
    unknown = sorted(set(FLAGS.methods) - set(METHODS))
    if unknown:
      raise flags.ValidationError(f"--methods {unknown}: expected some of {list(METHODS)}")
    run_utils.start_grid(FLAGS.output_dir, free_flags=["seeds", "methods", "fractions",
                                                       "keep_checkpoints"])
    cells = grid()
    if FLAGS.process_per_cell and len(cells) > 1:
      run_utils.run_cells_in_children(
          "metabert_tf.mft_experiment", output_dir=FLAGS.output_dir,
          cells=[(f"seed {s}, {m}, {f}%", [f"--seeds={s}", f"--methods={m}", f"--fractions={f}"])
                 for s, m, f in cells])
    results = {}
    for seed, method, fraction in cells:
      logging.info("seed %d, %s, %d%% of the training data", seed, method, fraction)
      results[(seed, method, fraction)] = run_cell(seed, method, fraction)
    if run_utils.is_grid_cell():
      return  # the parent writes the tables
    table3, few_shot = tables(results)
    io_utils.atomic_write_json(os.path.join(FLAGS.output_dir, "summary.json"),
                               {"table3": table3, "few_shot": few_shot})
    text = (f"Accuracy on {FLAGS.eval_split} (%), mean +- std over seeds {FLAGS.seeds}\n\n"
            + (evaluation.markdown_table(table3, domains() + ["average"]) if table3 else "")
            + ("\nFew-shot (average over domains)\n\n"
               + evaluation.markdown_table(few_shot, list(next(iter(few_shot.values()))))
               if few_shot else ""))
    io_utils.atomic_write_text(os.path.join(FLAGS.output_dir, "results.md"), text)
    run_utils.print_result(text)


if __name__ == "__main__":
  app.run(main)
