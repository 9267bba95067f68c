"""Fetches the public datasets (needs network access).

  python -m data_prep.download <amazon_reviews|leopard> --dest DIR [--url URL]

Downloads the archive to DIR (temp file, then rename), extracts it into DIR (members that would land
outside DIR are refused; into a temp folder first, then renamed into place), and writes
DIR/<name>.sha256.json with url, sha256, bytes and date. The Amazon reviews'
kitchen_&_housewares folder is renamed kitchen, the domain name used everywhere.
Without a network it prints one error line and exits with status 1.
"""
from __future__ import annotations

import datetime
import hashlib
import http.client
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile

from absl import app
from absl import flags

from metabert_tf import flag_rules
from metabert_tf import io_utils
from metabert_tf.io_utils import atomic_open, atomic_write_json

DATASETS = {
    "amazon_reviews":
        "https://www.cs.jhu.edu/~mdredze/datasets/sentiment/domain_sentiment_data.tar.gz",
    "leopard": "https://github.com/iesl/leopard/archive/refs/heads/master.zip",
}
# Where the readers find the data in the extracted trees.
_LAYOUT_HINTS = {
    "amazon_reviews": "sorted_data_acl/<domain>/{positive,negative}.review",
    "leopard": "leopard-master/data/json/<task>/*.json and leopard-master/data/tf_record/",
}
# Folders renamed after extraction to the names the docs, MFT's splits and ../shared use.
_RENAMES = {
    "amazon_reviews": {"sorted_data_acl/kitchen_&_housewares": "sorted_data_acl/kitchen"},
}
_CHUNK = 1 << 20


class DownloadError(Exception):
  """A failed download or a bad archive; the message is one line for the user."""


def fetch(name, dest, url=None, timeout=60.0):
  """Downloads dataset `name` (or `url`) into `dest`, extracts it, returns the sha256 record."""
  url = url or DATASETS[name]
  os.makedirs(dest, exist_ok=True)
  basename = os.path.basename(urllib.parse.urlparse(url).path) or "archive"
  archive = os.path.join(dest, f"{name}-{basename}")
  digest, size = _download(url, archive, timeout)
  members = extract(archive, dest, _RENAMES.get(name))
  record = {"dataset": name, "url": url, "file": os.path.basename(archive), "sha256": digest,
            "bytes": size, "members": members,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
  atomic_write_json(os.path.join(dest, f"{name}.sha256.json"), record)
  return record


def _download(url, path, timeout):
  """Streams `url` into `path` (atomically); returns (sha256 hex, bytes)."""
  sha256, size = hashlib.sha256(), 0
  try:
    with urllib.request.urlopen(url, timeout=timeout) as response, atomic_open(path, "wb") as out:
      expected = response.headers.get("Content-Length")
      while chunk := response.read(_CHUNK):
        out.write(chunk)
        sha256.update(chunk)
        size += len(chunk)
      if expected is not None and int(expected) != size:
        raise DownloadError(f"could not download {url}: got {size} of {expected} bytes")
  except urllib.error.HTTPError as e:
    raise DownloadError(f"could not download {url}: HTTP {e.code} {e.reason}") from None
  except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
    raise DownloadError(f"could not download {url}: {getattr(e, 'reason', None) or e}") from None
  return sha256.hexdigest(), size


def extract(archive, dest, renames=None):
  """Extracts a zip or tar(.gz) into `dest` once every member is checked; returns their count.

  The members land in a temp folder in `dest` first, where `renames` ({old: new}, paths in the
  archive) are applied; then each top-level entry takes the place of its namesake in `dest`. A
  kill leaves the old tree or the new one under the final names, never a half-extracted one."""
  os.makedirs(dest, exist_ok=True)
  into = io_utils.public_dir(tempfile.mkdtemp(
      dir=dest, **io_utils.temp_name_parts(os.path.join(dest, "extracting"))))
  try:
    count = _extract_into(archive, dest, into)
    for old, new in (renames or {}).items():
      old, new = os.path.join(into, old), os.path.join(into, new)
      if os.path.isdir(old) and not os.path.exists(new):
        os.rename(old, new)
    for entry in os.listdir(into):
      io_utils.replace_path(os.path.join(into, entry), os.path.join(dest, entry))
  finally:
    shutil.rmtree(into, ignore_errors=True)
  return count


def _extract_into(archive, dest, into):
  """Extracts `archive` into the folder `into`, its members checked against `dest`."""
  if zipfile.is_zipfile(archive):
    with zipfile.ZipFile(archive) as z:
      names = z.namelist()
      for member in names:
        _check_inside(dest, member, archive)
      z.extractall(into)
    return len(names)
  if tarfile.is_tarfile(archive):
    with tarfile.open(archive) as t:
      members = t.getmembers()
      for member in members:
        _check_tar_member(dest, member, archive)
      # The "data" filter repeats the checks in the standard library (and drops odd permissions).
      t.extractall(into, filter="data")
    return len(members)
  raise DownloadError(f"{archive}: not a zip or tar archive")


def _check_tar_member(dest, member, archive):
  _check_inside(dest, member.name, archive)
  if member.issym():
    _check_inside(dest, os.path.join(os.path.dirname(member.name), member.linkname), archive)
  elif member.islnk():
    _check_inside(dest, member.linkname, archive)
  elif not (member.isfile() or member.isdir()):
    raise DownloadError(f"{archive}: refusing special member '{member.name}'")


def _check_inside(dest, name, archive):
  root = os.path.realpath(dest)
  target = os.path.realpath(os.path.join(root, name))
  if os.path.isabs(name) or os.path.commonpath([root, target]) != root:
    raise DownloadError(f"{archive}: member '{name}' would land outside {dest}")


def define_flags():
  """Defined on demand, not at import: importing this module must not claim common flag names."""
  flags.DEFINE_string("dest", None, "Folder to download and extract into.")
  flags.DEFINE_string("url", None, "Override the dataset's default URL (a mirror).")
  flags.DEFINE_float("timeout", 60.0, "Seconds to wait on the network before giving up.")
  flags.mark_flag_as_required("dest")
  flag_rules.register()


def main(argv):
  if len(argv) != 2 or argv[1] not in DATASETS:
    raise app.UsageError(f"expected one dataset name: {' or '.join(DATASETS)}")
  name, dest = argv[1], flags.FLAGS.dest
  print(f"downloading {flags.FLAGS.url or DATASETS[name]}", flush=True)
  try:
    record = fetch(name, dest, flags.FLAGS.url, flags.FLAGS.timeout)
  except (DownloadError, OSError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(f"{record['bytes']} bytes, sha256 {record['sha256']}, "
        f"{record['members']} members extracted into {dest}")
  print(f"data: {os.path.join(dest, _LAYOUT_HINTS[name])}")
  return 0


if __name__ == "__main__":
  define_flags()
  app.run(main)
