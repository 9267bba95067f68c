"""Alias of `python -m metabert_tf.experiments --protocol mft`, kept for one release (see
metabert_tf/experiments/). `python -m metabert_tf.mft_experiment ...` takes the same flags."""

if __name__ == "__main__":
  from metabert_tf.experiments import __main__ as experiments_cli
  experiments_cli.run_as("mft")
