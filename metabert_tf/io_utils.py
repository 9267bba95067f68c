"""Small file helpers: nothing half-written is ever left behind."""
import contextlib
import json
import os
import re
import shutil
import tempfile

from absl import logging

from metabert_tf.errors import DataError


@contextlib.contextmanager
def atomic_open(path, mode="w", encoding="utf-8"):
  """Writes to a temp file beside `path`, renames it over `path` only on success."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, **temp_name_parts(path))
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


@contextlib.contextmanager
def atomic_dir(directory):
  """Yields a temp directory beside `directory` to fill; on success it replaces `directory`
  (an earlier one is removed first), on failure it is removed: a reader sees the old
  directory or the new one, never a half-written one."""
  if os.path.lexists(directory) and not os.path.isdir(directory):
    raise DataError(directory, "exists and is not a directory; not replacing it")
  parent = os.path.dirname(os.path.abspath(directory))
  os.makedirs(parent, exist_ok=True)
  tmp = public_dir(tempfile.mkdtemp(dir=parent, **temp_name_parts(directory)))
  try:
    yield tmp
    replace_path(tmp, directory)
  finally:
    if os.path.isdir(tmp):
      shutil.rmtree(tmp)


def replace_path(source, target):
  """Renames `source` to `target`. An existing target is first renamed aside (to a temp name
  remove_leftovers knows), then removed: killed at any moment, `target` is the old or the new,
  never half of one."""
  aside = _rename_aside(target)
  os.replace(source, target)
  if aside:
    shutil.rmtree(aside)


def remove_path(target):
  """Removes `target` (a file or a directory tree) by one rename aside, then the deletion:
  killed at any moment, `target` is whole or gone, never half deleted."""
  aside = _rename_aside(target)
  if aside:
    shutil.rmtree(aside)


def _rename_aside(target):
  """Moves an existing `target` into a new temp dir beside it (a name remove_leftovers knows)
  and returns that dir; None when there is no target."""
  if not os.path.lexists(target):
    return None
  aside = tempfile.mkdtemp(dir=os.path.dirname(os.path.abspath(target)),
                           **temp_name_parts(target))
  os.replace(target, os.path.join(aside, "old"))
  return aside


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


def temp_name_parts(path):
  """mkstemp/mkdtemp arguments for a temp entry that will be renamed to `path`:
  `.<name>.<8 random characters>.tmp`, the name remove_leftovers knows."""
  return {"prefix": "." + os.path.basename(os.path.abspath(path)) + ".", "suffix": ".tmp"}


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


# What a SIGKILL leaves in the middle of a save (a clean exit or an exception leaves nothing):
_OWN_TEMP = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp")  # atomic_open, export (temp_name_parts)
_LEFTOVERS = [
    re.compile(r"\.export-[a-z0-9_]{8}"),          # export dirs before temp_name_parts
    re.compile(r".+\.tempstate\d+"),                 # TF tensor bundle being written
    re.compile(r"checkpoint\.tmp[0-9a-f]{32}"),      # TF's atomic write of the state file
]
_DATA_FILE = re.compile(r"(?P<prefix>.+)\.data-\d{5}-of-\d{5}")
# TF's checkpoint save writes <prefix>_temp/part-* (<prefix>_temp_<hex>/ in older versions) and
# renames the parts: a directory of that name holding anything else is not ours to remove.
_TF_SAVE_TEMP = re.compile(r".+_temp(_[0-9a-f]{32})?")


def _is_tf_save_temp(directory, entry):
  path = os.path.join(directory, entry)
  return (_TF_SAVE_TEMP.fullmatch(entry) is not None and os.path.isdir(path)
          and not os.path.islink(path) and all(n.startswith("part-") for n in os.listdir(path)))


def remove_leftovers(directory, names=None):
  """Removes what an interrupted save left in `directory` (not below it) and logs it.

  Only for directories of ours (an output dir, its ckpt/), and only the names above, plus
  checkpoint data files without their .index (a merge or a deletion cut short). With `names`
  (a directory shared with others, such as an --export_dir's parent), only the temp entries
  of saving those names. Returns the removed paths."""
  if not os.path.isdir(directory):
    return []
  entries = set(os.listdir(directory))
  removed = []
  for entry in sorted(entries):
    own = _OWN_TEMP.fullmatch(entry)
    if names is not None:
      leftover = own is not None and own.group("name") in names
    else:
      data = _DATA_FILE.fullmatch(entry)
      leftover = (own is not None or any(p.fullmatch(entry) for p in _LEFTOVERS)
                  or _is_tf_save_temp(directory, entry)
                  or (data is not None and data.group("prefix") + ".index" not in entries))
    if leftover:
      path = os.path.join(directory, entry)
      if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
      else:
        os.remove(path)
      removed.append(path)
  if removed:
    logging.info("Removed what an interrupted save left: %s", ", ".join(removed))
  return removed
