"""One set of defaults: a setting left out means the same from a command-line program as from
the Python API. Each program's flag defaults are compared with the dataclasses the library (and
metabert_tf.api) builds its jobs from."""
import dataclasses

import pytest

from metabert_tf import finetune_job
from metabert_tf import mft
from metabert_tf import model_spec
from metabert_tf import multidomain_job
from metabert_tf.meta import algorithms
from metabert_tf.meta import job as meta_job
from tests import programs


def _flag_defaults(program):
  """(the program's module, {flag: default}) of the flags it defines."""
  with programs.defined_flags(program, with_module=True) as (module, defined):
    return module, {name: flag.default for name, flag in defined.items()}


def _field_defaults(instance):
  return {f.name: getattr(instance, f.name) for f in dataclasses.fields(instance)}


def _differences(flag_defaults, library_defaults, names=None):
  """[(name, flag default, library default)] where a flag of the same name (or `names[field]`)
  differs from the library's default."""
  names = names or {}
  return [(field, flag_defaults[names.get(field, field)], value)
          for field, value in library_defaults.items()
          if names.get(field, field) in flag_defaults
          and flag_defaults[names.get(field, field)] != value]


def test_run_finetune_defaults_are_the_jobs():
  _, defaults = _flag_defaults("run_finetune.py")
  job = finetune_job.FinetuneJob(output_dir="x")
  assert not _differences(defaults, _field_defaults(job.train))
  assert not _differences(defaults, {**_field_defaults(job), "train": None, "output_dir": None})


@pytest.mark.parametrize("program", ["run_finetune.py", "run_meta_train.py",
                                     "run_multidomain.py"])
def test_the_model_flags_default_to_the_model_spec(program):
  _, defaults = _flag_defaults(program)
  assert not _differences(defaults, _field_defaults(model_spec.ModelSpec()))


def test_run_meta_train_defaults_are_each_algorithms(monkeypatch):
  """The program passes every flag (config_from_flags); left at their defaults they must give
  each algorithm the config the API gives it when nothing is set."""
  module, defaults = _flag_defaults("run_meta_train.py")
  names = meta_job.ENGINE_SETTINGS + meta_job.DOMAIN_SETTINGS + meta_job.SOURCE_SETTINGS
  for algorithm in algorithms.NAMES:
    from_flags = meta_job.meta_config(
        algorithm, strict=False, **{n: defaults[n] for n in names if n in defaults},
        **{field: defaults[flag] for flag, field in module.CONFIG_FLAGS.items()})
    assert from_flags == meta_job.meta_config(algorithm), algorithm


def test_run_multidomain_defaults_are_the_jobs():
  _, defaults = _flag_defaults("run_multidomain.py")
  job = multidomain_job.MultiDomainJob(output_dir="x", data="y")
  assert not _differences(defaults, _field_defaults(job.train))
  assert not _differences(defaults, _field_defaults(job.mft), mft.FLAG_NAMES)
  assert defaults["adversarial_weight"] == job.adversarial_weight
  assert set(mft.FLAG_NAMES.values()) <= set(defaults)  # every MFT setting has its flag
