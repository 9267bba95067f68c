"""The MFT paper's Amazon experiment (Wang et al. 2020, Table 3 and the few-shot table), on the
splits data_prep.mft_splits writes.

Methods (methods.MFT; rows of Table 3), each scored on every domain's test set:
  bert_s    BERT (S): one model per domain, fine-tuned on that domain's training data
  mix, mtl, adv   one model on every domain's data (multidomain_job: pooled, a head per domain,
            adversarial domain classifier), scored per domain
  mft_dc, mft_tw, mft_full   MFT (variant) on every domain's data, then BERT (S) from it
  mix_s     the control for MFT's two stages: BERT (Mix), then BERT (S) from it (MFT with
            neither typicality weights nor corruption loss); not in the paper
Fractions: 100 is Table 3; 5, 10, 20 are the few-shot table (bert_s and mft_full, with MFT on
the same reduced data). One cell per seed x method x fraction, in
output_dir/seed<s>/<method>/<f>pct. Writes summary.json and results.md.
"""
import dataclasses
import json
import os
from typing import List, Optional

from metabert_tf import evaluation
from metabert_tf import finetune_job
from metabert_tf import io_utils
from metabert_tf import mft
from metabert_tf import multidomain_job
from metabert_tf.data import readers
from metabert_tf.errors import DataError
from metabert_tf.experiments import grid
from metabert_tf.experiments import methods as methods_lib
from metabert_tf.experiments import recipes
from metabert_tf.experiments.grid import setting

NAME = "mft"
FREE_FIELDS = ("seeds", "methods", "fractions", "keep_checkpoints")


@dataclasses.dataclass
class Config:
  data_dir: Optional[str] = setting(None, "Split files written by data_prep.mft_splits.")
  output_dir: Optional[str] = setting(None, "Where the runs and the tables go.")
  seeds: List[int] = setting([0, 1, 2], "Training seeds.")
  methods: List[str] = setting(list(methods_lib.MFT), "Rows of Table 3.")
  fractions: List[int] = setting([100, 5, 10, 20], "Percent of each domain's training data: "
                                 "100 for Table 3, others for the few-shot table.")
  eval_split: str = setting("test", "Score on test, or on dev (to tune).", ["test", "dev"])
  bert_model: str = setting("minilm-l6", "Backbone.")
  max_seq_length: int = setting(128, "Sequence length.")
  precision: str = setting("bf16", "Compute precision.", ["fp32", "bf16"])
  epochs: int = setting(2, "Epochs of per-domain fine-tuning and of mix/mtl/adv.")
  min_steps: int = setting(50, "Fine-tuning runs get at least this many steps (small few-shot "
                           "sets get more epochs).")
  mft_epochs: int = setting(1, "Epochs of the multi-domain stage of MFT and mix_s.")
  batch_size: int = setting(32, "Training batch size.")
  learning_rate: float = setting(2e-5, "Peak AdamW learning rate (every stage).")
  mft_alpha: float = setting(0.5, "Weight of the own-domain prototype in the typicality.")
  mft_prototypes: int = setting(1, "Prototypes per domain and class (k-means when > 1).")
  mft_lambda: float = setting(0.1, "Weight of the domain-corruption loss.")
  corruption_layers: List[int] = setting([], "1-based layers the corruption loss reaches; "
                                         "default: three evenly spaced ending at the top.")
  mft_typicality: str = setting("paper", "paper: mean cosine to the other domains' "
                                "prototypes; easytransfer: cosine to their mean.",
                                ["paper", "easytransfer"])
  mft_shared_domain_classifier: bool = setting(False, "One domain classifier for every layer.")
  mft_layer_mean: str = setting("tokens", "tokens: mean of a layer's token vectors "
                                "without [CLS] and padding; all: every position.",
                                list(mft.LAYER_MEANS))
  mft_weight_corruption: bool = setting(True, "Typicality-weight the corruption loss too.")
  adversarial_weight: float = setting(0.1, "BERT (Adv): weight of the reversed domain loss.")
  keep_checkpoints: bool = setting(False, "Keep each run's ckpt/ (large).")
  process_per_cell: bool = setting(True, "Run each seed x method x fraction in a child process.")


def mft_config(config, variant, seed):
  return mft.MFTConfig(
      variant=variant, alpha=config.mft_alpha, num_prototypes=config.mft_prototypes,
      corruption_weight=config.mft_lambda, typicality_formula=config.mft_typicality,
      corruption_layers=list(config.corruption_layers) or None,
      shared_domain_classifier=config.mft_shared_domain_classifier,
      layer_mean=config.mft_layer_mean, weight_corruption=config.mft_weight_corruption,
      seed=seed)


def split_path(config, domain, split, fraction=100):
  name = f"{split}_{fraction}pct" if fraction != 100 else split
  return (os.path.join(config.data_dir, domain, f"{name}.jsonl") if domain else
          os.path.join(config.data_dir, f"all_{name}.jsonl"))


def domains(config):
  with open(os.path.join(config.data_dir, "splits.json"), encoding="utf-8") as f:
    return sorted({key.split("/")[0] for key in json.load(f)["counts"]})


def check(config):
  methods_lib.check(methods_lib.MFT, config.methods)
  if not config.data_dir or not os.path.exists(os.path.join(config.data_dir, "splits.json")):
    raise DataError(config.data_dir, "no splits.json: write the splits with "
                    "python -m data_prep.mft_splits first")


def cells(config):
  return [grid.Cell(f"seed {s}, {m}, {f}%", (s, m, f))
          for s in config.seeds for f in config.fractions for m in config.methods
          if f == 100 or m in methods_lib.MFT_FEW_SHOT]


