"""Data specs: a file path with optional reading options, as every CLI that takes data accepts.

  PATH[:key=value,...]   e.g. glue/CoLA/dev.tsv:header=none,text=3,label=1

Keys: text, text_b, label, domain (a column or field name, or a 0-based column index for CSV/TSV),
header=none (CSV/TSV without a header row), delimiter (tab, comma, semicolon, pipe or one
character) and format (csv, tsv, json, jsonl: read the file as that whatever its extension).
"""
from __future__ import annotations

import os
import re

from metabert_tf.errors import DataError

FIELD_KEYS = ("text", "text_b", "label", "domain")
KEYS = FIELD_KEYS + ("header", "delimiter", "format", "label_maps")
FORMATS = ("csv", "tsv", "json", "jsonl")
DELIMITER_NAMES = {"tab": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}
SPEC_HELP = "PATH[:text=COL,text_b=COL,label=COL,domain=COL,header=none,delimiter=D,format=F]"
# A suffix made of `word=...` items separated by commas; anything else after ':' is path.
_LOOKS_LIKE_OPTIONS = re.compile(r"^\s*\w+\s*=[^,]*(,\s*\w+\s*=[^,]*)*$")


def parse_data_spec(spec):
  """(path, options) of `PATH[:key=value,...]`; options maps keys to strings (fields: str|int).

  The part after the last ':' is options only when it reads as key=value pairs and the whole
  spec is not an existing file, so the rare path holding ':' still works as a plain path.
  """
  spec = os.fspath(spec)
  path, colon, suffix = spec.rpartition(":")
  if not colon or os.path.exists(spec) or not _LOOKS_LIKE_OPTIONS.match(suffix):
    return spec, {}
  options = {}
  for item in suffix.split(","):
    key, _, value = (part.strip() for part in item.partition("="))
    if key not in KEYS:
      raise DataError(spec, f"unknown data spec key '{key}' (known: {', '.join(KEYS)})")
    if key in options:
      raise DataError(spec, f"data spec key '{key}' given twice")
    if not value:
      raise DataError(spec, f"empty value for data spec key '{key}'")
    options[key] = _value(spec, key, value)
  return path, options


def data_path(spec):
  """The file or directory part of a spec (for existence checks and --data_dir lookups)."""
  return parse_data_spec(spec)[0]


def plain_path(spec):
  """The path of a spec for data that takes no options (tf_records, review directories)."""
  path, options = parse_data_spec(spec)
  if options:
    hint = (" (label_maps= reads an original LEOPARD tf_record from Python only: "
            "metabert_tf.data.readers.read_examples; the programs read tf_records as written by "
            "data_prep.write_tf_record)" if "label_maps" in options else "")
    raise DataError(path, f"data spec options ({', '.join(options)}) apply to CSV, TSV and JSON "
                    f"files only{hint}")
  return path


def _value(spec, key, value):
  if key in FIELD_KEYS:
    return int(value) if value.isdigit() else value
  if key == "header":
    if value != "none":
      raise DataError(spec, f"header={value}: expected header=none (the default is a header row)")
    return value
  if key == "label_maps":  # a path: the LEOPARD label_maps.json of a tf_record's task
    return value
  if key == "format":
    if value not in FORMATS:
      raise DataError(spec, f"format={value}: expected one of {', '.join(FORMATS)}")
    return value
  delimiter = DELIMITER_NAMES.get(value, value)
  if len(delimiter) != 1:
    raise DataError(spec, f"delimiter={value}: expected {', '.join(DELIMITER_NAMES)} or one "
                    "character")
  return delimiter
