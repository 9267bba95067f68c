"""Fine-tuning recipes of the protocols: one FinetuneConfig from steps, epochs and batch size,
or from the per-K table of the LEOPARD release (epochs and batch per class, times N)."""
import dataclasses
import math
from typing import Optional

from metabert_tf import leopard_finetune
from metabert_tf import training


@dataclasses.dataclass
class Recipe:
  """At least `epochs` passes and at least `steps` steps of `batch_size` (so small training
  sets get more epochs); with `per_k` ({K: [epochs per class, batch per class]}) those times the
  task's N classes instead."""
  steps: int = 50
  batch_size: int = 8
  learning_rate: float = 1e-4
  epochs: int = 1
  per_k: Optional[dict] = None

  def config(self, examples, seed, k=None):
    """The FinetuneConfig of a run on `examples` (LabeledExamples)."""
    batch_size, epochs = self.batch_size, self.epochs
    if self.per_k is not None:
      epochs, batch_size = leopard_finetune.epochs_and_batch(self.per_k[str(k)], examples)
    else:
      steps_per_epoch = max(1, math.ceil(len(examples) / batch_size))
      epochs = max(epochs, math.ceil(self.steps / steps_per_epoch))
    return training.FinetuneConfig(
        epochs=epochs, batch_size=batch_size, learning_rate=self.learning_rate, seed=seed,
        progress=False, save_every_steps=training.SAVE_AT_END_ONLY)
