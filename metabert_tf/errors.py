"""The library's exceptions: what a user got wrong, each with a message that says where and what
was expected. Entry points print them as one line and exit 1 (cli.user_errors_exit); Python
callers catch them (all derive from `Error`)."""


class Error(Exception):
  """Base of the errors a user can fix (bad data, settings or model files)."""


class DataError(Error, ValueError):
  """Bad input data. The message names the file, the record/line and what was expected."""

  def __init__(self, path, message, record=None):
    where = str(path) if record is None else f"{path}:{record}"
    super().__init__(f"{where}: {message}")
    self.path = str(path)
    self.record = record


class ConfigError(Error, ValueError):
  """Bad settings or model configuration (config.json, a setting's value). `field`, when given,
  names the setting (a config dataclass field, as Python callers name it); entry points show it
  as its flag, `--flag` (the field's name unless the flag is named otherwise)."""

  def __init__(self, message, field=None, flag=None):
    super().__init__(f"{field} {message}" if field else message)
    self.field, self.message = field, message
    self.flag = flag or field


class ModelCacheError(Error, RuntimeError):
  """The bundled model could not be fetched or verified."""


USER_ERRORS = (Error,)
