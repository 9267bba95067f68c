"""Fine-tune a BERT classifier on a (few-shot) task, evaluate it, export it: the program is metabert_tf/programs/finetune.py (installed as a console
script too, see pyproject.toml); `python run_finetune.py --help` lists its flags."""
import runpy

if __name__ == "__main__":
  runpy.run_module("metabert_tf.programs.finetune", run_name="__main__", alter_sys=True)
