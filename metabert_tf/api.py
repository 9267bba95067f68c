"""The Python API: a few-shot text classifier in a few lines, and meta-training.

  from metabert_tf import FewShotClassifier
  clf = FewShotClassifier.from_pretrained("minilm-l6")
  clf.fit(texts, labels, epochs=10)
  clf.predict(["a new text"]), clf.predict_proba(["a new text"])
  clf.save("my_model")            # FewShotClassifier.from_pretrained("my_model") reads it back
  clf.export("my_model/export")   # the SavedModel `python -m metabert_tf.predict` serves

  from metabert_tf import meta_train
  ckpt = meta_train("leopard", ["glue/SST-2/train.tsv:text=sentence", ...], "out/leopard")
  FewShotClassifier.from_pretrained(ckpt).fit(texts, labels)  # generated head, learned rates

The same jobs as run_finetune.py and run_meta_train.py run underneath, with the same config
dataclasses and defaults; bad input raises metabert_tf.errors exceptions with the messages the
command-line programs print.
"""
import dataclasses
import hashlib
import json
import os
import tempfile

import numpy as np
import tensorflow as tf

from metabert_tf import backbones
from metabert_tf import bounds
from metabert_tf import checkpoints
from metabert_tf import datasets
from metabert_tf import evaluation
from metabert_tf import export as export_lib
from metabert_tf import finetune_job
from metabert_tf import io_utils
from metabert_tf import mft as mft_lib
from metabert_tf import model_cache
from metabert_tf import model_spec
from metabert_tf import multidomain_job
from metabert_tf import records
from metabert_tf import runtime
from metabert_tf import training
from metabert_tf.data.examples import LabeledExample
from metabert_tf.errors import ConfigError
from metabert_tf.errors import DataError
from metabert_tf.meta import algorithms
from metabert_tf.meta import job as meta_job

# fit()'s recipe: the fields of training.FinetuneConfig (run_finetune.py's flags and defaults),
# and how the head starts.
RECIPE_FIELDS = tuple(f.name for f in dataclasses.fields(training.FinetuneConfig))
FIT_OPTIONS = ("head_init", "leopard_head")


def check_settings(settings, known=None, owner=None, flag_names=None):
  """Each setting is one `owner` takes (`known`; None: any) and within its command-line flag's
  bounds (bounds.RULES; `flag_names` maps a setting to its flag where the names differ): else a
  ConfigError naming it, worded as the CLI's."""
  flag_names = flag_names or {}
  for name, value in settings.items():
    if known is not None and name not in known:
      raise ConfigError(f"is not a setting of {owner} (its settings: {', '.join(known)})",
                        field=name)
    rule = bounds.RULES.get(flag_names.get(name, name))
    problem = rule.problem(value) if rule is not None and value is not None else None
    if problem:
      raise ConfigError(problem, field=name, flag=flag_names.get(name))


def _check_model_choices(pooling=None, precision="fp32"):
  if pooling is not None and pooling not in ("pooler", "mean"):
    raise ConfigError(f"must be pooler or mean, got {pooling!r}", field="pooling")
  if precision not in runtime.PRECISIONS:
    raise ConfigError(f"must be one of {', '.join(runtime.PRECISIONS)}, got {precision!r}",
                      field="precision")


def to_examples(texts, labels=None, text_pairs=None):
  """LabeledExamples of in-memory lists: `texts` (str each), `labels` (str or int each, kept as
  strings: label names are what checkpoints store) and `text_pairs` (second texts), of one
  length. Anything else is a DataError naming the argument and the position."""
  def as_list(values, name):
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
      raise DataError(name, f"expected a list, got {type(values).__name__}")
    return list(values)

  texts = as_list(texts, "texts")
  if not texts:
    raise DataError("texts", "no examples")
  columns = {"texts": texts}
  for name, values in (("labels", labels), ("text_pairs", text_pairs)):
    if values is not None:
      columns[name] = as_list(values, name)
      if len(columns[name]) != len(texts):
        raise DataError(name, f"has {len(columns[name])} items, texts has {len(texts)}")
  for name, values in columns.items():
    kinds = (str, int, np.integer) if name == "labels" else (str,)
    for i, value in enumerate(values):
      if not isinstance(value, kinds) or isinstance(value, bool):
        raise DataError(name, f"expected {'a str or int' if name == 'labels' else 'a str'}, "
                        f"got {type(value).__name__} {value!r}", f"[{i}]")
  return [LabeledExample(t, None if labels is None else str(columns["labels"][i]),
                         text_b=None if text_pairs is None else columns["text_pairs"][i],
                         where=f"[{i}]")
          for i, t in enumerate(texts)]


