"""Fine-tuning under tf.distribute.

* MirroredStrategy on 2 logical CPUs equals one device (same data, no dropout);
* two worker processes (MultiWorkerMirroredStrategy, TF_CONFIG) sharing one output_dir, as on a
  shared filesystem: only the chief writes there.
"""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import REPO_DIR
from tests.conftest import local_worker_configs

_SCRIPT = textwrap.dedent("""
    import sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from metabert_tf import finetune_job, training
    strategy = (tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]) if sys.argv[1] == "mirrored"
                else tf.distribute.OneDeviceStrategy("/cpu:0"))
    job = finetune_job.FinetuneJob(
        output_dir=sys.argv[2], train_path=sys.argv[3], eval_path=sys.argv[4],
        bert_model=sys.argv[5], max_seq_length=16, dropout=False,
        train=training.FinetuneConfig(epochs=2, batch_size=8, learning_rate=1e-3, seed=1,
                                      progress=False))
    print(strategy.num_replicas_in_sync, finetune_job.run_job(job, strategy)["accuracy"])
""")


def _run(kind, out, toy_task, model):
  proc = subprocess.run([sys.executable, "-c", _SCRIPT, kind, str(out), toy_task["train"],
                         toy_task["eval"], model], cwd=REPO_DIR, capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc.stdout.split()


@pytest.mark.slow
def test_mirrored_two_replicas_matches_one_device(tmp_path, tiny_google_dir, toy_task):
  one = _run("one_device", tmp_path / "one", toy_task, tiny_google_dir)
  two = _run("mirrored", tmp_path / "two", toy_task, tiny_google_dir)
  assert one[0] == "1" and two[0] == "2"
  a = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(tmp_path / "one/ckpt")))
  b = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(tmp_path / "two/ckpt")))
  names = [n for n in a.get_variable_to_shape_map() if n.startswith(("encoder/", "head/"))
           and "OPTIMIZER_SLOT" not in n]
  assert len(names) > 30
  for name in names:
    np.testing.assert_allclose(a.get_tensor(name), b.get_tensor(name), atol=1e-5, err_msg=name)


@pytest.mark.slow
def test_two_workers_share_an_output_dir_and_only_the_chief_writes(tmp_path, tiny_google_dir,
                                                                    toy_task):
  out = tmp_path / "shared"
  args = [sys.executable, "run_finetune.py", f"--train_file={toy_task['train']}",
          f"--eval_file={toy_task['eval']}", f"--bert_model={tiny_google_dir}",
          "--max_seq_length=16", "--epochs=2", "--batch_size=8", f"--output_dir={out}",
          "--distribution_strategy=multi_worker_mirrored", "--noprogress"]
  procs = [subprocess.Popen(args, cwd=REPO_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
                                                TF_CONFIG=config))
           for config in local_worker_configs(2)]
  outputs = [p.communicate(timeout=300) for p in procs]
  for proc, (_, stderr) in zip(procs, outputs):
    assert proc.returncode == 0, stderr[-3000:]
  chief, other = (json.loads(stdout.strip().splitlines()[-1]) for stdout, _ in outputs)
  assert chief["accuracy"] == other["accuracy"]  # the same trained weights on both workers
  assert sorted(os.listdir(out)) == ["ckpt", "export", "hyparams.txt", "log.txt", "results.json",
                                     "tensorboard", "train_loss.json"]
  assert (out / "log.txt").read_text().count("Labels (id order)") == 1
  assert len(os.listdir(out / "tensorboard")) == 1
  assert json.load(open(out / "results.json"))["accuracy"] == chief["accuracy"]
  assert tf.train.latest_checkpoint(str(out / "ckpt")).endswith("finetune-6")  # 2 epochs x 3 steps
