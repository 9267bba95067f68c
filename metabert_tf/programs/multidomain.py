r"""Train one model on every domain of multi-domain data: MFT (Meta Fine-Tuning, Wang et al.
2020: typicality weighting and domain corruption) or its baselines, BERT (Mix) on the pooled
data, (MTL) with a head per domain, (Adv) with an adversarial domain classifier.

  python run_multidomain.py --algorithm mft --data train_all_domains.jsonl \
      --eval_data dev_all_domains.jsonl --output_dir out/mft
  python run_finetune.py --bert_model out/mft/ckpt --train_file books/train.jsonl ...

--data: any reader format whose examples have a domain (or a tf_record written with
--with_domains). Writes output_dir/{hyparams.txt, log.txt, ckpt/, tensorboard/, results.json};
--eval_data is scored per domain after training. Re-running the same command resumes.
"""
import json

from absl import app
from absl import flags

from metabert_tf import backbones
from metabert_tf import cli
from metabert_tf import datasets
from metabert_tf import flag_rules
from metabert_tf import mft
from metabert_tf import mft_flags
from metabert_tf import multidomain_job
from metabert_tf import runtime
from metabert_tf import training
from metabert_tf.data import readers
from metabert_tf.errors import DataError

FLAGS = flags.FLAGS
MFT_FLAGS = ["mft_variant", "mft_alpha", "mft_prototypes", "mft_lambda", "corruption_layers",
             "mft_typicality", "mft_shared_domain_classifier", "mft_layer_mean",
             "mft_weight_corruption"]
READ_ONLY_BY = {**dict.fromkeys(MFT_FLAGS, {"mft"}), "adversarial_weight": {"adv"}}


def define_flags():
  cli.define_common_flags()
  flags.adopt_module_key_flags(cli)  # --help lists the shared flags too
  flags.DEFINE_enum("algorithm", "mft", list(multidomain_job.METHODS),
                    "mft: Meta Fine-Tuning; mix, mtl, adv: its baselines (pooled data, a head "
                    "per domain, an adversarial domain classifier).")
  flags.DEFINE_string("data", None, "Multi-domain labeled data (any reader format with "
                      f"domains; CSV/TSV/JSON columns as {readers.SPEC_HELP}).")
  flags.DEFINE_string("eval_data", None, "Scored per domain after training.")
  flags.DEFINE_list("label_list", None, "Label order (ids); default: the model's, else sorted.")
  flags.DEFINE_integer("epochs", 2, "Passes over the data.")
  flags.DEFINE_integer("batch_size", 32, "Training batch size.")
  flags.DEFINE_float("learning_rate", 2e-5, "Peak AdamW learning rate, 10% warm-up, linear "
                     "decay.")
  flags.DEFINE_integer("save_every_steps", 0, "Also checkpoint every N steps (0: per epoch).")
  flags.DEFINE_bool("progress", True, "Show progress bars.")
  flags.DEFINE_enum("mft_variant", "full", list(mft.VARIANTS), "full: typicality weighting and "
                    "domain corruption; dc: corruption only; tw: weighting only.")
  mft_flags.define()  # --mft_alpha, --mft_lambda, --corruption_layers, --mft_typicality, ...
  flags.DEFINE_float("adversarial_weight", 0.1, "adv: weight of the reversed domain loss.")
  flags.mark_flags_as_required(["data", "output_dir"])
  flag_rules.register()  # every numeric and list flag's bounds


def run():
  cli.refuse_unread_flags(READ_ONLY_BY, FLAGS.algorithm, "algorithm")
  data = datasets.resolve(FLAGS.data, FLAGS.data_dir)
  eval_data = datasets.resolve(FLAGS.eval_data, FLAGS.data_dir)
  for path in (data, eval_data):
    if path and not datasets.exists(path):
      raise DataError(path, "file or directory not found")
  # First: a multi-worker strategy must exist before TensorFlow runs any op.
  strategy = runtime.get_strategy(FLAGS.distribution_strategy, FLAGS.tpu)
  backbones.check_readable(FLAGS.bert_model, FLAGS.do_lower_case, FLAGS.max_seq_length)
  job = multidomain_job.MultiDomainJob(
      output_dir=FLAGS.output_dir, data=data, method=FLAGS.algorithm, eval_data=eval_data,
      bert_model=FLAGS.bert_model, do_lower_case=FLAGS.do_lower_case,
      label_list=FLAGS.label_list, max_seq_length=FLAGS.max_seq_length,
      precision=FLAGS.precision, pooling=FLAGS.pooling,
      train=training.FinetuneConfig(epochs=FLAGS.epochs, batch_size=FLAGS.batch_size,
                                    learning_rate=FLAGS.learning_rate,
                                    save_every_steps=FLAGS.save_every_steps, seed=FLAGS.seed,
                                    progress=FLAGS.progress),
      mft=mft_flags.config(FLAGS.mft_variant, FLAGS.seed),
      adversarial_weight=FLAGS.adversarial_weight)
  cli.start_run(FLAGS.output_dir, FLAGS.overwrite_output_dir, strategy)
  results = multidomain_job.run_multidomain_job(job, strategy)
  cli.print_result(json.dumps({k: results[k] for k in ("checkpoint", "eval") if k in results}))


def main(_):
  with cli.user_errors_exit():
    run()


if __name__ == "__main__":
  define_flags()
  app.run(main)
