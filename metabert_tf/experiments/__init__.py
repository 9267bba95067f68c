"""Experiments as data: each protocol is a config dataclass, its cells and its report, run on
one grid (grid.py); methods are registered data (methods.py); fine-tuning recipes in one place
(recipes.py). `python -m metabert_tf.experiments --protocol NAME ...` runs one (NAME: leopard,
meta_bert, mft, finetune_rule); from Python,
`grid.run(protocol_module, protocol_module.Config(...))`."""
from metabert_tf.experiments import finetune_rule
from metabert_tf.experiments import leopard_kshot
from metabert_tf.experiments import meta_bert
from metabert_tf.experiments import mft_table

PROTOCOLS = {m.NAME: m for m in (leopard_kshot, meta_bert, mft_table, finetune_rule)}
