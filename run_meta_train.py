"""Meta-train BERT (FOMAML, Reptile, LEOPARD, SMLMT, Hybrid-SMLMT, ProtoMAML, Proto-BERT, MT-BERT): the program is metabert_tf/programs/meta_train.py (installed as a console
script too, see pyproject.toml); `python run_meta_train.py --help` lists its flags."""
import runpy

if __name__ == "__main__":
  runpy.run_module("metabert_tf.programs.meta_train", run_name="__main__", alter_sys=True)
