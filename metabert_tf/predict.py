r"""Predict labels for raw text with an exported SavedModel.

  python -m metabert_tf.predict --model_dir out/export --input texts.txt --output preds.jsonl

--input is a text file (one example per line) or JSONL (`text`, optional `text_b`; also
`sentence1`/`sentence2`). Each output line: {"text", ["text_b"], "label", "probabilities"}.
"""
import json
import os
import sys

from absl import app
from absl import flags
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the tokenizer ops the SavedModel uses)
from tqdm import tqdm

from data_prep.examples import DataError
from metabert_tf import io_utils
from metabert_tf import run_utils

flags.DEFINE_string("model_dir", None, "An exported SavedModel (run_finetune.py --export_dir).")
flags.DEFINE_string("input", None, "Text file (one example per line) or .jsonl.")
flags.DEFINE_string("output", None, "Where to write JSONL predictions.")
flags.DEFINE_integer("batch_size", 64, "Examples per call.")
flags.DEFINE_bool("progress", True, "Show a progress bar.")
flags.mark_flags_as_required(["model_dir", "input", "output"])
FLAGS = flags.FLAGS


def read_inputs(path):
  """[(text_a, text_b or None)] from a .txt or .jsonl file, with clear errors."""
  if not os.path.isfile(path):
    raise DataError(path, "file not found")
  rows = []
  with open(path, encoding="utf-8") as f:
    for line_no, line in enumerate(f, 1):
      if not line.strip():
        continue
      if path.endswith(".jsonl"):
        try:
          obj = json.loads(line)
        except json.JSONDecodeError as e:
          raise DataError(path, f"not valid JSON ({e.msg})", f"line {line_no}") from None
        text = obj.get("text", obj.get("sentence1")) if isinstance(obj, dict) else None
        if not isinstance(text, str):
          raise DataError(path, "expected an object with a string field 'text'", f"line {line_no}")
        text_b = obj.get("text_b", obj.get("sentence2"))
        if text_b is not None and not isinstance(text_b, str):
          raise DataError(path, "'text_b' must be a string", f"line {line_no}")
        rows.append((text, text_b))
      else:
        rows.append((line.rstrip("\n"), None))
  if not rows:
    raise DataError(path, "no examples")
  pairs = {b is not None for _, b in rows}
  if len(pairs) > 1:
    raise DataError(path, "mixes single texts and text pairs; use one kind per file")
  return rows


def predict(model_dir, rows, batch_size=64, progress=True):
  loaded = tf.saved_model.load(model_dir)
  is_pair = rows[0][1] is not None
  fn = loaded.signatures["serve_pair" if is_pair else "serving_default"]
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
  with run_utils.user_errors_exit():
    rows = read_inputs(FLAGS.input)
    if not os.path.exists(os.path.join(FLAGS.model_dir, "saved_model.pb")):
      raise DataError(FLAGS.model_dir, "not a SavedModel directory (no saved_model.pb); export "
                      "one with run_finetune.py")
    results = predict(FLAGS.model_dir, rows, FLAGS.batch_size, FLAGS.progress)
    with io_utils.atomic_open(FLAGS.output) as f:
      for row in results:
        f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {len(results)} predictions to {FLAGS.output}", file=sys.stderr)


if __name__ == "__main__":
  app.run(main)
