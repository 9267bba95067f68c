"""Shared pytest fixtures."""
import os
import pathlib

import pytest

REPO_DIR = pathlib.Path(__file__).resolve().parent.parent


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
