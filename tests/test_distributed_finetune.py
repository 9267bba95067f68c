"""Fine-tuning under MirroredStrategy on 2 logical CPUs equals one device (same data, no dropout)."""
import subprocess
import sys
import textwrap

import numpy as np
import tensorflow as tf

from tests.conftest import REPO_DIR

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
