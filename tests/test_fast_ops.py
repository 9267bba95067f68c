"""The speed-motivated stand-ins: metabert_tf.fast_dropout and the float32 GELU of bert_config."""
import numpy as np
import tensorflow as tf
import tf_keras

from metabert_tf import backbones
from metabert_tf import bert_config
from metabert_tf import fast_dropout
from tests import tiny_models


def test_dropout_rate_scale_and_gradient():
  x = tf.ones([400, 500])
  tf.random.set_seed(3)
  with tf.GradientTape() as tape:
    tape.watch(x)
    y = fast_dropout.dropout(x, 0.1)
    total = tf.reduce_sum(y)
  grad = tape.gradient(total, x)
  dropped = float(tf.reduce_mean(tf.cast(y == 0, tf.float32)))
  assert abs(dropped - 0.1) < 0.003  # 200k draws: 4.5 standard deviations
  kept = y.numpy()[y.numpy() != 0]
  np.testing.assert_allclose(kept, 65536 / (65536 - 6554), rtol=1e-6)
  np.testing.assert_array_equal(grad.numpy(), y.numpy())  # d(x * mask)/dx = mask, x = 1


def test_dropout_repeats_under_a_seed_and_differs_between_calls():
  x = tf.ones([7, 9])  # an odd size: the last uint32 is half used
  tf.random.set_seed(5)
  first, second = fast_dropout.dropout(x, 0.5), fast_dropout.dropout(x, 0.5)
  tf.random.set_seed(5)
  again = fast_dropout.dropout(x, 0.5)
  np.testing.assert_array_equal(first.numpy(), again.numpy())
  assert not np.array_equal(first.numpy(), second.numpy())
  assert set(np.unique(first.numpy())) <= {0.0, 2.0}


def test_install_swaps_every_dropout_and_keeps_inference_exact():
  config = bert_config.BertConfig(**{**tiny_models.CONFIG, "hidden_act": "gelu_exact"})
  encoder = backbones.build_encoder(config)  # installs
  layers = [l for l in encoder.submodules if isinstance(l, tf_keras.layers.Dropout)]
  # embedding + per layer: attention probabilities, attention output, FFN inner, FFN output
  assert len(layers) == 1 + 4 * config.num_hidden_layers
  assert all(type(l) is fast_dropout.FastDropout for l in layers)  # pylint: disable=unidiomatic-typecheck
  ids = tf.constant([[2, 5, 7, 3]])
  inputs = dict(input_word_ids=ids, input_mask=tf.ones_like(ids), input_type_ids=tf.zeros_like(ids))
  np.testing.assert_array_equal(encoder(inputs, training=False)["sequence_output"].numpy(),
                                encoder(inputs, training=False)["sequence_output"].numpy())
  assert not np.allclose(encoder(inputs, training=True)["sequence_output"].numpy(),
                         encoder(inputs, training=False)["sequence_output"].numpy())


def test_gelu_runs_in_float32_and_returns_the_input_dtype():
  x = tf.constant(np.linspace(-4, 4, 101), tf.float32)
  for name, approximate in (("gelu_exact", False), ("gelu_tanh", True)):
    gelu = bert_config.BertConfig(vocab_size=50, hidden_act=name).activation
    np.testing.assert_allclose(gelu(x).numpy(), tf.nn.gelu(x, approximate=approximate).numpy(),
                               atol=1e-7)
    y = gelu(tf.cast(x, tf.bfloat16))
    assert y.dtype == tf.bfloat16
    expected = tf.cast(tf.nn.gelu(tf.cast(tf.cast(x, tf.bfloat16), tf.float32),
                                  approximate=approximate), tf.bfloat16)
    np.testing.assert_array_equal(y.numpy(), expected.numpy())
