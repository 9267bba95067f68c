"""The shipped flag files parse into the settings they say (a typo there would only show after
hours of a benchmark)."""
import os
import subprocess

from absl import flags

from metabert_tf.experiments import PROTOCOLS
from metabert_tf.experiments import __main__ as experiments_cli
from metabert_tf.experiments import methods
from tests.conftest import REPO_DIR


def _experiment_config(flagfile, *argv):
  values = flags.FlagValues()
  experiments_cli.define_flags(flag_values=values)
  values(["experiments", *argv, f"--flagfile={flagfile}", "--output_dir=unused"])
  protocol = PROTOCOLS[values.protocol]
  return protocol, experiments_cli.config_from_flags(protocol, values)


def test_the_leopard_benchmark_flag_file_names_every_method_once():
  protocol, config = _experiment_config(os.path.join(REPO_DIR, "configs", "leopard_benchmark.cfg"))
  assert protocol.NAME == "leopard"
  assert sorted(config.methods) == sorted(methods.LEOPARD)  # every method, each once
  assert config.meta_tasks >= 1 and config.smlmt_data and config.leopard_per_k_config
  for path in (config.leopard_per_k_config,):
    assert os.path.exists(os.path.join(REPO_DIR, path)), path


def test_the_demo_flag_file_is_meta_berts():
  protocol, config = _experiment_config(os.path.join(REPO_DIR, "configs", "demo_meta_bert.cfg"),
                                        "--protocol=meta_bert")  # as scripts/demo.sh runs it
  assert protocol.NAME == "meta_bert" and config.held_out == ["books"]


def test_the_demo_without_data_tries_the_download_then_says_what_to_do(tmp_path):
  # A URL nothing listens on: the download fails at once, as it does offline.
  env = {**os.environ, "DATA_DIR": str(tmp_path), "AMAZON_REVIEWS_URL": "http://127.0.0.1:9/x.tgz"}
  proc = subprocess.run(["bash", "scripts/demo.sh"], cwd=REPO_DIR, env=env, capture_output=True,
                        text=True, timeout=120)
  assert proc.returncode == 1
  assert "downloading the Amazon multi-domain reviews" in proc.stdout
  assert "error: could not download http://127.0.0.1:9/x.tgz" in proc.stderr
  assert "data_prep.download amazon_reviews --dest" in proc.stderr and "DATA_DIR" in proc.stderr
