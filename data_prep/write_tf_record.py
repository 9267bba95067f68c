r"""Encode labeled text into a BERT-format tf_record (+ `<file>.meta.json`) for a backbone.

  python -m data_prep.write_tf_record --input train.jsonl --output train.tf_record \
      --bert_model minilm-l6 --max_seq_length 128 [--label_list neg,pos] [--with_domains]

--input is any reader format (see metabert_tf.data.readers.read_examples), with columns chosen by a data
spec such as `glue/CoLA/train.tsv:header=none,text=3,label=1`. The vocabulary and casing
come from --bert_model, so the records match the model that will read them.
"""
import sys

from absl import app
from absl import flags

from metabert_tf import backbones
from metabert_tf import cli
from metabert_tf import datasets
from metabert_tf import flag_rules
from metabert_tf import io_utils
from metabert_tf import records
from metabert_tf.data import readers

flags.DEFINE_string("input", None, "Labeled data in any reader format; CSV/TSV/JSON columns as "
                    f"{readers.SPEC_HELP}.")
flags.DEFINE_string("output", None, "The tf_record to write.")
flags.DEFINE_string("bert_model", "minilm-l6", "Backbone whose vocabulary/casing to use.")
flags.DEFINE_bool("do_lower_case", None, "Override the backbone's casing.")
flags.DEFINE_integer("max_seq_length", 128, "Tokens per record, padded.")
flags.DEFINE_list("label_list", None, "Label order (ids); default: sorted labels of the input.")
flags.DEFINE_bool("with_domains", False, "Also write domain_ids (sorted domain names).")
flags.mark_flags_as_required(["input", "output"])
flag_rules.register()  # every numeric and list flag's bounds
FLAGS = flags.FLAGS


def write_tf_record(input_path, output_path, source, max_seq_length, label_list=None,
                    with_domains=False):
  examples = readers.read_examples(input_path)
  label_list = datasets.choose_label_list([examples], label_list, source=input_path)
  domain_list = sorted({e.domain for e in examples if e.domain}) if with_domains else None
  features = records.encode(examples, source.input_encoder(max_seq_length), label_list,
                            domain_list, source=input_path)
  return records.write(output_path, features, label_list, source.vocab, source.lower_case,
                       domain_list)


def main(_):
  with cli.user_errors_exit():
    io_utils.check_writable(FLAGS.output, "--output")  # before the model and data are read
    source = backbones.describe_backbone(FLAGS.bert_model, FLAGS.do_lower_case)
    meta = write_tf_record(FLAGS.input, FLAGS.output, source, FLAGS.max_seq_length,
                           FLAGS.label_list, FLAGS.with_domains)
    print(f"wrote {meta['num_examples']} records to {FLAGS.output} "
          f"(labels {meta['label_counts']})", file=sys.stderr)


if __name__ == "__main__":
  app.run(main)