class FewShotClassifier:
  """A text(-pair) classifier on a BERT encoder: fine-tuned with `fit` on a few labeled
  examples, or a trained one loaded with `from_pretrained`."""

  def __init__(self, spec, strategy=None):
    """Use from_pretrained. `spec`: a finetune_job.FinetuneJob's model fields."""
    self._spec = spec
    self._strategy = strategy or tf.distribute.get_strategy()
    self._built = None          # finetune_job.Built, once trained or loaded
    self._input_encoder = None
    self.train_results = None   # the last fit's statistics (steps, seconds, training loss)

  @classmethod
  def from_pretrained(cls, model=model_cache.DEFAULT_MODEL, labels=None, pooling=None, *,
                      max_seq_length=128, precision="fp32", do_lower_case=None, strategy=None):
    """Any run_finetune.py --bert_model value: the bundled name, a Google or Hugging Face BERT
    directory, or a checkpoint of ours (fine-tuned: ready to predict; meta-trained: `fit` it;
    a LEOPARD-family one is fine-tuned with its generated head and learned rates). `labels`:
    the label order (ids) of the head `fit` trains (default: the model's, else sorted)."""
    check_settings({"max_seq_length": max_seq_length}, ("max_seq_length",), "from_pretrained")
    _check_model_choices(pooling, precision)
    source = backbones.describe_backbone(model, do_lower_case)  # a bad path fails here
    source.check_max_seq_length(max_seq_length)
    spec = dict(bert_model=model, do_lower_case=do_lower_case, max_seq_length=max_seq_length,
                precision=precision, pooling=pooling,
                label_list=None if labels is None else [str(x) for x in labels])
    return cls(spec, strategy)

  @property
  def labels(self):
    """The classes in the order of predict_proba's columns: the trained head's (a checkpoint
    with one is loaded to read them), else the `labels` given to from_pretrained, else None."""
    if self._built is None:
      self._load_trained(required=False)
    return list(self._built.label_list) if self._built else self._spec["label_list"]

  def _job(self, output_dir, **options):
    return finetune_job.FinetuneJob(output_dir=output_dir, **self._spec, **options)

  def _load(self, job):
    runtime.set_seed(job.train.seed)
    runtime.set_precision(job.precision)
    with self._strategy.scope():
      backbone = backbones.load_backbone(job.bert_model, job.do_lower_case, job.dropout)
    self._input_encoder = backbone.input_encoder(job.max_seq_length)
    return backbone

  def _load_trained(self, required=True):
    """The checkpoint's own trained classifier, for predicting without `fit`."""
    source = backbones.describe_backbone(self._spec["bert_model"], self._spec["do_lower_case"])
    job = self._job(output_dir="", dropout=False)
    if not (source.checkpoint_prefix and source.label_list):
      if required:
        raise ConfigError(f"{job.bert_model} has no trained classifier: call fit(texts, labels) "
                          "first")
      return
    backbone = self._load(job)
    finetune_job.check_zero_shot(job, backbone, job.label_list)
    self._built = finetune_job.build_model(job, self._strategy, backbone, backbone.label_list,
                                           train=False)

  def fit(self, texts, labels, text_pairs=None, *, output_dir=None, head_init="random",
          leopard_head=True, **recipe):
    """Fine-tunes a new classifier on in-memory examples, from the pretrained weights (each
    call starts afresh), and returns self. `recipe`: training.FinetuneConfig's fields
    (epochs=10, batch_size=16, learning_rate=2e-5, warmup_proportion=0.1, seed=0, progress,
    save_every_steps), run_finetune.py's defaults. `output_dir` keeps the checkpoints, so a
    call killed part-way resumes there; without it they go to a temporary directory.
    `head_init="prototypes"` starts the dense head at the nearest class mean."""
    check_settings(recipe, RECIPE_FIELDS, "fit")
    if head_init not in finetune_job.HEAD_INITS:
      raise ConfigError(f"must be one of {', '.join(finetune_job.HEAD_INITS)}, got "
                        f"{head_init!r}", field="head_init")
    examples = to_examples(texts, labels, text_pairs)
    if output_dir is None:
      with tempfile.TemporaryDirectory(prefix="metabert_fit_") as scratch:
        return self._fit(examples, scratch, head_init, leopard_head, recipe)
    io_utils.check_writable(output_dir, "output_dir", directory=True)
    os.makedirs(output_dir, exist_ok=True)
    return self._fit(examples, output_dir, head_init, leopard_head, recipe)

  def _fit(self, examples, output_dir, head_init, leopard_head, recipe):
    job = self._job(output_dir, train=training.FinetuneConfig(**recipe), head_init=head_init,
                    leopard_head=leopard_head)
    _same_run(output_dir, job, "fit.json", examples=_digest(examples))
    io_utils.remove_leftovers(output_dir)
    backbone, built, features = self._new_classifier(job, examples)
    self.train_results = finetune_job.fit(job, built, features, "labels", self._strategy,
                                          backbone)
    self._built = built
    return self

  def fit_prototypes(self, texts, labels, text_pairs=None):
    """Proto-BERT's way to meet a task: no training, the classifier is the nearest class mean
    (Euclidean) of the encoder's sentence features, as a dense head W_c = 2 mu_c,
    b_c = -|mu_c|^2 (logits_c = -|x - mu_c|^2 + |x|^2). For an encoder meta-trained with
    `meta_train("proto_bert", ...)`; any encoder works. Returns self."""
    examples = to_examples(texts, labels, text_pairs)
    job = self._job("", dropout=False, leopard_head=False, head_init="prototypes")
    _, built, features = self._new_classifier(job, examples, train=False)
    datasets.require_two_labels(features["label_ids"], built.label_list, "labels")
    finetune_job.init_head_from_prototypes(built.model, features, len(built.label_list),
                                           job.eval_batch_size)
    self.train_results = {"num_train_examples": len(examples), "train_steps": 0}
    self._built = built
    return self

  def _new_classifier(self, job, examples, train=True):
    """The backbone, a classifier of job's kind for the examples' labels, and their features."""
    backbone = self._load(job)
    label_list = datasets.choose_label_list([examples], job.label_list, backbone.label_list,
                                            source="labels")
    built = finetune_job.build_model(job, self._strategy, backbone, label_list, train=train)
    features = records.encode(examples, self._input_encoder, label_list, source="labels")
    return backbone, built, features

  def _trained(self):
    if self._built is None:
      self._load_trained()
    return self._built

  def predict_proba(self, texts, text_pairs=None, batch_size=64):
    """Class probabilities [n, len(labels)] (float32), columns in the order of `labels`."""
    built = self._trained()
    check_settings({"batch_size": batch_size}, ("batch_size",), "predict_proba")
    features = self._input_encoder.encode_examples(to_examples(texts, None, text_pairs))
    logits = evaluation.predict_logits(built.model, features, batch_size, progress=False)
    return tf.nn.softmax(tf.constant(logits, tf.float32), axis=-1).numpy()

  def predict(self, texts, text_pairs=None, batch_size=64):
    """The most probable label of each text (label names, as strings)."""
    built = self._trained()
    probabilities = self.predict_proba(texts, text_pairs, batch_size)
    return [built.label_list[i] for i in np.argmax(probabilities, axis=-1)]

  def evaluate(self, texts, labels, text_pairs=None, batch_size=64):
    """{"accuracy", "macro_f1", "num_examples"} on labeled examples; labels the head does not
    know are an error (as run_finetune.py's)."""
    built = self._trained()
    examples = to_examples(texts, labels, text_pairs)
    datasets.unseen_labels(examples, built.label_list, "labels", allow=False)
    gold = records.encode(examples, self._input_encoder, built.label_list,
                          source="labels")["label_ids"]
    predicted = np.argmax(self.predict_proba(texts, text_pairs, batch_size), axis=-1)
    metrics = evaluation.classification_metrics(gold, predicted)
    return {k: metrics[k] for k in ("accuracy", "macro_f1", "num_examples")}

  def save(self, directory):
    """Writes the classifier as a checkpoint of ours (weights and metadata, no optimizer) that
    from_pretrained(directory) and run_finetune.py --bert_model read; replaces an earlier save
    there. Written beside it first, then renamed into place."""
    built = self._trained()
    if os.path.isdir(directory) and os.listdir(directory) and not (
        checkpoints.is_toolkit_checkpoint(directory)):
      raise ConfigError(f"{directory} exists and is not a saved model; not replacing it",
                        field="directory")
    with io_utils.atomic_dir(directory) as tmp:
      path = checkpoints.model_checkpoint(built.model, built.metadata).write(
          os.path.join(tmp, "model"))
      checkpoints.record_checkpoint(tmp, path)
    return directory

  def export(self, directory):
    """Writes the SavedModel (raw strings in, the tokenizer in the graph) that
    `python -m metabert_tf.predict --model_dir` and TF Serving run."""
    built = self._trained()
    return export_lib.export_saved_model(built.model, self._input_encoder, built.label_list,
                                         directory)


