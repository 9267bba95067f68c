"""The MFT experiment: the paper's Amazon splits, and the grid at toy scale (tables, reuse)."""
import functools
import json
import os

import pytest

from data_prep import mft_splits
from metabert_tf.errors import ConfigError
from metabert_tf.experiments import grid
from metabert_tf.experiments import mft_table
from tests import tiny_models


def test_amazon_splits_have_the_paper_sizes_and_are_reproducible(tmp_path, shared_dir):
  data = shared_dir / "data" / "blitzer_mds_4domain"
  counts = mft_splits.write_splits(str(data), str(tmp_path / "a"), seed=0)
  for domain, (train, dev, test) in mft_splits.PAPER_SIZES.items():
    assert [counts[f"{domain}/{s}"] for s in ("train", "dev", "test")] == [train, dev, test]
    assert counts[f"{domain}/train_5pct"] == round(train * 0.05)
  rows = {s: [json.loads(l) for l in open(tmp_path / "a" / "books" / f"{s}.jsonl")]
          for s in ("train", "dev", "test", "train_10pct")}
  texts = {s: {r["text"] for r in rs} for s, rs in rows.items()}
  # Disjoint but for reviews the source itself holds twice.
  every = [r["text"] for s in ("train", "dev", "test") for r in rows[s]]
  twice = {t for t in every if every.count(t) > 1}
  assert len(every) == 2000 and len(twice) < 60  # 43 in books: the source repeats reviews
  assert not (texts["train"] & texts["dev"]) - twice and not (texts["train"] & texts["test"]) - twice
  assert rows["train_10pct"] == rows["train"][:176]  # nested: a prefix of the training set
  assert {r["domain"] for r in rows["dev"]} == {"books"}
  assert sum(1 for _ in open(tmp_path / "a" / "all_train.jsonl")) == 7000
  mft_splits.write_splits(str(data), str(tmp_path / "b"), seed=0)
  for name in ("all_train.jsonl", "kitchen/test.jsonl", "dvd/train_5pct.jsonl"):
    assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def _toy_splits(directory):
  examples = tiny_models.toy_domain_examples(domains=("a", "b"), per_domain=24)
  os.makedirs(directory)
  counts = {}
  for split, part in (("train", slice(0, 16)), ("train_50pct", slice(0, 8)),
                      ("test", slice(16, 24))):
    rows = {d: [e for e in examples if e.domain == d][part] for d in ("a", "b")}
    for d, rs in rows.items():
      os.makedirs(os.path.join(directory, d), exist_ok=True)
      with open(os.path.join(directory, d, f"{split}.jsonl"), "w") as f:
        f.write("".join(json.dumps({"text": e.text_a, "label": e.label, "domain": d}) + "\n"
                        for e in rs))
      counts[f"{d}/{split}"] = len(rs)
    with open(os.path.join(directory, f"all_{split}.jsonl"), "w") as f:
      f.write("".join(json.dumps({"text": e.text_a, "label": e.label, "domain": e.domain}) + "\n"
                      for rs in rows.values() for e in rs))
  with open(os.path.join(directory, "splits.json"), "w") as f:
    json.dump({"seed": 0, "counts": counts}, f)


@pytest.mark.slow
def test_experiment_grid_tables_and_reuse(tmp_path, tiny_google_dir):
  _toy_splits(str(tmp_path / "data"))
  out = tmp_path / "out"
  # In this process, through the library (cells in children: the LEOPARD protocol's test).
  config = functools.partial(
      mft_table.Config, data_dir=str(tmp_path / "data"), output_dir=str(out), seeds=[0],
      bert_model=tiny_google_dir, max_seq_length=16, epochs=1, min_steps=2, batch_size=8,
      learning_rate=1e-3, precision="fp32", process_per_cell=False)
  grid.run(mft_table, config(methods=["bert_s", "mft_full"], fractions=[100]))
  assert (out / "seed0/mft_full/100pct/mft/typicality.json").exists()
  assert not (out / "seed0/mft_full/100pct/a/ckpt").exists()  # dropped unless kept
  for result in out.glob("seed0/*/100pct/*/results.json"):
    os.utime(result, (0, 0))
  text = grid.run(mft_table, config(methods=["bert_s", "mix", "mft_full", "mix_s"],
                                    fractions=[100, 50]))
  reused = [r for m in ("bert_s", "mft_full")
            for r in out.glob(f"seed0/{m}/100pct/[ab]/results.json")]
  assert len(reused) == 4 and all(r.stat().st_mtime == 0 for r in reused)
  summary = json.load(open(out / "summary.json"))
  assert set(summary["table3"]) == {
      "BERT (S)", "BERT (Mix)", "MFT (Full)", "BERT (Mix) then S", "MFT (Full) - BERT (S)",
      "MFT (Full) - BERT (Mix)", "MFT (Full) - BERT (Mix) then S"}
  assert (out / "seed0/mix_s/100pct/mix/results.json").exists()  # its multi-domain stage
  accuracy = json.load(open(out / "seed0/bert_s/100pct/a/results.json"))["accuracy"]
  assert summary["table3"]["BERT (S)"]["a"]["accuracies"] == [accuracy]
  assert set(summary["few_shot"]) == {"BERT (S)", "MFT (Full)", "MFT (Full) - BERT (S)"}
  table = (out / "results.md").read_text()
  assert "| MFT (Full) - BERT (Mix) |" in table and "50%" in table
  assert text == table
  # The EasyTransfer options are settings of the run: another one is refused, not mixed in.
  with pytest.raises(ConfigError, match=r"other settings \(mft_typicality"):
    grid.run(mft_table, config(methods=["mft_full"], fractions=[100],
                               mft_typicality="easytransfer"))
