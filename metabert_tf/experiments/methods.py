"""The methods the protocols compare, as data: a name, its label in the tables, the stage that
makes its starting model (none: the backbone itself), and how it is scored.

A meta-learning stage names an algorithm of metabert_tf.meta.algorithms; a multi-domain
stage a method of multidomain_job (mix, mtl, adv, mft) and, for MFT, its variant. A method is
then fine-tuned with the protocol's recipe, unless `scored_by_stage` (its multi-domain model
is scored as it is, per domain).
"""
import dataclasses
from typing import Optional

from metabert_tf.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Method:
  name: str
  label: str
  meta_algorithm: Optional[str] = None   # a meta-training stage (Meta-BERT's experiment)
  multidomain: Optional[str] = None      # a multi-domain stage: mix, mtl, adv, mft
  mft_variant: str = "full"
  scored_by_stage: bool = False          # evaluated as the stage trained it, no fine-tuning
  head_init: str = "random"              # fine-tuning's dense head start (or "prototypes")
  frozen: Optional[str] = None           # no fine-tuning: frozen.py's classifier on features
  meta_of: Optional[str] = None          # the method whose meta-training it starts from (its own)
  leopard_head: bool = True              # a LEOPARD-family start: its generated head and rates
  note: str = ""                         # what the table should say of it

  @property
  def has_stage(self):
    return bool(self.meta_algorithm or self.multidomain)

  @property
  def stage_name(self):
    """Whose meta-training this method's is (methods that meet a new task in two ways share
    one)."""
    return self.meta_of or self.name


def _registry(*methods):
  return {m.name: m for m in methods}


# The LEOPARD protocol (leopard_kshot.py): how a model meets a new task's K examples.
LEOPARD = _registry(
    Method("fine-tuning", "fine-tuning"),
    Method("fine-tuning-proto", "fine-tuning (prototype head)", head_init="prototypes"),
    Method("frozen-lr", "frozen encoder + logistic regression", frozen="lr"),
    Method("frozen-prototypes", "frozen encoder + nearest class mean", frozen="prototypes"),
    # Meta-learned on the task sources (meta_stage.py), then met the new task as stated.
    Method("proto-bert", "Proto-BERT", meta_algorithm="proto_bert", frozen="euclidean",
           note="nearest class mean (Euclidean) of the meta-trained encoder, no fine-tuning"),
    Method("proto-bert-ft", "Proto-BERT, fine-tuned", meta_algorithm="proto_bert",
           meta_of="proto-bert", head_init="prototypes",
           note="Proto-BERT's encoder fine-tuned from its prototype head (an ablation)"),
    Method("mt-bert", "MT-BERT", meta_algorithm="mt_bert",
           note="multi-task encoder, fine-tuned with a new head"),
    Method("fomaml", "FOMAML (ProtoMAML head)", meta_algorithm="proto_fomaml",
           head_init="prototypes", note="per-task prototype head; fine-tuned from it"),
    Method("reptile", "Reptile (ProtoMAML head)", meta_algorithm="proto_reptile",
           head_init="prototypes", note="per-task prototype head; fine-tuned from it"),
    Method("leopard", "LEOPARD", meta_algorithm="leopard",
           note="generated head, SGD at the learned rates"),
    Method("leopard-encoder-ft", "LEOPARD's encoder, fine-tuned", meta_algorithm="leopard",
           meta_of="leopard", head_init="prototypes", leopard_head=False,
           note="LEOPARD's encoder fine-tuned plainly (AdamW) from a prototype head (an ablation)"),
    Method("smlmt", "SMLMT", meta_algorithm="smlmt", note="generated head, learned rates"),
    Method("hybrid-smlmt", "Hybrid-SMLMT", meta_algorithm="hybrid_smlmt",
           note="generated head, learned rates"),
)

# Meta-BERT's leave-one-domain-out experiment (meta_bert.py).
META_BERT = _registry(
    Method("bert", "BERT"),
    Method("fomaml", "FOMAML", meta_algorithm="fomaml"),
    Method("reptile", "Reptile", meta_algorithm="reptile"),
)

# MFT's Table 3 and its few-shot table (mft_table.py).
MFT = _registry(
    Method("bert_s", "BERT (S)"),
    Method("mix", "BERT (Mix)", multidomain="mix", scored_by_stage=True),
    Method("mtl", "BERT (MTL)", multidomain="mtl", scored_by_stage=True),
    Method("adv", "BERT (Adv)", multidomain="adv", scored_by_stage=True),
    Method("mft_dc", "MFT (DC)", multidomain="mft", mft_variant="dc"),
    Method("mft_tw", "MFT (TW)", multidomain="mft", mft_variant="tw"),
    Method("mft_full", "MFT (Full)", multidomain="mft", mft_variant="full"),
    Method("mix_s", "BERT (Mix) then S", multidomain="mix"),
)
MFT_FEW_SHOT = ("bert_s", "mft_full")


def check(registry, names, field="methods"):
  """The Method objects of `names`, or a ConfigError naming the unknown ones."""
  unknown = [n for n in names if n not in registry]
  if unknown:
    raise ConfigError(f"must be among {', '.join(registry)}; got {', '.join(unknown)}",
                      field=field)
  return [registry[n] for n in names]
