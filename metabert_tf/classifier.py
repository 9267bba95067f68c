"""A sentence(-pair) classifier: BERT encoder -> pooled [CLS] -> dropout -> dense logits.

The same structure Google BERT's run_classifier and Model Garden's BertClassifier use. Logits
are returned in float32 even under a mixed precision policy, so losses stay accurate.
"""
import tensorflow as tf
import tf_keras


class Classifier(tf_keras.Model):

  def __init__(self, encoder, num_labels, dropout_rate=0.1, initializer_range=0.02, **kwargs):
    super().__init__(**kwargs)
    self.encoder = encoder
    self.num_labels = num_labels
    self.dropout = tf_keras.layers.Dropout(dropout_rate)
    self.head = tf_keras.layers.Dense(
        num_labels, name="classifier_head",
        kernel_initializer=tf_keras.initializers.TruncatedNormal(stddev=initializer_range))

  def call(self, inputs, training=False):
    features = {k: inputs[k] for k in ("input_word_ids", "input_mask", "input_type_ids")}
    pooled = self.encoder(features, training=training)["pooled_output"]
    logits = self.head(self.dropout(pooled, training=training))
    return tf.cast(logits, tf.float32)

  def build_all(self, seq_len=2):
    dummy = tf.zeros([1, seq_len], tf.int32)
    self(dict(input_word_ids=dummy, input_mask=tf.ones_like(dummy), input_type_ids=dummy))
    return self
