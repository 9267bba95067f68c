"""Export a classifier as a SavedModel that takes raw strings: the tokenizer is in the graph.

Signatures:
  serving_default(text: string[batch])                -> probabilities, label_ids, labels
  serve_pair(text_a: string[batch], text_b: string[batch]) -> the same, for sentence pairs
`labels` are the label strings, `probabilities` float32 [batch, num_labels] in label-list order.
Loading needs `import tensorflow_text` (it registers the tokenizer ops).
"""
import os

import tensorflow as tf

from metabert_tf import io_utils
from metabert_tf.errors import ConfigError


class ExportModule(tf.Module):

  def __init__(self, model, input_encoder, label_list):
    super().__init__()
    self.model = model
    self.input_encoder = input_encoder
    self.label_names = tf.constant(list(label_list))

  def _outputs(self, inputs):
    probabilities = tf.nn.softmax(tf.cast(self.model(inputs, training=False), tf.float32), -1)
    label_ids = tf.argmax(probabilities, -1, output_type=tf.int32)
    return {"probabilities": probabilities, "label_ids": label_ids,
            "labels": tf.gather(self.label_names, label_ids)}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
  def serve(self, text):
    return self._outputs(self.input_encoder(text))

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text_a"),
                                tf.TensorSpec([None], tf.string, name="text_b")])
  def serve_pair(self, text_a, text_b):
    return self._outputs(self.input_encoder(text_a, text_b))


def export_saved_model(model, input_encoder, label_list, export_dir):
  """Writes the SavedModel to a temp dir beside `export_dir`, then renames it into place."""
  module = ExportModule(model, input_encoder, label_list)
  if os.path.isdir(export_dir) and os.listdir(export_dir) and not os.path.exists(
      os.path.join(export_dir, "saved_model.pb")):
    raise ConfigError(f"{export_dir} exists and is not a SavedModel; not replacing it",
                      field="export_dir")
  with io_utils.atomic_dir(export_dir) as tmp:
    tf.saved_model.save(module, tmp, signatures={"serving_default": module.serve,
                                                 "serve_pair": module.serve_pair})
    io_utils.atomic_write_json(os.path.join(tmp, "labels.json"), {"label_list": list(label_list)})
  return export_dir
