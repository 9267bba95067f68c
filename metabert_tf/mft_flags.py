"""MFT's absl flags, for the entry point that trains MFT (run_multidomain.py), read into an
mft.MFTConfig in one place."""
import sys

from absl import flags

from metabert_tf import mft


def define():
  """Defines the flags as the calling entry point's own: absl files them under sys.argv[0], so
  --help lists them with the script and hyparams.txt records them."""
  owner = dict(module_name=sys.argv[0])
  flags.DEFINE_float("mft_alpha", 0.5, "Weight of the own-domain prototype in the typicality.",
                     **owner)
  flags.DEFINE_integer("mft_prototypes", 1, "Prototypes per domain and class (k-means when > 1).", **owner)
  flags.DEFINE_float("mft_lambda", 0.1, "Weight of the domain-corruption loss.", **owner)
  flags.DEFINE_list("corruption_layers", None, "1-based layers whose features the corruption "
                    "loss reaches; default: three evenly spaced ending at the top (2,4,6 of 6).",
                    **owner)
  flags.DEFINE_enum("mft_typicality", "paper", ["paper", "easytransfer"], "paper: mean cosine to "
                    "the other domains' prototypes; easytransfer: cosine to their mean.", **owner)
  flags.DEFINE_bool("mft_shared_domain_classifier", False, "One domain classifier for every "
                    "corruption layer (EasyTransfer) instead of one per layer (paper).", **owner)
  flags.DEFINE_enum("mft_layer_mean", "tokens", list(mft.LAYER_MEANS), "tokens: mean of a "
                    "layer's token vectors without [CLS] and padding; all: every position "
                    "(EasyTransfer).", **owner)
  flags.DEFINE_bool("mft_weight_corruption", True, "Typicality-weight the corruption loss too "
                    "(paper); EasyTransfer does not.", **owner)


def config(variant, seed):
  """The MFTConfig the flags describe, for `variant` (full, dc, tw) and `seed`."""
  f = flags.FLAGS
  return mft.MFTConfig(
      variant=variant, alpha=f.mft_alpha, num_prototypes=f.mft_prototypes,
      corruption_weight=f.mft_lambda, typicality_formula=f.mft_typicality,
      corruption_layers=[int(x) for x in f.corruption_layers or []] or None,
      shared_domain_classifier=f.mft_shared_domain_classifier, layer_mean=f.mft_layer_mean,
      weight_corruption=f.mft_weight_corruption, seed=seed)
