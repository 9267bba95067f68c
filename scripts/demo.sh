#!/usr/bin/env bash
# `make demo`: fine-tune the default backbone on one LEOPARD k-shot task, print its accuracy,
# export it as a SavedModel that takes raw text, and predict a few sentences with it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
DATA_DIR=${DATA_DIR:-data}
LEOPARD=$DATA_DIR/leopard/json
OUT=${DEMO_OUT:-output/demo}
export TF_CPP_MIN_LOG_LEVEL=3  # the demo's console: progress and results, not TF's C++ chatter

if [ ! -d "$LEOPARD/sentiment_books" ]; then
  echo "error: $LEOPARD/sentiment_books not found. Put the LEOPARD data under $DATA_DIR/leopard" >&2
  echo "       (python -m data_prep.download leopard --dest $DATA_DIR/leopard) or set DATA_DIR." >&2
  exit 1
fi

echo "== 1/2 fine-tune minilm-l6 on sentiment_books, K=16 per label, split 0 (output: $OUT)"
$PY run_finetune.py --flagfile=configs/demo_finetune.cfg --data_dir="$LEOPARD" \
    --output_dir="$OUT" --overwrite_output_dir

echo "== 2/2 predict raw sentences with the exported SavedModel ($OUT/export)"
cat > "$OUT/demo_sentences.txt" <<'TXT'
This book was a page-turner, I could not put it down.
Dull, predictable and far too long. I gave up halfway.
The author's research is impressive and the writing is clear.
I want my money back.
TXT
$PY -m metabert_tf.predict --model_dir="$OUT/export" --input="$OUT/demo_sentences.txt" \
    --output="$OUT/demo_predictions.jsonl" --noprogress
$PY - "$OUT" <<'PYEOF'
import json, sys
out = sys.argv[1]
results = json.load(open(f"{out}/results.json"))
print(f"\naccuracy on {results['eval_file']} ({results['num_examples']} examples): "
      f"{100 * results['accuracy']:.1f}%  (macro-F1 {100 * results['macro_f1']:.1f}%)")
for row in map(json.loads, open(f"{out}/demo_predictions.jsonl")):
  print(f"  {row['label']:>8}  p={max(row['probabilities']):.2f}  {row['text']}")
PYEOF