# meta_train's settings besides the algorithm's: the model's and the job's (MetaJob and
# MultiDomainJob fields; their defaults are the command-line programs').
MODEL_SETTINGS = tuple(f.name for f in dataclasses.fields(model_spec.ModelSpec))
META_JOB_SETTINGS = ("test_domains", "num_domain", "save_every_steps", "meta_test_exclude")


def _data_specs(data, output_dir):
  """(specs, digest): a data spec or a list of them, as given (digest None); in-memory examples
  (dicts with text, label and optionally text_b and domain, or LabeledExamples) are written to
  output_dir/data.json first (a source per domain for the task-source algorithms), and digest
  names them (the file's path is the same whatever they are)."""
  if isinstance(data, str):
    return data, None
  items = list(data)
  if not items or all(isinstance(x, str) for x in items):
    if not items:
      raise DataError("data", "no data")
    return items, None
  rows = []
  for i, x in enumerate(items):
    row = dataclasses.asdict(x) if isinstance(x, LabeledExample) else x
    if not isinstance(row, dict) or "label" not in row or not (row.get("text") or row.get(
        "text_a")):
      raise DataError("data", "expected data specs, or examples as dicts with text and label "
                      f"(and optionally text_b, domain), got {x!r}", f"[{i}]")
    rows.append({"text": row.get("text", row.get("text_a")), "label": str(row["label"]),
                 **{k: row[k] for k in ("text_b", "domain") if row.get(k) is not None}})
  path = os.path.join(output_dir, "data.json")
  io_utils.atomic_write_json(path, rows)
  return path, hashlib.sha256(json.dumps(rows, sort_keys=True).encode("utf-8")).hexdigest()


