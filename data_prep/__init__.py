"""The data commands (docs/data.md): k-shot splits, SMLMT tasks, tf_records, MFT splits, downloads."""
import metabert_tf  # noqa: F401,E402  (its import keeps TensorFlow's C++ log lines off the console)
