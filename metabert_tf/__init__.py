"""metabert-tf: meta-learning BERT for few-shot text classification on TF2 / Model Garden."""
__version__ = "0.1.0"
