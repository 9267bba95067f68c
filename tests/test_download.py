"""Downloader against a local HTTP server (never online): extraction, sha256 record, failures."""
import functools
import hashlib
import http.server
import io
import json
import pathlib
import socket
import subprocess
import sys
import tarfile
import threading
import zipfile

import pytest

from data_prep import download
from metabert_tf.data import readers

REPO_DIR = pathlib.Path(__file__).resolve().parent.parent
REVIEW = "<reviews>\n<review>\n<title>t</title>\n<review_text>\n{}\n</review_text>\n</review>\n"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):

  def log_message(self, *args):
    pass


@pytest.fixture
def server(tmp_path):
  """Serves tmp_path/www at a local URL from a thread; stopped after the test."""
  root = tmp_path / "www"
  root.mkdir()
  httpd = http.server.ThreadingHTTPServer(
      ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
  thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
  thread.start()
  yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
  httpd.shutdown()
  httpd.server_close()
  thread.join(timeout=5)


def _tar_gz(path, files):
  with tarfile.open(path, "w:gz") as tar:
    for name, text in files.items():
      data = text.encode()
      info = tarfile.TarInfo(name)
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))
  return path


def _cli(*args):
  return subprocess.run([sys.executable, "-m", "data_prep.download", *args], cwd=REPO_DIR,
                        capture_output=True, text=True, timeout=60)


def test_fetch_tar_gz_extracts_and_records_sha256(server, tmp_path):
  root, url = server
  archive = _tar_gz(root / "data.tar.gz", {
      "sorted_data_acl/books/positive.review": REVIEW.format("Great &amp; fun"),
      "sorted_data_acl/books/negative.review": REVIEW.format("Dull"),
      "sorted_data_acl/books/unlabeled.review": REVIEW.format("?"),
      "sorted_data_acl/kitchen_&_housewares/positive.review": REVIEW.format("Sharp knife"),
      "sorted_data_acl/kitchen_&_housewares/negative.review": REVIEW.format("Rusty pan")})
  dest = tmp_path / "dest"
  record = download.fetch("amazon_reviews", dest, f"{url}/data.tar.gz", timeout=10)
  blob = archive.read_bytes()
  assert record["sha256"] == hashlib.sha256(blob).hexdigest() and record["bytes"] == len(blob)
  assert record["members"] == 5
  saved = json.loads((dest / "amazon_reviews.sha256.json").read_text())
  assert saved == record and saved["url"] == f"{url}/data.tar.gz" and saved["date"]
  assert (dest / "amazon_reviews-data.tar.gz").read_bytes() == blob
  # the archive's kitchen_&_housewares is the domain "kitchen" of the docs and ../shared; a second
  # download replaces the first tree (no second kitchen) and leaves no temp folder
  for _ in range(2):
    examples = readers.read_amazon_reviews(dest / "sorted_data_acl")
    assert [(e.text_a, e.label, e.domain) for e in examples] == [
        ("Great & fun", "positive", "books"), ("Dull", "negative", "books"),
        ("Sharp knife", "positive", "kitchen"), ("Rusty pan", "negative", "kitchen")]
    download.fetch("amazon_reviews", dest, f"{url}/data.tar.gz", timeout=10)
  assert sorted(p.name for p in dest.iterdir()) == [
      "amazon_reviews-data.tar.gz", "amazon_reviews.sha256.json", "sorted_data_acl"]


def test_cli_zip(server, tmp_path):
  root, url = server
  with zipfile.ZipFile(root / "master.zip", "w") as z:
    z.writestr("leopard-master/data/json/toy/toy_eval.json", '[{"sentence1": "a", "label": "x"}]')
  dest = tmp_path / "dest"
  run = _cli("leopard", f"--dest={dest}", f"--url={url}/master.zip")
  assert run.returncode == 0, run.stderr
  assert "sha256" in run.stdout and "leopard-master/data/json" in run.stdout
  examples = readers.read_examples(dest / "leopard-master/data/json/toy/toy_eval.json")
  assert examples[0].domain == "toy"
  saved = json.loads((dest / "leopard.sha256.json").read_text())
  assert saved["sha256"] == hashlib.sha256((root / "master.zip").read_bytes()).hexdigest()


def test_cli_network_failure_is_one_line(tmp_path):
  with socket.socket() as s:  # Bind then close: nothing listens on this port afterwards.
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  dest = tmp_path / "dest"
  url = f"http://127.0.0.1:{port}/master.zip"
  run = _cli("leopard", f"--dest={dest}", f"--url={url}", "--timeout=5")
  assert run.returncode == 1
  assert run.stderr.startswith(f"error: could not download {url}: ")
  assert "refused" in run.stderr and run.stderr.count("\n") == 1 and "Traceback" not in run.stderr
  assert list(dest.iterdir()) == []  # No partial archive.


def test_http_error_and_not_an_archive(server, tmp_path):
  root, url = server
  with pytest.raises(download.DownloadError, match="HTTP 404"):
    download.fetch("leopard", tmp_path / "d1", f"{url}/missing.zip", timeout=10)
  (root / "page.html").write_text("<html></html>")
  with pytest.raises(download.DownloadError, match="not a zip or tar archive"):
    download.fetch("leopard", tmp_path / "d2", f"{url}/page.html", timeout=10)


@pytest.mark.parametrize("name", ["../evil.txt", "/tmp/evil.txt", "ok/../../evil.txt"])
def test_rejects_members_escaping_dest(tmp_path, name):
  dest = tmp_path / "dest"
  dest.mkdir()
  with pytest.raises(download.DownloadError, match="outside"):
    download.extract(_tar_gz(tmp_path / "a.tar.gz", {"fine.txt": "x", name: "evil"}), dest)
  with zipfile.ZipFile(tmp_path / "a.zip", "w") as z:
    z.writestr("fine.txt", "x")
    z.writestr(name, "evil")
  with pytest.raises(download.DownloadError, match="outside"):
    download.extract(tmp_path / "a.zip", dest)
  assert list(dest.iterdir()) == [] and not (tmp_path / "evil.txt").exists()


def test_rejects_symlink_escaping_dest(tmp_path):
  path = tmp_path / "link.tar"
  with tarfile.open(path, "w") as tar:
    link = tarfile.TarInfo("data/passwd")
    link.type, link.linkname = tarfile.SYMTYPE, "../../etc/passwd"
    tar.addfile(link)
  with pytest.raises(download.DownloadError, match="outside"):
    download.extract(path, tmp_path / "dest")


def test_cli_unknown_dataset(tmp_path):
  run = _cli("imdb", f"--dest={tmp_path}")
  assert run.returncode == 1 and "amazon_reviews or leopard" in run.stderr
