"""The console scripts `pip install` makes (pyproject.toml): each runs one program as
`python -m` would, so its flags, --help and hyparams.txt are the same either way."""
import runpy


def _run(module):
  runpy.run_module(module, run_name="__main__", alter_sys=True)


def finetune():
  _run("metabert_tf.programs.finetune")


def meta_train():
  _run("metabert_tf.programs.meta_train")


def multidomain():
  _run("metabert_tf.programs.multidomain")


def predict():
  _run("metabert_tf.predict")


def experiment():
  _run("metabert_tf.experiments")
