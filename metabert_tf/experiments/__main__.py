r"""Run an experiment protocol over its grid: a table, resumable.

  python -m metabert_tf.experiments --protocol leopard --data_dir ../shared/data/leopard/json \
      --tasks sentiment_books,scitail --ks 4,8,16 --splits 10 --output_dir results/baseline
  python -m metabert_tf.experiments --protocol meta_bert \
      --data ../shared/data/blitzer_mds_4domain --seeds 0,1,2 --output_dir results/meta_bert
  python -m metabert_tf.experiments --protocol mft --data_dir data/mft_amazon \
      --output_dir results/mft --seeds 0,1,2

Every setting of a protocol's Config is a flag of the same name (--helpfull lists them). The
settings are recorded in output_dir/experiment.json; re-running with the same ones reuses every
finished run, and other settings (beyond those that only pick cells) are refused.
"""
import dataclasses
import typing

from absl import app
from absl import flags

from metabert_tf import cli
from metabert_tf import flag_rules
from metabert_tf import runtime
from metabert_tf.errors import ConfigError
from metabert_tf.experiments import PROTOCOLS
from metabert_tf.experiments import grid

FLAGS = flags.FLAGS


def _kind(annotation):
  """(base type, is a list) of a Config field's annotation (Optional[...] unwrapped)."""
  args = [a for a in typing.get_args(annotation) if a is not type(None)]
  if typing.get_origin(annotation) is typing.Union:
    return _kind(args[0])
  if typing.get_origin(annotation) in (list, typing.List):
    return args[0], True
  return annotation, False


def define_flags(protocols=None, flag_values=FLAGS):
  """--protocol, --run_cell and one flag per setting of the protocols' Configs (default None:
  an unset flag leaves the protocol's own default)."""
  protocols = protocols or list(PROTOCOLS.values())
  flags.DEFINE_enum("protocol", protocols[0].NAME if len(protocols) == 1 else None,
                    [p.NAME for p in protocols], "The experiment protocol.",
                    flag_values=flag_values)
  flags.DEFINE_integer("run_cell", None, "Run cell I of the experiment recorded in --output_dir "
                       "(how the grid runs a cell in a child process).", flag_values=flag_values)
  defined = set()
  for protocol in protocols:
    hints = typing.get_type_hints(protocol.Config)
    for field in dataclasses.fields(protocol.Config):
      if field.name in defined:
        continue
      defined.add(field.name)
      base, is_list = _kind(hints[field.name])
      default = field.default_factory() if is_list else field.default
      text = f"{field.metadata['help']} (default: {default})"
      kwargs = dict(flag_values=flag_values)
      if is_list:
        flags.DEFINE_list(field.name, None, text, **kwargs)
      elif field.metadata.get("choices"):
        flags.DEFINE_enum(field.name, None, field.metadata["choices"], text, **kwargs)
      else:
        define = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer,
                  float: flags.DEFINE_float, str: flags.DEFINE_string}[base]
        define(field.name, None, text, **kwargs)
  flag_rules.register(flag_values)


def config_from_flags(protocol, flag_values=FLAGS):
  """protocol.Config from the flags that are set; a set flag that is not one of its settings
  is an error."""
  hints = typing.get_type_hints(protocol.Config)
  names = {f.name for f in dataclasses.fields(protocol.Config)}
  values = {}
  settings = {f.name for p in PROTOCOLS.values() for f in dataclasses.fields(p.Config)}
  for name in sorted(settings):
    if name not in flag_values or flag_values[name].value is None:
      continue
    if name not in names:
      raise ConfigError(f"is not a setting of --protocol={protocol.NAME}; drop it", field=name)
    base, is_list = _kind(hints[name])
    value = flag_values[name].value
    values[name] = [base(v) for v in value] if is_list else value
  return protocol.Config(**values)


def main(argv):
  del argv
  with cli.user_errors_exit():
    if FLAGS.run_cell is not None:  # a child of grid.run
      if not FLAGS.output_dir:
        raise ConfigError("is required with --run_cell", field="output_dir")
      protocol, config = grid.load(FLAGS.output_dir, PROTOCOLS)
      cells = protocol.cells(config)
      if not 0 <= FLAGS.run_cell < len(cells):
        raise ConfigError(f"must be a cell of the grid in {FLAGS.output_dir}: 0..{len(cells) - 1},"
                          f" got {FLAGS.run_cell}", field="run_cell")
      runtime.log_to_file(FLAGS.output_dir)
      protocol.run_cell(config, cells[FLAGS.run_cell])
      return
    if not FLAGS.protocol:
      raise ConfigError(f"is required: one of {', '.join(PROTOCOLS)}", field="protocol")
    protocol = PROTOCOLS[FLAGS.protocol]
    cli.print_result(grid.run(protocol, config_from_flags(protocol)))


def run_as(name):
  """The entry point of an old module name (metabert_tf.harness, ...): this CLI for one
  protocol, with only its flags."""
  define_flags([PROTOCOLS[name]])
  app.run(main)


if __name__ == "__main__":
  define_flags()
  app.run(main)
