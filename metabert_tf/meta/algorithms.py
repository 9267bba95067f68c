"""The meta-learning algorithms by name: each name's module (its meta-learner) and its Config
with that name's defaults (LEOPARD, SMLMT and Hybrid-SMLMT share one module and differ in
their Configs), and the fine-tuning recipe a checkpoint of each calls for."""
import dataclasses
from typing import Optional

from metabert_tf import leopard_finetune
from metabert_tf.errors import ConfigError
from metabert_tf.meta import base
from metabert_tf.meta import fomaml
from metabert_tf.meta import leopard
from metabert_tf.meta import mt_bert
from metabert_tf.meta import protonet
from metabert_tf.meta import reptile


@dataclasses.dataclass(frozen=True)
class Entry:
  name: str
  module: object        # NAME, Config, ENGINE_DEFAULTS, Algorithm (base.py's interface)
  config: type          # the Config of this name (its defaults)
  by_sources: bool      # tasks from task sources (sources.py), not from domains (episodes.py)
  engine: Optional[dict] = None  # the engine settings it runs with by default (None: module's)

  @property
  def engine_defaults(self):
    return self.engine or self.module.ENGINE_DEFAULTS


REGISTRY = {e.name: e for e in (
    Entry("fomaml", fomaml, fomaml.Config, False),
    Entry("reptile", reptile, reptile.Config, False),
    Entry("leopard", leopard, leopard.Config, True),
    Entry("smlmt", leopard, leopard.SMLMTConfig, True),
    Entry("hybrid_smlmt", leopard, leopard.HybridSMLMTConfig, True),
    # FOMAML and Reptile with ProtoMAML's per-task head, on task sources (the LEOPARD benchmark)
    Entry("proto_fomaml", fomaml, fomaml.ProtoConfig, True, base.SOURCE_ENGINE_DEFAULTS),
    Entry("proto_reptile", reptile, reptile.ProtoConfig, True, base.SOURCE_ENGINE_DEFAULTS),
    Entry("proto_bert", protonet, protonet.Config, True),
    Entry("mt_bert", mt_bert, mt_bert.Config, True),
)}
NAMES = tuple(REGISTRY)
LEOPARD_FAMILY = tuple(n for n, e in REGISTRY.items() if e.module is leopard)


def get(name):
  if name not in REGISTRY:
    raise ConfigError(f"must be one of {', '.join(NAMES)}, got {name!r}", field="algorithm")
  return REGISTRY[name]


def reading(field):
  """The names whose Config has `field`."""
  return tuple(n for n, e in REGISTRY.items()
               if field in {f.name for f in dataclasses.fields(e.config)})


def make_config(name, **settings):
  """`name`'s Config from settings named as its fields; settings it has no field for, or
  None, are left out (one set of flags serves every algorithm)."""
  return config_from(get(name).config, **settings)


def config_from(config_class, **settings):
  fields = {f.name for f in dataclasses.fields(config_class)}
  return config_class(**{k: v for k, v in settings.items() if k in fields and v is not None})


def make(name, config=None):
  """The Algorithm object of `name`, from its Config (default: that name's defaults)."""
  entry = get(name)
  if config is not None and not isinstance(config, entry.config):
    raise ConfigError(f"{name} takes its own Config ({entry.config.__name__}), got "
                      f"{type(config).__name__}")
  return entry.module.Algorithm(config if config is not None else entry.config())


def finetune_recipe(metadata):
  """How to fine-tune a checkpoint of ours, from its metadata: the LEOPARD family's generated
  head and learned rates (the leopard_finetune module), or None (plain fine-tuning)."""
  if metadata.get("algorithm") in LEOPARD_FAMILY or metadata.get("head") == leopard_finetune.HEAD:
    return leopard_finetune
  return None