def _recipe(config, epochs):
  return recipes.Recipe(config.min_steps, config.batch_size, config.learning_rate, epochs)


def _run_dir(config, seed, method, fraction):
  return os.path.join(config.output_dir, f"seed{seed}", method, f"{fraction}pct")


def fine_tune(config, domain, fraction, seed, model, out):
  """BERT (S) on one domain from `model`."""
  train = split_path(config, domain, "train", fraction)
  grid.reuse_or_run(out, lambda: finetune_job.run_job(finetune_job.FinetuneJob(
      output_dir=out, train_path=train, eval_path=split_path(config, domain, config.eval_split),
      bert_model=model, max_seq_length=config.max_seq_length, precision=config.precision,
      train=_recipe(config, config.epochs).config(readers.read_examples(train), seed))))
  grid.drop_checkpoints(out, config.keep_checkpoints)


def multidomain(config, method, fraction, seed, out, epochs, eval_data=None):
  """Trains `method`'s multi-domain stage on every domain; returns its results."""
  train = split_path(config, None, "train", fraction)
  return grid.reuse_or_run(out, lambda: multidomain_job.run_multidomain_job(
      multidomain_job.MultiDomainJob(
          output_dir=out, data=train, eval_data=eval_data, method=method.multidomain,
          bert_model=config.bert_model, max_seq_length=config.max_seq_length,
          precision=config.precision,
          train=_recipe(config, epochs).config(readers.read_examples(train), seed),
          adversarial_weight=config.adversarial_weight,
          mft=mft_config(config, method.mft_variant, seed))))


def run_cell(config, cell):
  seed, name, fraction = cell.key
  method = methods_lib.MFT[name]
  run_dir = _run_dir(config, seed, name, fraction)
  os.makedirs(run_dir, exist_ok=True)
  if method.scored_by_stage:
    out = os.path.join(run_dir, "multi")
    multidomain(config, method, fraction, seed, out, config.epochs,
                eval_data=split_path(config, None, config.eval_split))
    grid.drop_checkpoints(out, config.keep_checkpoints)
    return
  model = config.bert_model
  pending = [d for d in domains(config)
             if not os.path.exists(os.path.join(run_dir, d, "results.json"))]
  stage_dir = os.path.join(run_dir, method.multidomain or "")
  if method.multidomain and pending:
    model = multidomain(config, method, fraction, seed, stage_dir, config.mft_epochs)["checkpoint"]
  for domain in domains(config):
    fine_tune(config, domain, fraction, seed, model, os.path.join(run_dir, domain))
  if method.multidomain:
    grid.drop_checkpoints(stage_dir, config.keep_checkpoints)


def cell_accuracies(config, cell):
  """{domain: accuracy} of a finished cell."""
  seed, name, fraction = cell.key
  run_dir = _run_dir(config, seed, name, fraction)
  if methods_lib.MFT[name].scored_by_stage:
    by_domain = grid.read_results(os.path.join(run_dir, "multi"))["eval"]["by_domain"]
    return {d: m["accuracy"] for d, m in by_domain.items()}
  return {d: grid.read_results(os.path.join(run_dir, d))["accuracy"] for d in domains(config)}


def tables(config, results):
  """Table 3 (methods x domains and their average, mean +- std over seeds) and the few-shot
  table (average over domains), each with the paired gains of MFT (Full) over its baselines."""
  names = domains(config)
  label = {m: methods_lib.MFT[m].label for m in config.methods}
  runs = {m: [r for (s, mm, f), r in sorted(results.items()) if mm == m and f == 100]
          for m in config.methods}
  table = {label[m]: {**{d: [r[d] for r in rs] for d in names},
                      "average": [sum(r.values()) / len(r) for r in rs]}
           for m, rs in runs.items() if rs}
  gains = {}
  for base in ("BERT (S)", "BERT (Mix)", "BERT (Mix) then S"):
    if "MFT (Full)" in table and base in table:
      gains.update(evaluation.paired_gains({"MFT (Full)": table["MFT (Full)"], base: table[base]},
                                           base))
  few = {label[m]: {f"{f}%": [sum(r.values()) / len(r) for (s, mm, ff), r in
                              sorted(results.items()) if mm == m and ff == f]
                    for f in config.fractions if f != 100}
         for m in methods_lib.MFT_FEW_SHOT if m in config.methods}
  few = {m: cols for m, cols in few.items() if cols and all(cols.values())}
  if len(few) == 2:
    few.update(evaluation.paired_gains(few, "BERT (S)"))
  return (evaluation.mean_std_summary({**table, **gains}),
          evaluation.mean_std_summary(few))


def report(config, cells_run):
  results = {cell.key: cell_accuracies(config, cell) for cell in cells_run}
  table3, few_shot = tables(config, results)
  io_utils.atomic_write_json(os.path.join(config.output_dir, "summary.json"),
                             {"table3": table3, "few_shot": few_shot})
  seeds = ",".join(map(str, config.seeds))
  text = (f"Accuracy on {config.eval_split} (%), mean +- std over seeds {seeds}\n\n"
          + (evaluation.markdown_table(table3, domains(config) + ["average"]) if table3 else "")
          + ("\nFew-shot (average over domains)\n\n"
             + evaluation.markdown_table(few_shot, list(next(iter(few_shot.values()))))
             if few_shot else ""))
  io_utils.atomic_write_text(os.path.join(config.output_dir, "results.md"), text)
  return text
