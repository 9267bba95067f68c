"""A sentence(-pair) classifier: BERT encoder -> pooled features -> dropout -> dense logits.

`pooling="pooler"` is Google BERT's run_classifier / Model Garden's BertClassifier: the tanh
pooler over [CLS]. `pooling="mean"` averages the unpadded token vectors, which is how
sentence-transformers models (such as the bundled all-MiniLM-L6-v2) were trained.
Logits are float32 even under a mixed precision policy, so losses stay accurate.

The head is a dense layer, or LEOPARD's `GeneratedSoftmaxHead` (class weights generated from
examples, any number of classes).
"""
import tensorflow as tf
import tf_keras

POOLING = ("pooler", "mean")


class Classifier(tf_keras.Model):

  def __init__(self, encoder, num_labels, dropout_rate=0.1, initializer_range=0.02,
               pooling="pooler", head=None, **kwargs):
    super().__init__(**kwargs)
    if pooling not in POOLING:
      raise ValueError(f"pooling must be one of {POOLING}, got {pooling!r}")
    self.encoder = encoder
    self.pooling = pooling
    self.num_labels = num_labels
    self.dropout = tf_keras.layers.Dropout(dropout_rate)
    self.head = head or tf_keras.layers.Dense(
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


class GeneratedSoftmaxHead(tf_keras.layers.Layer):
  """LEOPARD's output layer (Bansal et al. 2020): task features f = h(x) by an MLP
  H -> H/2 (tanh) -> `feature_size`, and logits f . w_c + b_c with one row [w_c | b_c] per class
  in `class_rows` [max_classes, feature_size + 1]. The rows are generated from labeled examples:
  row c = the mean of g(x) over the examples of class c, g a second MLP H -> H/2 (tanh) ->
  feature_size + 1 (`generate`). Meta-training adapts the rows per task (they are then not
  trainable weights of the meta-model); a fine-tuned model trains them like any head.

  `init="released"` is the original's: h and g plain MLPs from N(0, 0.02), so the rows and the
  logits start near zero. `init="prototypes"` starts from a working classifier: h and g are
  residual, h(p) = p + MLP_h(p) and g(p) = [p | 0] + MLP_g(p) with each MLP's last layer at
  zero, and a generated row [m_c | b_c] (m_c = mean g_w) is used as [2 m_c | b_c - |m_c|^2]:
  at step 0, logits_c = 2 p . mu_c - |mu_c|^2 = |p|^2 - |p - mu_c|^2, the nearest class mean of
  the generating batch (ProtoMAML's start); feature_size is then the hidden size."""

  INITS = ("prototypes", "released")

  def __init__(self, hidden_size, max_classes, feature_size=256, rows_trainable=False,
               initializer_range=0.02, init="released", name="generated_softmax_head", **kwargs):
    # A fixed name: the learner copy pairs by name. float32: the class rows and the logits stay
    # float32 under mixed precision (the MLPs follow the global policy).
    super().__init__(name=name, dtype="float32", **kwargs)
    if init not in self.INITS:
      raise ValueError(f"init must be one of {self.INITS}, got {init!r}")
    self.init = init
    if init == "prototypes":
      feature_size = hidden_size
    normal = lambda: tf_keras.initializers.TruncatedNormal(stddev=initializer_range)  # noqa: E731
    last = normal if init == "released" else (lambda: "zeros")
    mlp = lambda name, out: [  # noqa: E731
        tf_keras.layers.Dense(hidden_size // 2, "tanh", kernel_initializer=normal(),
                              name=f"{name}_0"),
        tf_keras.layers.Dense(out, kernel_initializer=last(), name=f"{name}_1")]
    self.task_mlp = mlp("task_mlp", feature_size)
    self.generator = mlp("generator", feature_size + 1)
    self.max_classes, self.feature_size = max_classes, feature_size
    self.rows_trainable = rows_trainable

  def build(self, input_shape):
    self.class_rows = self.add_weight("class_rows", [self.max_classes, self.feature_size + 1],
                                      initializer="zeros", trainable=self.rows_trainable)
    for mlp in (self.task_mlp, self.generator):
      shape = tf.TensorShape(input_shape)
      for layer in mlp:
        with tf.name_scope(layer.name):  # else every kernel is ".../kernel" (pairing by name)
          layer.build(shape)
        shape = shape[:-1].concatenate([layer.units])
    super().build(input_shape)

  def call(self, pooled):
    features = tf.cast(_mlp(self.task_mlp, pooled), tf.float32)
    if self.init == "prototypes":
      features += tf.cast(pooled, tf.float32)
    return rows_logits(features, self.class_rows)

  def generate(self, pooled, labels):
    """Class rows [max_classes, feature_size + 1]: the mean generator output over the examples
    of each class (zeros for a class without examples); with init="prototypes" used as
    [2 m_c | b_c - |m_c|^2] (the class docstring)."""
    out = tf.cast(_mlp(self.generator, pooled), tf.float32)
    if self.init == "prototypes":
      out += tf.pad(tf.cast(pooled, tf.float32), [[0, 0], [0, 1]])
    rows = tf.math.unsorted_segment_mean(out, labels, self.max_classes)
    if self.init == "prototypes":
      rows = prototype_rows(rows[:, :-1], rows[:, -1:])
    return rows


def prototype_rows(means, bias=0.0):
  """Rows [2 mu_c | b_c - |mu_c|^2] of class means mu_c [N, H]: x . 2 mu_c - |mu_c|^2 =
  |x|^2 - |x - mu_c|^2, so the argmax is the nearest class mean (ProtoMAML's head)."""
  bias = bias - tf.reduce_sum(means ** 2, -1, keepdims=True)
  return tf.concat([2.0 * means, bias], -1)


class PrototypeHead(tf_keras.layers.Layer):
  """Prototypical networks' classifier as a linear head: logits x . w_c + b_c with one row
  [w_c | b_c] = [2 mu_c | -|mu_c|^2] per class in `class_rows` [max_classes, hidden + 1], mu_c the
  mean sentence feature of class c's examples (`generate`), i.e. minus the squared Euclidean
  distance to mu_c up to a term the same for every class. No weights of its own: Proto-BERT
  and ProtoMAML (FOMAML or Reptile with a per-task head) make the rows from each task's
  support set, ProtoMAML then adapts them in the inner loop."""

  def __init__(self, hidden_size, max_classes, name="prototype_head", **kwargs):
    super().__init__(name=name, dtype="float32", **kwargs)
    self.hidden_size, self.max_classes = hidden_size, max_classes

  def build(self, input_shape):
    self.class_rows = self.add_weight("class_rows", [self.max_classes, self.hidden_size + 1],
                                      initializer="zeros", trainable=False)
    super().build(input_shape)

  def call(self, pooled):
    return rows_logits(tf.cast(pooled, tf.float32), self.class_rows)

  def generate(self, pooled, labels):
    means = tf.math.unsorted_segment_mean(tf.cast(pooled, tf.float32), labels, self.max_classes)
    return prototype_rows(means)


def rows_logits(features, rows):
  """Logits features . w_c + b_c of class rows [w_c | b_c]."""
  return tf.matmul(features, rows[:, :-1], transpose_b=True) + rows[:, -1]


def _mlp(layers, x):
  for layer in layers:
    x = layer(x)
  return x
