"""Readers, writers and split builders for labeled text (see README, "Data")."""
import metabert_tf  # noqa: F401,E402  (its import keeps TensorFlow's C++ log lines off the console)
