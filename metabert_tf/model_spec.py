"""What every job says about its model: the backbone, its tokenization, the labels, the
sequence length, the precision and the sentence representation (FinetuneJob, MetaJob and
MultiDomainJob all start from it)."""
import dataclasses
from typing import List, Optional


@dataclasses.dataclass(kw_only=True)
class ModelSpec:
  bert_model: str = "minilm-l6"        # run_finetune.py --bert_model: a name, dir or checkpoint
  do_lower_case: Optional[bool] = None  # None: what the model says
  label_list: Optional[List[str]] = None  # label ids by position; None: the model's, else sorted
  max_seq_length: int = 128
  precision: str = "fp32"              # or bf16 (Keras mixed_bfloat16)
  pooling: Optional[str] = None        # "pooler" or "mean"; None: the backbone's own
