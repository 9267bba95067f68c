"""metabert-tf: meta-learning BERT for few-shot text classification on TF2 / Model Garden."""
import os

# TensorFlow's C++ log lines on a CPU-only machine ("failed call to cuInit", oneDNN notes) read
# as failures to a new user; they are not. Keep them off the console unless asked for:
# TF_CPP_MIN_LOG_LEVEL=0 shows them all (set before TensorFlow is first imported).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__version__ = "0.1.0"


# The Python API (api.py), imported on first use: `import metabert_tf.errors` and the command-line
# programs do not pay for it.
__all__ = ["FewShotClassifier", "meta_train"]


def __getattr__(name):
  if name in __all__:
    from metabert_tf import api
    return getattr(api, name)
  raise AttributeError(f"module 'metabert_tf' has no attribute {name!r}")
