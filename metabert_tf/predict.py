r"""Predict labels for text with an exported SavedModel.

  python -m metabert_tf.predict --model_dir out/export --input texts.txt --output preds.jsonl
  python -m metabert_tf.predict --model_dir out/export --output preds.jsonl \
      --input '../shared/data/meta_train/glue/SST-2/dev.tsv:text=sentence'

--input is a `.txt` file (or one without extension), one example per non-blank line (blank
lines are skipped, their count printed on stderr), or anything the
readers read (.json, .jsonl, .csv, .tsv, a `PATH:text=...,label=...` data spec): its text
column(s) are the input and its labels, where present, the gold labels: each output row then
has "gold", and the accuracy goes to stderr. Each output line: {"text", ["text_b"], "label",
"probabilities", ["gold"]}. tf_records (encoded ids, no text) are refused.
"""
import json
import os
import sys

from absl import app
from absl import flags
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the tokenizer ops the SavedModel uses)
from tqdm import tqdm

from metabert_tf import cli
from metabert_tf import datasets
from metabert_tf import flag_rules
from metabert_tf import io_utils
from metabert_tf.data import readers
from metabert_tf.data.examples import LabeledExample
from metabert_tf.errors import DataError

FLAGS = flags.FLAGS
TEXT_LINES = ("", ".txt")  # extensions read as one example per line


def define_flags():
  """The program's flags (defined when run, not at import: see tests/test_layering.py)."""
  flags.DEFINE_string("model_dir", None, "An exported SavedModel (run_finetune.py --export_dir).")
  flags.DEFINE_string("input", None, "Text file (one example per line), or any reader format as "
                      f"{readers.SPEC_HELP} (labels, if any, are scored).")
  flags.DEFINE_string("output", None, "Where to write JSONL predictions.")
  flags.DEFINE_integer("batch_size", 64, "Examples per call.")
  flags.DEFINE_bool("progress", True, "Show a progress bar.")
  flags.mark_flags_as_required(["model_dir", "input", "output"])
  flag_rules.register()  # every numeric and list flag's bounds


def read_inputs(spec):
  """LabeledExamples (label None where the input has none) from a .txt file or a reader format."""
  path, options = readers.parse_data_spec(spec)
  if datasets.is_tf_record(path):
    raise DataError(path, "tf_records hold encoded ids, not text: predict reads .txt (one example "
                    "per line), .json, .jsonl, .csv or .tsv")
  if options or os.path.isdir(path) or os.path.splitext(path)[1].lower() not in TEXT_LINES:
    examples = readers.read_examples(spec, require_label=False)
  else:
    lines = [line.rstrip("\r") for line in readers.read_text(path).split("\n")]
    if lines and not lines[-1]:
      lines.pop()  # the final newline ends the last line; it is not a blank line
    examples = [LabeledExample(line, None, where=f"line {i}")
                for i, line in enumerate(lines, 1) if line.strip()]
    blank = len(lines) - len(examples)
    if blank:  # so the number of output rows is predictable from the input
      print(f"{path}: skipped {blank} blank line{'s' if blank > 1 else ''} (one prediction per "
            f"non-blank line: {len(examples)})", file=sys.stderr)
  if not examples:
    raise DataError(path, "no examples")
  if len({e.text_b is not None for e in examples}) > 1:
    raise DataError(path, "mixes single texts and text pairs; use one kind per file")
  return examples


def score(results, examples, label_list=None):
  """Adds "gold" to the rows of labelled examples; returns (count, accuracy), None if none.

  Gold labels the model does not know (`label_list`) count as wrong, with a warning naming them.
  """
  scored = [(row, e.label) for row, e in zip(results, examples) if e.label is not None]
  if not scored:
    return None
  unknown = sorted({gold for _, gold in scored} - set(label_list)) if label_list else []
  if unknown:
    print(f"warning: gold labels {unknown} are not among the model's labels {label_list}: "
          "their examples count as wrong", file=sys.stderr)
  for row, gold in scored:
    row["gold"] = gold
  return len(scored), sum(row["label"] == gold for row, gold in scored) / len(scored)


def model_label_list(model_dir):
  """The label list export.py writes beside the SavedModel (None for other SavedModels)."""
  path = os.path.join(model_dir, "labels.json")
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as f:
    return json.load(f).get("label_list")


def predict(model_dir, rows, batch_size=64, progress=True):
  loaded = tf.saved_model.load(model_dir)
  is_pair = rows[0][1] is not None
  name = "serve_pair" if is_pair else "serving_default"
  fn = loaded.signatures.get(name)
  if fn is None or not {"labels", "probabilities"} <= set(fn.structured_outputs):
    raise DataError(model_dir, f"the SavedModel has no {name} signature returning labels and "
                    "probabilities (is it an export of run_finetune.py or FewShotClassifier?)")
  results = []
  for start in tqdm(range(0, len(rows), batch_size), desc="predict", disable=not progress):
    chunk = rows[start:start + batch_size]
    args = ({"text_a": tf.constant([a for a, _ in chunk]), "text_b": tf.constant([b for _, b in chunk])}
            if is_pair else {"text": tf.constant([a for a, _ in chunk])})
    out = fn(**args)
    for (a, b), label, probs in zip(chunk, out["labels"].numpy(), out["probabilities"].numpy()):
      row = {"text": a, "label": label.decode("utf-8"),
             "probabilities": [round(float(p), 6) for p in probs]}
      if b is not None:
        row["text_b"] = b
      results.append(row)
  return results


def main(_):
  with cli.user_errors_exit():
    io_utils.check_writable(FLAGS.output, "--output")  # before the model load and inference
    examples = read_inputs(FLAGS.input)
    if not os.path.exists(os.path.join(FLAGS.model_dir, "saved_model.pb")):
      raise DataError(FLAGS.model_dir, "not a SavedModel directory (no saved_model.pb); export "
                      "one with run_finetune.py")
    results = predict(FLAGS.model_dir, [(e.text_a, e.text_b) for e in examples], FLAGS.batch_size,
                      FLAGS.progress)
    scored = score(results, examples, model_label_list(FLAGS.model_dir))
    with io_utils.atomic_open(FLAGS.output) as f:
      for row in results:
        f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {len(results)} predictions to {FLAGS.output}", file=sys.stderr)
    if scored:
      print(f"accuracy {scored[1]:.4f} on {scored[0]} labelled examples", file=sys.stderr)


if __name__ == "__main__":
  define_flags()
  app.run(main)
