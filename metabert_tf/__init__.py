"""metabert-tf: meta-learning BERT for few-shot text classification on TF2 / Model Garden."""
import os

# TensorFlow's C++ log lines on a CPU-only machine ("failed call to cuInit", oneDNN notes) read
# as failures to a new user; they are not. Keep them off the console unless asked for:
# TF_CPP_MIN_LOG_LEVEL=0 shows them all (set before TensorFlow is first imported).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__version__ = "0.1.0"
