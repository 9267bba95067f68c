"""The fine-tuning rule is chosen on k-shot splits of the meta-training sources, never on the
LEOPARD eval files: splits written from a seeded sample, one run per (rule, source, K, split),
the best mean accuracy chosen (ties: fewer epochs)."""
import json
import os

import pytest

from metabert_tf.errors import ConfigError
from metabert_tf.experiments import finetune_rule
from metabert_tf.experiments import grid


def _config(tmp_path, model_dir, shared_dir, **overrides):
  return finetune_rule.Config(**{**dict(
      output_dir=str(tmp_path / "out"), meta_train_dir=os.path.join(shared_dir, "data",
                                                                    "meta_train"),
      sources=["sst2", "agnews"], ks=[2], splits=1, pool_examples=40, epoch_choices=[1, 3],
      steps=1, batch_size=2, bert_model=model_dir, max_seq_length=16, precision="fp32",
      process_per_cell=False), **overrides})


@pytest.mark.slow
def test_rules_are_scored_on_held_out_examples_of_the_sources(tmp_path, tiny_google_dir,
                                                              shared_dir):
  config = _config(tmp_path, tiny_google_dir, shared_dir)
  table = grid.run(finetune_rule, config)
  out = tmp_path / "out"
  train = json.load(open(out / "data/agnews/agnews_train_0_2.json"))
  evals = json.load(open(out / "data/agnews/agnews_eval.json"))
  assert len(train) == 8 and len(evals) == 40 - 8  # 2 per label of AG News' 4; the rest
  assert not {r["sentence1"] for r in train} & {r["sentence1"] for r in evals}
  # >= 1 step and >= E epochs of batch 2 over 8 examples: 4 steps per epoch
  for epochs in (1, 3):
    run = json.load(open(out / f"runs/agnews_k2_s0_epochs{epochs}/results.json"))
    assert run["train_config"]["epochs"] == epochs and run["num_examples"] == 32
  # SST-2's 4 examples: 2 steps per epoch; >= 1 step gives 1 epoch for E = 1, so two runs
  assert len(list(out.glob("runs/sst2_k2_s0_*"))) == 2
  summary = json.load(open(out / "summary.json"))
  means = {e: sum(s["mean"] for s in cells.values()) / 2 for e, cells in summary["rules"].items()}
  assert summary["chosen_epochs"] == max((1, 3), key=lambda e: (means[str(e)], -e))
  assert f"chosen: --epochs {summary['chosen_epochs']} (with --steps 1)" in table
  assert "| >= 1 steps, >= 3 epochs |" in table


def test_ties_go_to_the_cheaper_rule_and_bad_settings_fail_early(tmp_path):
  stats = lambda m: {"a K=4": {"mean": m}}  # noqa: E731
  assert finetune_rule.choose({1: stats(0.7), 10: stats(0.7), 30: stats(0.6)})[0] == 1
  assert finetune_rule.choose({1: stats(0.6), 10: stats(0.7)})[0] == 10
  for overrides, field in [(dict(sources=["imdb"]), "sources"),
                           (dict(epoch_choices=[0]), "epoch_choices"),
                           (dict(pool_examples=10, ks=[16]), "pool_examples"),
                           (dict(meta_train_dir=str(tmp_path)), "meta_train_dir")]:
    config = finetune_rule.Config(output_dir=str(tmp_path / "o"), **overrides)
    with pytest.raises(ConfigError) as raised:
      finetune_rule.check(config)
    assert raised.value.field == field
