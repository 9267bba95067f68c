"""Train MFT or its baselines (Mix, MTL, Adv) on multi-domain data: the program is metabert_tf/programs/multidomain.py (installed as a console
script too, see pyproject.toml); `python run_multidomain.py --help` lists its flags."""
import runpy

if __name__ == "__main__":
  runpy.run_module("metabert_tf.programs.multidomain", run_name="__main__", alter_sys=True)
