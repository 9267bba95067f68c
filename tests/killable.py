"""Processes for tests to SIGKILL, and the helper that kills a checkpoint save part-way.

  python -m tests.killable sleep PID_FILE   records its pid, then sleeps (a long grid cell)
  python -m tests.killable save PREFIX      writes a 64 MB TF checkpoint to PREFIX, again and again
"""
import os
import signal
import subprocess
import sys
import time

from tests.conftest import REPO_DIR


def wait_for(condition, timeout=120.0):
  """Polls `condition` until true; False if it is still false after `timeout` seconds."""
  deadline = time.monotonic() + timeout
  while not condition():
    if time.monotonic() > deadline:
      return False
    time.sleep(0.002)
  return True


def die_during_step(monkeypatch, step):
  """Makes training.finetune raise KeyboardInterrupt (a kill) when it starts step `step`
  (1-based); returns the real train-step factory, to put back with monkeypatch.setattr."""
  from metabert_tf import training
  real_make = training._make_train_step

  def dying_make(*args):
    step_fn, calls = real_make(*args), []

    def train_step(batch):
      if len(calls) == step - 1:
        raise KeyboardInterrupt
      calls.append(1)
      return step_fn(batch)
    return train_step

  monkeypatch.setattr(training, "_make_train_step", dying_make)
  return real_make


def kill_mid_save(prefix, attempts=5):
  """SIGKILLs a process while it writes a checkpoint to `prefix`; returns what it left
  (`<prefix>_temp/...`). TF writes the data into `<prefix>_temp/` and then renames it, so
  the kill comes as soon as that directory shows, and again if it came too late."""
  temp_dir = prefix + "_temp"
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  for _ in range(attempts):
    proc = subprocess.Popen([sys.executable, "-m", "tests.killable", "save", prefix],
                            cwd=REPO_DIR, env=env)
    try:
      assert wait_for(lambda: os.path.isdir(temp_dir) or proc.poll() is not None)
    finally:
      proc.send_signal(signal.SIGKILL)
      proc.wait()
    if os.path.isdir(temp_dir):
      return sorted(os.path.join(root, name) for root, dirs, files in os.walk(temp_dir)
                    for name in dirs + files)
  raise AssertionError(f"no kill landed during a save to {prefix} in {attempts} attempts")


def _save_forever(prefix):
  import tensorflow as tf
  checkpoint = tf.train.Checkpoint(big=tf.Variable(tf.zeros([4096, 4096])))
  while True:
    checkpoint.write(prefix)


def _sleep(pid_file):
  with open(pid_file + ".part", "w") as f:
    f.write(str(os.getpid()))
  os.replace(pid_file + ".part", pid_file)
  time.sleep(120)


if __name__ == "__main__":
  {"save": _save_forever, "sleep": _sleep}[sys.argv[1]](sys.argv[2])
