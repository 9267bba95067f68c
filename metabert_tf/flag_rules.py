"""The bounds of every numeric and list flag of every command-line program (bounds.py), as
absl validators.

A program calls `register(flag_values)` after defining its flags: each flag named here gets an
absl validator, so a bad value ends the program at parse time, before anything is read or
written, with one line naming the flag: `--learning_rate must be a finite number > 0, got -1`.
tests/test_flag_rules.py walks every program's flags and fails on a numeric or list flag that
has no rule here.
"""
from absl import flags

from metabert_tf.bounds import COUNT  # noqa: F401  (the rules, by name: bounds.py)
from metabert_tf.bounds import INDEX  # noqa: F401
from metabert_tf.bounds import Items
from metabert_tf.bounds import LIST_RULES
from metabert_tf.bounds import Number  # noqa: F401
from metabert_tf.bounds import POSITIVE  # noqa: F401
from metabert_tf.bounds import RULES


def rule_for(flag):
  """The rule of an absl flag object (None: no rule). A list flag takes a list rule only."""
  listed = isinstance(flag.parser, flags.ListParser)
  rule = (LIST_RULES.get(flag.name) if listed else None) or RULES.get(flag.name)
  return rule if isinstance(rule, Items) == listed else None


_LIBRARY_MODULES = ("absl", "tensorflow", "official", "tf_keras", "keras")


def is_library_flag(name, flag_values=flags.FLAGS):
  """A flag absl or TensorFlow defines (--verbosity, ...), not one of ours."""
  module = flag_values.find_module_defining_flag(name) or ""
  return module.startswith(_LIBRARY_MODULES)


def register(flag_values=flags.FLAGS):
  """Registers a validator for every flag of ours in `flag_values` that has a rule (call it
  once, after the program's flags are defined)."""
  for name, flag in flag_values._flags().items():  # pylint: disable=protected-access
    if name != flag.name or is_library_flag(name, flag_values):  # a short name; absl's own
      continue
    rule = rule_for(flag)
    if rule is None:
      continue

    def check(value, name=name, rule=rule):
      problem = rule.problem(value)
      if problem:
        raise flags.ValidationError(f"--{name} {problem}")
      return True
    flags.register_validator(name, check, flag_values=flag_values)


def needs_rule(flag):
  """Whether a flag is numeric or a list, so it must have a rule (the walking test)."""
  return (isinstance(flag.parser, (flags.IntegerParser, flags.FloatParser))
          or isinstance(flag.parser, flags.ListParser))
