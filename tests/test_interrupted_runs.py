"""SIGKILL at a bad moment: what a killed save leaves is removed on resume, and grid cells die
with their parent. (Resuming fine-tuning after a kill mid-save: tests/test_finetune.py.)"""
import os
import signal
import subprocess
import sys

import pytest

from metabert_tf import runtime
from metabert_tf import io_utils
from metabert_tf.errors import DataError
from tests import killable
from tests.conftest import REPO_DIR


def _touch(path, directory=False):
  if directory:
    os.makedirs(path)
  else:
    with open(path, "w") as f:
      f.write("x")


def test_remove_leftovers_removes_only_what_killed_saves_leave(tmp_path):
  leftovers = {  # the names TF 2.20 and our atomic writes leave under SIGKILL
      "finetune-6_temp": True, ".results.json.k2j_x9a1.tmp": False, ".export.ab3d5f7h.tmp": True,
      ".export-q1w2e3r4": True, "checkpoint.tmp" + "0f" * 16: False,
      "finetune-8.index.tempstate1234567890": False, "finetune-4.data-00000-of-00001": False}
  kept = {"finetune-2.index": False, "finetune-2.data-00000-of-00001": False, "checkpoint": False,
          "results.json": False, "notes.tmp": False, "export": True, "my_temp_notes": False,
          ".hidden.tmp": False, "build_temp": True}  # a user's folder of the TF temp name
  for name, is_dir in {**leftovers, **kept}.items():
    _touch(tmp_path / name, is_dir)
  _touch(tmp_path / "finetune-6_temp" / "part-00000-of-00001.data-00000-of-00001.tempstate99")
  _touch(tmp_path / "build_temp" / "notes.txt")  # holds more than TF's part-* files: kept
  removed = io_utils.remove_leftovers(str(tmp_path))
  assert sorted(os.path.basename(p) for p in removed) == sorted(leftovers)
  assert sorted(os.listdir(tmp_path)) == sorted(kept)
  assert io_utils.remove_leftovers(str(tmp_path / "missing")) == []


def test_remove_leftovers_in_a_shared_directory_only_touches_the_given_names(tmp_path):
  for name in (".export.ab3d5f7h.tmp", ".other.ab3d5f7h.tmp", "x_temp", ".export-q1w2e3r4"):
    _touch(tmp_path / name, directory=True)
  removed = io_utils.remove_leftovers(str(tmp_path), names=["export"])
  assert removed == [str(tmp_path / ".export.ab3d5f7h.tmp")]
  assert sorted(os.listdir(tmp_path)) == [".export-q1w2e3r4", ".other.ab3d5f7h.tmp", "x_temp"]


def test_atomic_dir_replaces_a_directory_and_refuses_a_file(tmp_path):
  target = tmp_path / "out"
  target.mkdir()
  _touch(target / "old.txt")
  with io_utils.atomic_dir(str(target)) as tmp:
    _touch(os.path.join(tmp, "new.txt"))
  assert os.listdir(target) == ["new.txt"] and os.listdir(tmp_path) == ["out"]  # nothing aside
  _touch(tmp_path / "file")
  with pytest.raises(DataError, match="file: exists and is not a directory"):
    with io_utils.atomic_dir(str(tmp_path / "file")):
      pytest.fail("the work must not start")
  assert (tmp_path / "file").read_text() == "x"


def test_overwriting_an_output_dir_killed_midway_leaves_it_whole_or_gone(tmp_path, monkeypatch):
  out = tmp_path / "run"
  out.mkdir()
  _touch(out / "hyparams.txt")
  (out / "ckpt").mkdir()
  _touch(out / "ckpt" / "checkpoint")

  def killed(path, *args, **kwargs):
    raise KeyboardInterrupt  # stands for the kill, during the deletion
  monkeypatch.setattr(io_utils.shutil, "rmtree", killed)
  with pytest.raises(KeyboardInterrupt):
    runtime.prepare_output_dir(str(out), overwrite=True)
  assert not out.exists()  # not a half-deleted run that a next start would resume from
  monkeypatch.undo()
  aside = os.listdir(tmp_path)
  assert len(aside) == 1 and io_utils._OWN_TEMP.fullmatch(aside[0])
  assert io_utils.remove_leftovers(str(tmp_path), names=["run"]) == [str(tmp_path / aside[0])]
  assert runtime.prepare_output_dir(str(out), overwrite=True) is False  # a fresh start
  assert os.listdir(out) == []


def test_temp_names_of_atomic_writes_are_the_ones_removed(tmp_path):
  with pytest.raises(KeyError):
    with io_utils.atomic_open(str(tmp_path / "summary.json")) as f:
      f.write("half")
      temp = os.listdir(tmp_path)
      raise KeyError  # stands for the kill; the temp file is there until then
  assert len(temp) == 1 and io_utils._OWN_TEMP.fullmatch(temp[0])


def test_a_killed_checkpoint_save_leaves_a_temp_dir_that_is_removed(tmp_path):
  left = killable.kill_mid_save(str(tmp_path / "finetune-6"))
  assert any(".tempstate" in os.path.basename(p) for p in left), left
  removed = io_utils.remove_leftovers(str(tmp_path))
  assert str(tmp_path / "finetune-6_temp") in removed
  assert not os.listdir(tmp_path)


def _alive(pid):
  """Running, and not a zombie waiting for its new parent to reap it."""
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().rsplit(")", 1)[1].split()[0] != "Z"
  except FileNotFoundError:
    return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux only")
def test_grid_cells_die_with_a_killed_parent(tmp_path):
  pid_file = str(tmp_path / "cell.pid")
  # A grid driver in miniature: its one cell is `python -m tests.killable sleep PID_FILE`.
  script = ("import sys; from metabert_tf.experiments import grid; "
            f"grid.run_in_child({str(tmp_path)!r}, 0, 'cell', "
            f"argv=['-m', 'tests.killable', 'sleep', {pid_file!r}])")
  parent = subprocess.Popen([sys.executable, "-c", script, "sleep", pid_file], cwd=REPO_DIR,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
  try:
    assert killable.wait_for(lambda: os.path.exists(pid_file) or parent.poll() is not None)
    child = int(open(pid_file).read())
    assert _alive(child)
  finally:
    parent.send_signal(signal.SIGKILL)
    parent.wait()
  try:
    assert killable.wait_for(lambda: not _alive(child), timeout=10)
  finally:
    if _alive(child):
      os.kill(child, signal.SIGKILL)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux only")
def test_a_cell_whose_parent_died_before_prctl_exits_at_once():
  not_the_parent = 1  # as if the parent had died and the child had been handed to init
  proc = subprocess.run([sys.executable, "-c", "import time; time.sleep(60)"], timeout=30,
                        preexec_fn=runtime.die_with_parent(parent=not_the_parent))
  assert proc.returncode == 1
