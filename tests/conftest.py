"""Shared pytest fixtures."""
import json
import os
import pathlib
import socket

import pytest

REPO_DIR = pathlib.Path(__file__).resolve().parent.parent


def local_worker_configs(n):
  """TF_CONFIG values for `n` workers on free localhost ports (multi-worker tests)."""
  sockets = [socket.socket() for _ in range(n)]
  for s in sockets:
    s.bind(("127.0.0.1", 0))
  workers = [f"127.0.0.1:{s.getsockname()[1]}" for s in sockets]
  for s in sockets:
    s.close()
  return [json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}})
          for i in range(n)]


def pytest_collection_modifyitems(items):
  """The slow tests first (a stable sort): with `make test`'s two workers stealing work, the
  suite then ends with short tests on both, not one long test on one."""
  items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def shared_dir():
  """The shared research data (`../shared` beside the repo, or $METABERT_SHARED_DIR).

  Missing data skips the test locally but fails it on CI, where skipping would hide untested code.
  """
  path = pathlib.Path(os.environ.get("METABERT_SHARED_DIR") or REPO_DIR.parent / "shared")
  if not (path / "data").is_dir():
    message = f"shared data not found at {path} (set METABERT_SHARED_DIR)"
    if os.environ.get("CI") == "true":
      pytest.fail(message)
    pytest.skip(message)
  return path


@pytest.fixture(scope="session")
def tiny_google_dir(tmp_path_factory):
  """A tiny Google-format BERT (hidden 32, 2 layers, 50-token vocab) with seeded random weights."""
  from tests import tiny_models
  return tiny_models.write_google_dir(str(tmp_path_factory.mktemp("tiny_google")))


@pytest.fixture(scope="session")
def toy_task(tmp_path_factory):
  from tests import tiny_models
  return tiny_models.write_toy_task(str(tmp_path_factory.mktemp("toy_task")))


@pytest.fixture(scope="session")
def minilm_dir():
  """The bundled MiniLM (fetched by `make model`); fails on CI when it cannot be had."""
  from metabert_tf import model_cache
  try:
    return model_cache.bundled_model_dir("minilm-l6")
  except model_cache.ModelCacheError as e:
    if os.environ.get("CI") == "true":
      pytest.fail(str(e))
    pytest.skip(str(e))
