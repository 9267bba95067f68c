"""Tiny BERTs for tests (hidden 32, 2 layers, 50-token vocab), written in Google and HF layouts."""
import json
import os

import numpy as np
import tensorflow as tf

WORDS = ["the", "a", "good", "bad", "movie", "book", "great", "terrible", "is", "was", "not",
         "very", "i", "it", "this", "love", "hate", "fun", "boring", "and", "but", "plot",
         "story", "film", "read", "##s", "##ing", "##ed", "##ly", ",", ".", "!", "?", "'",
         "man", "dog", "cat", "runs", "sleeps", "someone", "music", "play", "##er", "##y", "on"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
assert len(VOCAB) == 50, len(VOCAB)

CONFIG = {"vocab_size": 50, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
          "intermediate_size": 37, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
          "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 64,
          "type_vocab_size": 2, "initializer_range": 0.02}


def google_weight_shapes(config=CONFIG):
  h, i = config["hidden_size"], config["intermediate_size"]
  shapes = {"bert/embeddings/word_embeddings": [config["vocab_size"], h],
            "bert/embeddings/position_embeddings": [config["max_position_embeddings"], h],
            "bert/embeddings/token_type_embeddings": [config["type_vocab_size"], h],
            "bert/embeddings/LayerNorm/gamma": [h], "bert/embeddings/LayerNorm/beta": [h],
            "bert/pooler/dense/kernel": [h, h], "bert/pooler/dense/bias": [h]}
  for n in range(config["num_hidden_layers"]):
    p = f"bert/encoder/layer_{n}/"
    for name, (fan_in, fan_out) in {"attention/self/query": (h, h), "attention/self/key": (h, h),
                                    "attention/self/value": (h, h),
                                    "attention/output/dense": (h, h),
                                    "intermediate/dense": (h, i), "output/dense": (i, h)}.items():
      shapes[p + name + "/kernel"] = [fan_in, fan_out]
      shapes[p + name + "/bias"] = [fan_out]
    for norm in ("attention/output/LayerNorm", "output/LayerNorm"):
      shapes[p + norm + "/gamma"] = [h]
      shapes[p + norm + "/beta"] = [h]
  return shapes


def random_google_weights(seed=0, config=CONFIG):
  rng = np.random.default_rng(seed)
  weights = {name: (rng.standard_normal(shape) * 0.1).astype(np.float32)
             for name, shape in google_weight_shapes(config).items()}
  for name in weights:  # LayerNorm scales near 1, or every representation collapses to ~0
    if name.endswith("/gamma"):
      weights[name] += 1.0
  return weights


def write_vocab(path, vocab=VOCAB):
  with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join(vocab) + "\n")


def write_google_dir(directory, weights=None, config=CONFIG, vocab=VOCAB):
  """A Google BERT TF1 directory: bert_config.json, bert_model.ckpt.*, vocab.txt."""
  weights = random_google_weights() if weights is None else weights
  os.makedirs(directory, exist_ok=True)
  with tf.Graph().as_default():
    variables = [tf.compat.v1.Variable(v, name=k) for k, v in weights.items()]
    saver = tf.compat.v1.train.Saver(variables)
    with tf.compat.v1.Session() as sess:
      sess.run(tf.compat.v1.global_variables_initializer())
      saver.save(sess, os.path.join(directory, "bert_model.ckpt"), write_meta_graph=False)
  with open(os.path.join(directory, "bert_config.json"), "w") as f:
    json.dump(config, f)
  write_vocab(os.path.join(directory, "vocab.txt"), vocab)
  return directory


def google_to_hf_name(name):
  """bert/encoder/layer_0/attention/self/query/kernel -> encoder.layer.0.attention.self.query.weight"""
  name = name[len("bert/"):].replace("layer_", "layer/")
  parts = name.split("/")
  leaf = {"kernel": "weight", "gamma": "weight", "beta": "bias", "bias": "bias"}.get(parts[-1])
  if leaf is None:  # embedding tables
    return ".".join(parts) + ".weight"
  return ".".join(parts[:-1] + [leaf])


def write_hf_dir(directory, weights=None, config=CONFIG, vocab=VOCAB, prefix="", lower_case=True):
  """A Hugging Face BERT directory: config.json, model.safetensors, vocab.txt."""
  from safetensors.numpy import save_file
  weights = random_google_weights() if weights is None else weights
  os.makedirs(directory, exist_ok=True)
  tensors = {}
  for name, value in weights.items():
    hf = prefix + google_to_hf_name(name)
    tensors[hf] = np.ascontiguousarray(value.T if name.endswith("/kernel") else value)
  save_file(tensors, os.path.join(directory, "model.safetensors"))
  with open(os.path.join(directory, "config.json"), "w") as f:
    json.dump({**config, "model_type": "bert"}, f)
  with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
    json.dump({"do_lower_case": lower_case}, f)
  write_vocab(os.path.join(directory, "vocab.txt"), vocab)
  return directory


def write_toy_task(directory, n_per_label=12, seed=0):
  """A learnable 2-label toy task in JSONL (train/eval) using only tiny-vocab words."""
  rng = np.random.default_rng(seed)
  pos = ["good", "great", "love", "fun"]
  neg = ["bad", "terrible", "hate", "boring"]
  nouns = ["movie", "book", "film", "story", "plot"]
  os.makedirs(directory, exist_ok=True)
  paths = {}
  for split, n in (("train", n_per_label), ("eval", n_per_label)):
    rows = []
    for _ in range(n):
      for label, words in (("positive", pos), ("negative", neg)):
        rows.append({"text": f"the {rng.choice(nouns)} is very {rng.choice(words)} .",
                     "label": label})
    paths[split] = os.path.join(directory, f"{split}.jsonl")
    with open(paths[split], "w") as f:
      f.write("".join(json.dumps(r) + "\n" for r in rows))
  return paths


def toy_domain_examples(domains=("a", "b", "c"), per_domain=12, seed=0):
  """Labeled multi-domain toy examples (LabeledExample) using only tiny-vocab words."""
  from metabert_tf.data.examples import LabeledExample
  rng = np.random.default_rng(seed)
  examples = []
  for domain in domains:
    for i in range(per_domain):
      label = ("negative", "positive")[i % 2]
      word = rng.choice(["good", "great", "fun"] if label == "positive" else ["bad", "boring"])
      examples.append(LabeledExample(f"the {rng.choice(['movie', 'book', 'film'])} is {word} .",
                                     label, domain=domain))
  return examples


def write_domain_json(path, **kwargs):
  """toy_domain_examples in the Meta-BERT dataset.json format [{text, label, domain}]."""
  rows = [{"text": e.text_a, "label": e.label, "domain": e.domain}
          for e in toy_domain_examples(**kwargs)]
  with open(path, "w") as f:
    json.dump(rows, f)
  return path
