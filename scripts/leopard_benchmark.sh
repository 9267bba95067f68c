#!/usr/bin/env bash
# The LEOPARD benchmark (docs/results.md, section 8), resumable: re-run it to go on from the
# finished runs. Makes the SMLMT task files once (seeded: the same files on any machine), runs
# configs/leopard_benchmark.cfg at low priority, then copies every finished run to
# docs/measurements/leopard_benchmark.json and writes the report beside it. A new output dir
# starts from that committed file: its runs are kept, not re-run (leopard_kshot.recorded).
#   OUT=results/leopard_benchmark bash scripts/leopard_benchmark.sh [more flags for the grid]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
M=../shared/data/meta_train
OUT=${OUT:-results/leopard_benchmark}
# meta_pretrain_5.json is the last file data_prep.smlmt writes: a cut-short run is re-done
if [ ! -f results/smlmt/meta_pretrain_5.json ]; then
  # SMLMT tasks from the texts of the six labeled sources: N = 2..5, 250 tasks each
  nice -n 19 $PY -m data_prep.smlmt --input "$M/glue/SST-2/train.tsv:text=sentence" \
      --input "$M/glue/CoLA/train.tsv:header=none,text=3,label=1" \
      --input "$M/glue/MRPC/train.tsv:label=Quality,text=#1 String,text_b=#2 String" \
      --input "$M/glue/RTE/train.tsv" --input "$M/glue/QNLI/dev.tsv:text=question,text_b=sentence" \
      --input "$M/agnews/dev.tsv:header=none,text=0,label=1" --output_dir results/smlmt \
      --num_classes 2,3,4,5 --tasks_per_n 250 --max_seq_length 128
fi
mkdir -p "$OUT"
if [ ! -f "$OUT/leopard_benchmark.json" ] && [ -f docs/measurements/leopard_benchmark.json ]; then
  # a new machine: the runs committed so far count, and are not re-run
  cp docs/measurements/leopard_benchmark.json "$OUT/.leopard_benchmark.json.tmp"
  mv "$OUT/.leopard_benchmark.json.tmp" "$OUT/leopard_benchmark.json"  # never half-copied
fi
status=0
nice -n 19 $PY -m metabert_tf.experiments --flagfile=configs/leopard_benchmark.cfg \
    --output_dir="$OUT" "$@" || status=$?
if [ -f "$OUT/leopard_benchmark.json" ]; then
  cp "$OUT/leopard_benchmark.json" docs/measurements/.leopard_benchmark.json.tmp
  mv docs/measurements/.leopard_benchmark.json.tmp docs/measurements/leopard_benchmark.json
  $PY -m metabert_tf.experiments.benchmark_report --runs docs/measurements/leopard_benchmark.json \
      --output docs/measurements/leopard_benchmark.md --plot docs/measurements/leopard_benchmark.png \
      --per_task_plot docs/measurements/leopard_benchmark_tasks.png \
      --curves_plot docs/measurements/leopard_meta_curves.png > /dev/null
fi
exit $status
