"""Fine-tuning recipes of the protocols: one FinetuneConfig from steps, epochs and batch size,
or from the per-K table of the LEOPARD release (epochs and batch per class, times N)."""
import dataclasses
import json
import math
import os
from typing import Optional

from metabert_tf import training
from metabert_tf.errors import DataError


@dataclasses.dataclass
class Recipe:
  """At least `epochs` passes and at least `steps` steps of `batch_size` (so small training
  sets get more epochs); with `per_k` ({K: [epochs per class, batch per class]}) those times the
  task's N classes instead, the epochs first scaled by `epochs_scale` (rounded up: a CPU-sized
  share of the LEOPARD release's 150N-200N epochs)."""
  steps: int = 50
  batch_size: int = 8
  learning_rate: float = 1e-4
  epochs: int = 1
  per_k: Optional[dict] = None
  epochs_scale: float = 1.0

  def config(self, examples, seed, k=None):
    """The FinetuneConfig of a run on `examples` (LabeledExamples)."""
    batch_size, epochs = self.batch_size, self.epochs
    if self.per_k is not None:
      per_class_epochs, per_class_batch = self.per_k[str(k)]
      scaled = max(1, math.ceil(per_class_epochs * self.epochs_scale - 1e-9))
      epochs, batch_size = epochs_and_batch([scaled, per_class_batch], examples)
    else:
      steps_per_epoch = max(1, math.ceil(len(examples) / batch_size))
      epochs = max(epochs, math.ceil(self.steps / steps_per_epoch))
    return training.FinetuneConfig(
        epochs=epochs, batch_size=batch_size, learning_rate=self.learning_rate, seed=seed,
        progress=False, save_every_steps=training.SAVE_AT_END_ONLY)


def read_per_k_config(path, method, ks, flag="per_k_config"):
  """{K: [epochs per class, batch per class]} of `method` in the JSON at `path` (None: none);
  `flag`: the setting that named the file (in errors)."""
  if not path:
    return None
  if not os.path.isfile(path):
    raise DataError(path, f"file not found (--{flag})")
  with open(path, encoding="utf-8") as f:
    try:
      config = json.load(f)
    except json.JSONDecodeError as e:
      raise DataError(path, f"malformed JSON at line {e.lineno}, column {e.colno}: "
                      f"{e.msg}") from None
  if not isinstance(config, dict):
    raise DataError(path, "expected a JSON object {method: {K: [epochs, batch] per class}}")
  if method not in config:
    what = f"--per_k_method {method!r}" if flag == "per_k_config" else repr(method)
    raise DataError(path, f"no settings for {what} (have "
                    f"{sorted(k for k in config if not k.startswith('_'))})")
  if not isinstance(config[method], dict):
    raise DataError(path, f"{method} must be an object {{K: [epochs, batch size] per class}}, "
                    f"got {config[method]!r}")
  missing = [k for k in ks if str(k) not in config[method]]
  if missing:
    raise DataError(path, f"{method} has no settings for K = {missing}")
  for k in ks:
    entry = config[method][str(k)]
    if not (isinstance(entry, list) and len(entry) == 2
            and all(isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in entry)):
      raise DataError(path, f"{method}.{k} must be [epochs, batch size] per class, two integers "
                      f">= 1, got {entry!r}")
  return config[method]


def epochs_and_batch(per_class, examples):
  """(epochs, batch size): a per-K config entry [epochs, batch per class] times the N classes
  of the training `examples`."""
  classes = len({e.label for e in examples})
  return per_class[0] * classes, per_class[1] * classes
