#!/usr/bin/env bash
# `make demo`: Meta-BERT at CPU size. FOMAML meta-trains the default backbone on three Amazon
# review domains; plain BERT and the meta-learned model then adapt to the fourth (books): fine-tuned
# on 80 examples and on K = 4, 8, 16 per label, and zero-shot. Prints both side by side.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
DATA_DIR=${DATA_DIR:-data}
MDS=$DATA_DIR/blitzer_mds_4domain
CONFIG=configs/demo_meta_bert.cfg
OUT=${DEMO_OUT:-output/demo_meta_bert}
export TF_CPP_MIN_LOG_LEVEL=3  # the demo's console: progress and results, not TF's C++ chatter

find_reviews() {
  if [ ! -d "$MDS/books" ] && [ -d "$MDS/sorted_data_acl/books" ]; then
    MDS=$MDS/sorted_data_acl  # the layout data_prep.download extracts
  fi
}
find_reviews
if [ ! -d "$MDS/books" ]; then
  # No ../shared here: fetch the reviews (one archive, its sha256 recorded beside it) when online.
  echo "== $MDS/books not found: downloading the Amazon multi-domain reviews into $MDS"
  if $PY -m data_prep.download amazon_reviews --dest "$MDS" ${AMAZON_REVIEWS_URL:+--url="$AMAZON_REVIEWS_URL"}; then
    find_reviews
  fi
fi
if [ ! -d "$MDS/books" ]; then
  echo "error: $MDS/books not found. Put the Amazon multi-domain reviews (books, dvd, electronics," >&2
  echo "       kitchen) under $MDS ($PY -m data_prep.download amazon_reviews --dest $MDS)" >&2
  echo "       or set DATA_DIR." >&2
  exit 1
fi

# bf16 (section 4's precision) only on a CPU with bf16 instructions: on others (AVX2, AVX-512
# without bf16) it runs many times slower than fp32 (docs/results.md, section 8)
PRECISION=${DEMO_PRECISION:-$(grep -qwE 'avx512_bf16|amx_bf16' /proc/cpuinfo 2>/dev/null && echo bf16 || echo fp32)}
OUT=$OUT-$PRECISION  # a run of the other precision is not resumed as this one
echo "== Meta-BERT demo: $CONFIG, $PRECISION (output: $OUT; finished runs there are reused)"
$PY -m metabert_tf.experiments --protocol meta_bert --flagfile="$CONFIG" --data="$MDS" --output_dir="$OUT" \
    --precision="$PRECISION" --stderrthreshold=error > /dev/null  # its table (mean +- std) is in $OUT/results.md
$PY - "$OUT" <<'PYEOF'
import json, sys
summary = json.load(open(f"{sys.argv[1]}/summary.json"))
names = {"zero": "zero-shot", "n80": "80 examples", "k4": "K=4 per label", "k8": "K=8 per label",
         "k16": "K=16 per label"}
print("\nheld-out domain: books (1000 test reviews), accuracy %\n")
print(f"{'setting':<16}{'BERT':>8}{'Meta-BERT':>11}{'gain':>8}")
for setting in sorted(summary["bert"], key=lambda s: list(names).index(s) if s in names else 9):
  bert, meta = summary["bert"][setting]["mean"], summary["fomaml"][setting]["mean"]
  gain = summary["fomaml - bert"][setting]["mean"]
  print(f"{names.get(setting, setting):<16}{100 * bert:>8.1f}{100 * meta:>11.1f}{100 * gain:>+8.1f}")
print("\nOne domain, one seed: single runs move by several points. Mean +- std over the four\n"
      "held-out domains and seeds: docs/results.md, section 4 (python -m metabert_tf.experiments --protocol meta_bert).")
PYEOF
