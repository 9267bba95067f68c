"""The shipped flag files parse into the settings they say (a typo there would only show after
hours of a benchmark)."""
import os

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
