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
    return self.classify(self.encode(inputs, training)[0], training)

  def encode(self, inputs, training=False):
    """(sentence features [B, H], the encoder's outputs: `encoder_outputs` holds every layer's
    token vectors). Methods that look inside the encoder (MFT, adversarial training) use it."""
    features = {k: inputs[k] for k in ("input_word_ids", "input_mask", "input_type_ids")}
    outputs = self.encoder(features, training=training)
    if self.pooling == "pooler":
      return outputs["pooled_output"], outputs
    return masked_mean(outputs["sequence_output"], features["input_mask"]), outputs

  def classify(self, pooled, training=False):
    """Float32 logits of sentence features from `encode`."""
    return tf.cast(self.head(self.dropout(pooled, training=training)), tf.float32)

  def build_all(self, seq_len=2):
    dummy = tf.zeros([1, seq_len], tf.int32)
    self(dict(input_word_ids=dummy, input_mask=tf.ones_like(dummy), input_type_ids=dummy))
    return self


def masked_mean(vectors, mask):
  """Mean of token `vectors` [B, L, H] over the positions where `mask` [B, L] is 1."""
  mask = tf.cast(mask, vectors.dtype)[:, :, None]
  return tf.reduce_sum(vectors * mask, 1) / tf.maximum(tf.reduce_sum(mask, 1), 1.0)
