"""A sentence(-pair) classifier: BERT encoder -> pooled features -> dropout -> dense logits.

`pooling="pooler"` is Google BERT's run_classifier / Model Garden's BertClassifier: the tanh
pooler over [CLS]. `pooling="mean"` averages the unpadded token vectors, which is how
sentence-transformers models (such as the bundled all-MiniLM-L6-v2) were trained.
Logits are float32 even under a mixed precision policy, so losses stay accurate.
"""
import tensorflow as tf
import tf_keras

POOLING = ("pooler", "mean")


class Classifier(tf_keras.Model):

  def __init__(self, encoder, num_labels, dropout_rate=0.1, initializer_range=0.02,
               pooling="pooler", **kwargs):
    super().__init__(**kwargs)
    if pooling not in POOLING:
      raise ValueError(f"pooling must be one of {POOLING}, got {pooling!r}")
    self.encoder = encoder
    self.pooling = pooling
    self.num_labels = num_labels
    self.dropout = tf_keras.layers.Dropout(dropout_rate)
    self.head = tf_keras.layers.Dense(
        num_labels, name="classifier_head",
        kernel_initializer=tf_keras.initializers.TruncatedNormal(stddev=initializer_range))

  def call(self, inputs, training=False):
    features = {k: inputs[k] for k in ("input_word_ids", "input_mask", "input_type_ids")}
    outputs = self.encoder(features, training=training)
    if self.pooling == "pooler":
      pooled = outputs["pooled_output"]
    else:
      mask = tf.cast(features["input_mask"], outputs["sequence_output"].dtype)[:, :, None]
      pooled = tf.reduce_sum(outputs["sequence_output"] * mask, 1) / tf.maximum(
          tf.reduce_sum(mask, 1), 1.0)
    logits = self.head(self.dropout(pooled, training=training))
    return tf.cast(logits, tf.float32)

  def build_all(self, seq_len=2):
    dummy = tf.zeros([1, seq_len], tf.int32)
    self(dict(input_word_ids=dummy, input_mask=tf.ones_like(dummy), input_type_ids=dummy))
    return self
