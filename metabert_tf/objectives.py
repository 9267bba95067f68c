"""Loss hooks of the supervised trainer (training.finetune): plain fine-tuning and the
multi-domain baselines of Wang et al. (2020), Table 3. MFT's own hook is mft.MFTObjective.

  CrossEntropy   Google BERT's loss; on data pooled over domains it is BERT (Mix).
  MultiTask      BERT (MTL): a shared encoder, one classifier head per domain; example i
                 is scored by the head of its domain d_i: CE(W_{d_i} h_i + b_{d_i}, y_i).
  Adversarial    BERT (Adv): BERT (Mix) plus a domain classifier on the sentence features
                 behind a gradient-reversal layer R (identity forward, -1 x gradient backward):
                 CE(W h_i + b, y_i) + lambda * CE(D(R(h_i)), d_i); the encoder learns to hide
                 the domain while D learns to find it.

Every loss is per example and multiplied by the features' `example_weights` when they have
them; the trainer averages over the global batch.
"""
import tensorflow as tf
import tf_keras


def cross_entropy(labels, logits):
  return tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)


class CrossEntropy:
  """The trainer's default hook; the base of the others.

  A hook owns: `build(model)` (its extra layers, called under the strategy scope), `extras()`
  (those layers by name: checkpointed beside the model and restored on resume), `prepare_batch`
  (per-batch inputs drawn as a pure function of the global step, before the batch is split
  over replicas, so a resumed run and any replica count see the same), `per_example_loss` and
  `logits` (what evaluation scores)."""

  name = "cross_entropy"

  def build(self, model):
    del model

  def extras(self):
    return {}

  def prepare_batch(self, batch, step):
    del step
    return batch

  def logits(self, model, batch, training=False):
    return model(batch, training=training)

  def per_example_loss(self, model, batch):
    return self.weighted(batch, cross_entropy(batch["label_ids"], self.logits(model, batch, True)))

  @staticmethod
  def weighted(batch, loss):
    return loss * batch["example_weights"] if "example_weights" in batch else loss

  def trainable_variables(self):
    return [v for layer in self.extras().values() for v in layer.trainable_variables]


class MultiTask(CrossEntropy):
  """BERT (MTL): one head per domain on the shared encoder (the model's own head is unused)."""

  name = "mtl"

  def __init__(self, num_domains, num_labels):
    self.num_domains, self.num_labels = num_domains, num_labels

  def build(self, model):
    self.heads = tf_keras.layers.Dense(
        self.num_domains * self.num_labels, name="domain_heads",
        kernel_initializer=tf_keras.initializers.TruncatedNormal(stddev=0.02))
    self.heads.build([None, model.encoder.get_config()["hidden_size"]])

  def extras(self):
    return {"domain_heads": self.heads}

  def logits(self, model, batch, training=False):
    pooled, _ = model.encode(batch, training)
    all_heads = self.heads(model.dropout(pooled, training=training))
    all_heads = tf.reshape(tf.cast(all_heads, tf.float32), [-1, self.num_domains, self.num_labels])
    return tf.gather(all_heads, batch["domain_ids"], axis=1, batch_dims=1)


@tf.custom_gradient
def reverse_gradient(x):
  return tf.identity(x), lambda dy: -dy


class Adversarial(CrossEntropy):
  """BERT (Adv): a domain classifier trained through a gradient-reversal layer."""

  name = "adv"

  def __init__(self, num_domains, weight=0.1):
    self.num_domains, self.weight = num_domains, weight

  def build(self, model):
    self.domain_classifier = tf_keras.layers.Dense(
        self.num_domains, name="adversarial_domain_classifier",
        kernel_initializer=tf_keras.initializers.TruncatedNormal(stddev=0.02))
    self.domain_classifier.build([None, model.encoder.get_config()["hidden_size"]])

  def extras(self):
    return {"adversarial_domain_classifier": self.domain_classifier}

  def per_example_loss(self, model, batch):
    pooled, _ = model.encode(batch, training=True)
    task = cross_entropy(batch["label_ids"], model.classify(pooled, training=True))
    domain_logits = tf.cast(self.domain_classifier(reverse_gradient(pooled)), tf.float32)
    return self.weighted(batch, task + self.weight * cross_entropy(batch["domain_ids"],
                                                                   domain_logits))
