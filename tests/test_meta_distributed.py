"""Meta-training under tf.distribute reaches the same meta-parameters as one device.

* MirroredStrategy over 2 logical CPU devices, one task per replica, vs one device adapting
  both tasks (NOTES section 3's pattern), the last short meta-batch of an epoch included;
* MultiWorkerMirroredStrategy: two worker processes on localhost (TF_CONFIG), vs one process.
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.conftest import REPO_DIR
from tests.conftest import local_worker_configs

_SCRIPT = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    import tensorflow as tf
    kind, model_dir, out, name = sys.argv[1:5]
    if kind == "workers":
      strategy = tf.distribute.MultiWorkerMirroredStrategy()
    else:
      cpu = tf.config.list_physical_devices("CPU")[0]
      tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
      strategy = (tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]) if kind == "mirrored"
                  else tf.distribute.OneDeviceStrategy("/cpu:0"))
    from metabert_tf.meta import algorithms, episodes, job
    from tests import meta_fixtures
    settings = dict(
        fomaml=dict(inner_optimizer="adam", inner_update_lr=1e-3),
        leopard=dict(train_lr=0.1, label_emb_size=8, weight_query_loss=True, learning_rate=1e-3,
                     warp_layers=True, episodes=episodes.EpisodeConfig(num_support=6,
                                                                      num_query=2)))[name]
    # 5 tasks in meta-batches of 2: each epoch ends with one real task and one zero-weight pad.
    trainer = meta_fixtures.make_trainer(model_dir, out, algorithms.get(name).module,
                                         strategy=strategy, epochs=2, num_train_task=5,
                                         **settings)
    trainer.train()
    np.savez(os.path.join(out, "meta.npz"), *meta_fixtures.meta_values(trainer),
             *[v.numpy() for v in trainer.outer_vars[len(trainer.meta_vars):]])
    print("replicas", strategy.num_replicas_in_sync)
""")


def _launch(kind, out, model_dir, env=None, algorithm="fomaml"):
  os.makedirs(out, exist_ok=True)
  return subprocess.Popen([sys.executable, "-c", _SCRIPT, kind, model_dir, str(out), algorithm],
                          cwd=REPO_DIR, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(env or {})),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc):
  stdout, stderr = proc.communicate(timeout=300)
  assert proc.returncode == 0, stderr[-3000:]
  return stdout


def _meta(out):
  with np.load(os.path.join(out, "meta.npz")) as data:
    return [data[f"arr_{i}"] for i in range(len(data.files))]


def _assert_same(a, b):
  assert len(a) == len(b) > 30
  for x, y in zip(a, b):
    np.testing.assert_allclose(x, y, atol=1e-5)


@pytest.mark.slow
def test_mirrored_two_replicas_equal_one_device(tmp_path, tiny_google_dir):
  """LEOPARD's meta-step (FOMAML's, in two worker processes, below) on two replicas."""
  one = _launch("one", tmp_path / "one", tiny_google_dir, algorithm="leopard")
  assert "replicas 1" in _finish(one)
  two = _launch("mirrored", tmp_path / "two", tiny_google_dir, algorithm="leopard")
  assert "replicas 2" in _finish(two)
  _assert_same(_meta(tmp_path / "one"), _meta(tmp_path / "two"))


@pytest.mark.slow
def test_two_worker_processes_equal_one_process(tmp_path, tiny_google_dir):
  one = _launch("one", tmp_path / "one", tiny_google_dir)
  _finish(one)
  procs = [_launch("workers", tmp_path / f"worker{i}", tiny_google_dir, env={"TF_CONFIG": config})
           for i, config in enumerate(local_worker_configs(2))]
  outputs = [_finish(p) for p in procs]
  assert all("replicas 2" in o for o in outputs)
  _assert_same(_meta(tmp_path / "one"), _meta(tmp_path / "worker0"))
  _assert_same(_meta(tmp_path / "worker0"), _meta(tmp_path / "worker1"))
  # Only the chief keeps checkpoints.
  assert os.path.exists(tmp_path / "worker0/ckpt/checkpoint")
  assert not os.path.exists(tmp_path / "worker1/ckpt/checkpoint")
