"""Prediction over in-memory features, and the classification metrics we report."""
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from metabert_tf import records


def predict_logits(model, features, batch_size=64, progress=True, desc="eval", forward=None):
  """Logits [n, num_labels] for encoded features, in input order; or whatever
  `forward(model, batch)` returns per example (the batch has `domain_ids` when the features do).

  Examples run sorted by length so each batch, trimmed to its longest row, carries little padding.
  """
  order = np.argsort(features["input_mask"].sum(axis=1), kind="stable")
  keys = records.MODEL_INPUTS + (("domain_ids",) if "domain_ids" in features else ())
  inputs = {k: features[k][order] for k in keys}
  ds = tf.data.Dataset.from_tensor_slices(inputs).batch(batch_size).map(records.trim_to_longest)
  call = forward or (lambda m, batch: m(batch, training=False))

  @tf.function(reduce_retracing=True)
  def run(batch):
    return call(model, batch)

  n = len(features["input_word_ids"])
  out = []
  with tqdm(total=n, desc=desc, unit="ex", disable=not progress, leave=False) as bar:
    for batch in ds:
      out.append(run(batch).numpy())
      bar.update(len(out[-1]))
  logits = np.empty_like(np.concatenate(out))
  logits[order] = np.concatenate(out)
  return logits


def classification_metrics(labels, predictions):
  labels = np.asarray(labels)
  predictions = np.asarray(predictions)
  f1s = []
  # As sklearn: the labels seen in truth or predictions; not those the head lacks
  # (UNSEEN_LABEL_ID: never predicted; their examples count as errors in accuracy, and as false
  # positives of the class predicted for them).
  for c in sorted((set(labels.tolist()) | set(predictions.tolist())) - {records.UNSEEN_LABEL_ID}):
    tp = np.sum((predictions == c) & (labels == c))
    fp = np.sum((predictions == c) & (labels != c))
    fn = np.sum((predictions != c) & (labels == c))
    f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
  counts = {int(c): int(n) for c, n in zip(*np.unique(predictions, return_counts=True))}
  return {"accuracy": float(np.mean(labels == predictions)), "macro_f1": float(np.mean(f1s)),
          "num_examples": int(len(labels)), "predicted_class_counts": counts,
          # A model that did not learn often predicts one class for everything.
          "predicts_one_class": len(counts) == 1 and len(set(labels.tolist())) > 1}


def mean_std_summary(accuracies):
  """{row: {column: [accuracy per run]}} -> the same nesting of {mean, std, n, accuracies}.

  std is the population std over runs, as the LEOPARD papers report it."""
  return {row: {str(col): {"mean": float(np.mean(v)), "std": float(np.std(v)), "n": len(v),
                           "accuracies": v} for col, v in by_col.items()}
          for row, by_col in accuracies.items()}


def evaluate(model, features, batch_size=64, progress=True, forward=None):
  logits = predict_logits(model, features, batch_size, progress, forward=forward)
  return classification_metrics(features["label_ids"], logits.argmax(-1))


def sentence_features(model, features, batch_size=64):
  """[n, H] float32 sentence features (model.encode, inference mode) of encoded `features`."""
  pooled = predict_logits(model, features, batch_size, progress=False,
                          forward=lambda m, batch: m.encode(batch)[0])
  return np.asarray(pooled, np.float32)  # bfloat16 under mixed precision


def class_means(x, labels, num_labels):
  """[N, H]: the mean row of `x` per class (zeros for a class without examples)."""
  return np.stack([x[labels == c].mean(0) if (labels == c).any() else np.zeros(x.shape[1])
                   for c in range(num_labels)])


def paired_gains(accuracies, baseline):
  """{"<method> - <baseline>": {setting: [per-run accuracy differences]}}: the same runs
  (domain, seed, training examples) on both sides, so their spread is the gain's own spread."""
  if baseline not in accuracies:
    return {}
  return {f"{method} - {baseline}": {s: [a - b for a, b in zip(runs, accuracies[baseline][s])]
                                     for s, runs in by_setting.items()}
          for method, by_setting in accuracies.items() if method != baseline}


def did_not_learn(results):
  """A run's results.json says its model did not learn: its training loss did not fall, or it
  predicts one class for every eval example. Tables mark such runs; they are not results."""
  return results.get("train_loss_fell") is False or bool(results.get("predicts_one_class"))


def _cell(stats, paired):
  if not paired:
    mark = (f" ({stats['not_learned']}/{stats['n']} did not learn)"
            if stats.get("not_learned") else "")
    return f"{100 * stats['mean']:.1f} +- {100 * stats['std']:.1f}{mark}"
  wins = sum(gain > 0 for gain in stats["accuracies"])
  return f"{100 * stats['mean']:+.1f} +- {100 * stats['std']:.1f} ({wins}/{stats['n']} > 0)"


def markdown_table(summary, settings, first="method", column_names=None):
  """Accuracy rows as mean +- std; paired-gain rows also say in how many runs the gain is > 0.
  `first`: the header of the row names (a row name with " | " spans that many columns)."""
  names = column_names or settings
  head = (f"| {first} | " + " | ".join(names) + " |\n|" + "---|" * (first.count(" | ") + 1)
          + "---|" * len(settings) + "\n")
  rows = [f"| {method} | " + " | ".join(_cell(by_setting[s], " - " in method) for s in settings)
          + " |" for method, by_setting in summary.items()]
  return head + "\n".join(rows) + "\n"
