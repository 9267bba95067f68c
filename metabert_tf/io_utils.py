"""Small file helpers: nothing half-written is ever left behind."""
import contextlib
import json
import os
import tempfile

from data_prep.examples import DataError


@contextlib.contextmanager
def atomic_open(path, mode="w", encoding="utf-8"):
  """Writes to a temp file beside `path`, renames it over `path` only on success."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
  os.close(fd)
  os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
  try:
    with open(tmp, mode, **({} if "b" in mode else {"encoding": encoding})) as f:
      yield f
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def check_writable(path, flag, directory=False):
  """DataError unless `path` can be written as a file (or made a `directory`); checked before
  slow work, not after it. The nearest existing folder at or above `path` must take a new file
  (atomic_open and makedirs make the rest)."""
  if directory and os.path.exists(path) and not os.path.isdir(path):
    raise DataError(path, f"{flag} exists and is not a directory")
  if not directory and os.path.isdir(path):
    raise DataError(path, f"{flag} is a directory; expected a file path")
  existing = path if directory and os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise DataError(path, f"{flag} cannot be written: {existing} is not a directory")
  try:  # a real probe: permission bits do not bind root, and mounts may be read-only
    tempfile.TemporaryFile(dir=existing).close()
  except OSError as e:
    raise DataError(path, f"{flag} cannot be written in {existing} ({e.strerror})") from None


def _umask():
  mask = os.umask(0)
  os.umask(mask)
  return mask


def public_dir(path):
  """Gives a directory made by mkdtemp (0700) the usual permissions."""
  os.chmod(path, 0o777 & ~_umask())
  return path


def atomic_write_text(path, text):
  with atomic_open(path) as f:
    f.write(text)


def atomic_write_json(path, obj):
  atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
