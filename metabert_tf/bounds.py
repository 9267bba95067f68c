"""The bounds of every numeric and list setting, by its name, in one place: the command-line
programs check their flags against them (flag_rules.py) and the Python API its keyword
arguments (api.py), with the same words: `learning_rate must be a finite number > 0, got -1`.
"""
import dataclasses
import math
from typing import Optional


@dataclasses.dataclass(frozen=True)
class Number:
  """low < value (or <=, with low_inclusive) and value <= high; finite; an integer if `integer`."""
  low: Optional[float] = None
  high: Optional[float] = None
  low_inclusive: bool = True
  integer: bool = False

  def problem(self, value):
    if value is None:
      return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      return f"must be a number, got {value!r}"
    if not math.isfinite(value):
      return f"must be a finite number, got {value}"
    if self.integer and value != int(value):
      return f"must be an integer, got {value}"
    too_low = self.low is not None and (value < self.low if self.low_inclusive
                                        else value <= self.low)
    if too_low or (self.high is not None and value > self.high):
      return f"must be {self.describe()}, got {value:g}"
    return None

  def describe(self):
    low = None if self.low is None else f"{'>=' if self.low_inclusive else '>'} {self.low:g}"
    high = None if self.high is None else f"<= {self.high:g}"
    return " and ".join(x for x in (low, high) if x) or "a number"

  def bad_values(self):
    """Values this rule refuses (what the tests try)."""
    out = [float("nan"), float("inf")] if not self.integer else []
    if self.low is not None:
      out.append(self.low - 1 if self.low_inclusive else self.low)
    if self.high is not None:
      out.append(self.high + 1)
    return out


@dataclasses.dataclass(frozen=True)
class Items:
  """A comma-separated list: no empty and no repeated items; each item a Number when given."""
  each: Optional[Number] = None

  def problem(self, values):
    if values is None:
      return None
    values = [str(v).strip() for v in values]
    if any(not v for v in values):
      return f"has an empty item: {','.join(values)!r}"
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
      return f"lists {', '.join(repeated)} more than once"
    if self.each is not None:
      for v in values:
        try:
          number = float(v) if not self.each.integer else int(v)
        except ValueError:
          kind = "integers" if self.each.integer else "numbers"
          return f"must be comma-separated {kind}, got {v!r}"
        problem = self.each.problem(number)
        if problem:
          return f"item {v}: {problem}"
    return None

  def bad_values(self):
    out = [["a", "a"], ["a", ""]]
    if self.each is not None:
      out += [[str(int(v) if self.each.integer else v)] for v in self.each.bad_values()]
      out.append(["x"])
    return out


POSITIVE = Number(0, low_inclusive=False)          # learning rates, step sizes, timeouts
NON_NEGATIVE = Number(0)                           # loss weights
PROBABILITY = Number(0, 1)                         # shares, mixing weights
COUNT = Number(1, integer=True)                    # sizes, steps, epochs, ...
INDEX = Number(0, integer=True)                    # seeds, split numbers, 0 = off
SEQ_LENGTH = Number(8, integer=True)               # [CLS] a [SEP] b [SEP] with a few tokens each

RULES = {
    # learning rates and step sizes
    **dict.fromkeys(["learning_rate", "inner_update_lr", "outer_update_lr", "train_lr",
                     "meta_learning_rate", "timeout", "leopard_epochs_scale"], POSITIVE),
    "reptile_epsilon": Number(0, 1, low_inclusive=False),
    # loss weights and shares
    **dict.fromkeys(["mft_lambda", "adversarial_weight"], NON_NEGATIVE),
    **dict.fromkeys(["mft_alpha", "pretrain_task_weight"], PROBABILITY),
    # counts
    **dict.fromkeys(["batch_size", "eval_batch_size", "epochs", "steps", "k", "splits",
                     "num_train_task", "num_support", "num_query", "outer_batch_size",
                     "inner_batch_size", "inner_update_step", "num_domain",
                     "average_query_every", "label_emb_size", "mft_prototypes", "min_steps",
                     "mft_epochs", "meta_epochs", "test_size", "num_splits", "tasks_per_n",
                     "sentences_per_word", "min_count", "max_count", "repeats",
                     "export_batch_size", "export_examples", "inference_batch_size",
                     "inference_examples", "tasks_per_step", "profile_steps", "top", "meta_tasks",
                     "pool_examples"], COUNT),
    **dict.fromkeys(["meta_batchsz", "num_batches", "task_size"], Number(2, integer=True)),
    "SGD_K": Number(1, 1, integer=True),  # only one learned rate per group is supported
    **dict.fromkeys(["max_seq_length", "meta_max_seq_length"], SEQ_LENGTH),
    # indices and "0 = off" counts
    **dict.fromkeys(["seed", "split", "save_every_steps", "num_test_task",
                     "inner_update_step_eval", "tasks_per_replica", "max_examples_per_source",
                     "min_layer_with_grad", "shots", "bucket", "run_cell", "meta_seed"], INDEX),
    # lists
    **dict.fromkeys(["ks", "epoch_choices"], Items(COUNT)),
    "epochs_scales": Items(POSITIVE),
    "seeds": Items(INDEX),
    "fractions": Items(Number(1, 100, integer=True)),
    "corruption_layers": Items(COUNT),
    "num_classes": Items(Number(2, integer=True)),
    **dict.fromkeys(["label_list", "tasks", "test_domains", "held_out", "methods", "precisions",
                     "algorithms", "smlmt_data", "sources", "meta_tasks_by_method"], Items()),
}
# data_prep.kshot's --k is a list of K values; run_finetune.py's --k one K (and the like).
LIST_RULES = {"k": Items(COUNT),
              # benchmarks/leopard_task_throughput.py
              "min_layer_with_grad": Items(INDEX), "num_batches": Items(Number(2, integer=True))}