def _digest(examples):
  """A digest of in-memory examples (what a run in output_dir was trained on)."""
  rows = [[e.text_a, e.text_b, e.label, e.domain] for e in examples]
  return hashlib.sha256(json.dumps(rows).encode("utf-8")).hexdigest()


def _same_run(output_dir, job, record="meta_train.json", **more):
  """Refuses to resume a run of other settings (the job's and `more`) in output_dir, as the
  CLIs' hyparams.txt does; records them in output_dir/`record`. A record with no checkpoint
  beside it (a call that failed before training) is replaced."""
  path = os.path.join(output_dir, record)
  settings = json.loads(json.dumps({**dataclasses.asdict(job), **more}, default=str))
  settings.pop("output_dir")
  settings.get("train", {}).pop("progress", None)  # how a run reports, not what it computes
  if os.path.exists(path) and tf.train.latest_checkpoint(os.path.join(output_dir, "ckpt")):
    with open(path, encoding="utf-8") as f:
      old = json.load(f)
    changed = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
    if changed:
      raise ConfigError(f"{output_dir} holds a run with other settings ({', '.join(changed)}): "
                        "pass the same ones to resume it, or another output_dir")
  io_utils.atomic_write_json(path, settings)


def meta_train(algorithm, data, output_dir, strategy=None, **config):
  """Meta-trains (or resumes, given the same output_dir and settings) and returns the
  checkpoint path, which from_pretrained and run_finetune.py --bert_model read.

  algorithm: fomaml, reptile (episodes of the domains of one multi-domain `data`); leopard,
  smlmt, hybrid_smlmt, proto_fomaml, proto_reptile, proto_bert, mt_bert (every item of `data`
  a task source); mft, mix, mtl, adv (run_multidomain.py's supervised methods on one `data`).
  data: a data spec (any reader format, PATH:options), a list of them, or in-memory examples.
  config: the model's settings (bert_model, max_seq_length, precision, ...), the job's
  (test_domains, ...) and the algorithm's, named as in meta_job.settings_of(algorithm)
  (supervised methods: training.FinetuneConfig's and mft.MFTConfig's fields, adversarial_weight,
  eval_data); each left out takes the command-line program's default."""
  check_settings(config)  # the bounds; which settings the algorithm takes: below
  _check_model_choices(config.get("pooling"), config.get("precision", "fp32"))
  io_utils.check_writable(output_dir, "output_dir", directory=True)
  os.makedirs(output_dir, exist_ok=True)
  specs, examples = _data_specs(data, output_dir)
  model = {k: config.pop(k) for k in MODEL_SETTINGS if k in config}
  if algorithm in multidomain_job.METHODS:
    job = _multidomain_job(algorithm, specs, output_dir, model, config)
    _same_run(output_dir, job, examples=examples)
    return multidomain_job.run_multidomain_job(job, strategy)["checkpoint"]
  job_settings = {k: config.pop(k) for k in META_JOB_SETTINGS if k in config}
  if not algorithms.get(algorithm).by_sources:
    specs = _one_spec(algorithm, specs)
  job = meta_job.MetaJob(output_dir=output_dir, data=specs, algorithm=algorithm,
                         meta=meta_job.meta_config(algorithm, **config), **model,
                         **job_settings)
  inputs = meta_job.read_inputs(job)  # bad data fails before anything is trained
  _same_run(output_dir, job, examples=examples)
  return meta_job.run_meta_job(job, strategy, inputs)["checkpoint"]


def _one_spec(method, specs):
  """The data of a method that trains on one multi-domain file (a list of one is that one)."""
  if isinstance(specs, str):
    return specs
  if len(specs) != 1:
    raise DataError("data", f"{method} trains on one multi-domain data spec, got {len(specs)}")
  return specs[0]


def _multidomain_job(method, data, output_dir, model, config):
  data = _one_spec(method, data)
  defaults = multidomain_job.MultiDomainJob(output_dir=output_dir, data=data)
  groups = {"train": RECIPE_FIELDS,
            "mft": tuple(f.name for f in dataclasses.fields(mft_lib.MFTConfig))}
  known = RECIPE_FIELDS + groups["mft"] + ("adversarial_weight", "eval_data")
  check_settings(config, known, method, mft_lib.FLAG_NAMES)
  parts = {name: dataclasses.replace(getattr(defaults, name), **{
      k: v for k, v in config.items() if k in fields}) for name, fields in groups.items()}
  rest = {k: v for k, v in config.items() if k in ("adversarial_weight", "eval_data")}
  return dataclasses.replace(defaults, method=method, **model, **parts, **rest)
