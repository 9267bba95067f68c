"""The command-line programs (absl): run_finetune.py, run_meta_train.py and run_multidomain.py at
the repository root run these, as do the console scripts pip installs (console.py)."""
