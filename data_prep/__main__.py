r"""The data commands under one name: `metabert-data COMMAND [flags]` once installed, or
`python -m data_prep COMMAND [flags]` from the repository root.

  metabert-data smlmt --input corpus.txt --output_dir smlmt --num_classes 2,3,4,5
  metabert-data kshot --input reviews.jsonl --task books --k 4,8,16 --output_dir leopard
"""
import os
import runpy
import sys

COMMANDS = {
    "download": "fetch the Amazon multi-domain reviews or the LEOPARD data",
    "kshot": "K examples per label, in splits (LEOPARD layout)",
    "mft_splits": "MFT's per-domain train/dev/test splits",
    "smlmt": "self-supervised SMLMT tasks from unlabeled text",
    "write_tf_record": "labeled text to BERT-format tf_records",
}


def usage():
  width = max(map(len, COMMANDS))
  lines = [f"  {name:<{width}}  {what}" for name, what in COMMANDS.items()]
  return ("usage: metabert-data COMMAND [flags]   (COMMAND --help lists its flags)\n"
          "commands:\n" + "\n".join(lines))


def console(argv=None):
  argv = list(sys.argv if argv is None else argv)
  if len(argv) < 2 or argv[1] in ("-h", "--help"):
    print(usage(), file=sys.stderr if len(argv) < 2 else sys.stdout)
    sys.exit(1 if len(argv) < 2 else 0)
  if argv[1] not in COMMANDS:
    print(f"error: unknown command {argv[1]!r}\n{usage()}", file=sys.stderr)
    sys.exit(1)
  module = f"{__package__ or os.path.basename(os.path.dirname(__file__))}.{argv[1]}"
  sys.argv = [f"{argv[0]} {argv[1]}", *argv[2:]]
  runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
  console()
