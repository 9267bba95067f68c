"""The one in-memory record every reader produces."""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence


@dataclasses.dataclass(frozen=True)
class LabeledExample:
  """One labeled text (or text pair).

  `label` is a string (LEOPARD "positive", Amazon "positive", a rating "5", ...); label ids are
  assigned later from a label map, never by the reader. It is None only for text read to be
  predicted (`read_examples(..., require_label=False)`) that has no label.
  `domain` is the domain/task name for multi-domain data, else None.
  `input_ids`/`segment_ids` are set only by readers of already-encoded data (the original
  LEOPARD tf_records, whose text is not recoverable without their cased vocabulary).
  """
  text_a: Optional[str]
  label: Optional[str]
  text_b: Optional[str] = None
  domain: Optional[str] = None
  input_ids: Optional[Sequence[int]] = None
  segment_ids: Optional[Sequence[int]] = None
  # Where the reader found it ("line 3", "record 2 (0-based)"), for messages; not compared.
  where: Optional[str] = dataclasses.field(default=None, compare=False)

  @property
  def is_encoded(self) -> bool:
    return self.input_ids is not None
