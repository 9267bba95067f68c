"""Readers for labeled text; each returns list[LabeledExample].

Formats: LEOPARD JSON, LEOPARD tf_records (leopard_tf_record.py), Blitzer Amazon `.review` files,
Meta-BERT `dataset.json`, CSV/TSV, JSONL; read_examples() picks one by extension/layout and takes
a data spec `PATH[:key=value,...]` naming the columns (data_spec.py).
Bad input raises DataError naming the file and where: "line N" (1-based) for CSV/TSV, JSONL and
`.review` files, "record N (0-based)" for JSON lists and tf_records.
"""
from __future__ import annotations

import collections
import csv
import html
import io
import itertools
import json
import os
import re

from metabert_tf.data.data_spec import (  # noqa: F401 (re-exported for the CLIs)
    FIELD_KEYS, SPEC_HELP, data_path, parse_data_spec, plain_path)
from metabert_tf.data.examples import LabeledExample
from metabert_tf.data.leopard_tf_record import read_leopard_tf_record, task_from_filename
from metabert_tf.errors import DataError

# Field name candidates read_examples uses by default; the first one a record has wins.
DEFAULT_FIELDS = {"text": ("text", "sentence1"), "label": ("label",),
                  "text_b": ("text_b", "sentence2"), "domain": ("domain",)}
_LEOPARD_FIELDS = {"text": ("sentence1",), "label": ("label",), "text_b": ("sentence2",),
                   "domain": ()}
AMAZON_LABELS = ("positive", "negative")
_DELIMITERS = {".csv": ",", ".tsv": "\t"}
_REVIEW = re.compile(r"<review>(.*?)</review>", re.S)
_REVIEW_TEXT = re.compile(r"<review_text>(.*?)</review_text>", re.S)
_NUMBER = re.compile(r"-?\d+(\.\d+)?")
_REQUIRED = frozenset(("text", "label"))
_JSON_TYPES = {dict: "object", list: "list", str: "string", int: "integer", float: "number",
               bool: "boolean", type(None): "null"}


def read_leopard_json(path):
  """LEOPARD `[{"sentence1", ["sentence2"], "label", "processed_sent"}]`; domain = task."""
  return _json_list_examples(path, _load_json(path), _LEOPARD_FIELDS, task_from_filename(path))


def read_domain_json(path):
  """Meta-BERT (mailong25) `dataset.json`: `[{"text", "label", "domain"}]`; label -> str."""
  return _json_list_examples(path, _load_json(path), _fields("text", "label", None, "domain"))


def read_jsonl(path, text_field="text", label_field="label", text_b_field=None, domain_field=None):
  """One JSON object per line (blank lines skipped)."""
  return _read_jsonl(path, _fields(text_field, label_field, text_b_field, domain_field))


def read_delimited(path, text_column="text", label_column="label", text_b_column=None,
                   domain_column=None, delimiter=None, header=True):
  """CSV (`.csv`, quoted fields allowed) or TSV (`.tsv`, no quoting), with a header row or not.

  Columns are header names or 0-based indices (the only choice with `header=False`). TSV is read
  without quote handling, as BERT's `_read_tsv` does: a stray `"` in a review must not swallow
  the following lines. Pass `delimiter` for other extensions.
  """
  fields = _fields(text_column, label_column, text_b_column, domain_column)
  return _read_delimited(path, fields, delimiter, header, _REQUIRED | {k for k in fields
                                                                       if fields[k]})


def read_amazon_reviews(root, domains=None):
  """Blitzer et al. (2007) multi-domain sentiment: `<root>/<domain>/{positive,negative}.review`.

  The files are pseudo-XML (bare `&`), so each `<review>...</review>` block is cut out with a regex.
  text_a is the unescaped `<review_text>` with whitespace collapsed; the title is dropped (a choice:
  one segment per review, and titles mostly repeat the text). label = "positive"/"negative" from the
  file name, domain = folder name. `unlabeled.review` is ignored. Order: domains sorted (or as
  given), positive then negative, file order.
  """
  root = os.fspath(root)
  if not os.path.isdir(root):
    raise DataError(root, "no such directory")
  if domains is None:
    domains = sorted(d for d in os.listdir(root) if any(
        os.path.isfile(os.path.join(root, d, label + ".review")) for label in AMAZON_LABELS))
    if not domains:
      raise DataError(root, "no <domain>/positive.review or <domain>/negative.review found")
  examples = []
  for domain in domains:
    if not os.path.isdir(os.path.join(root, domain)):
      raise DataError(os.path.join(root, domain), "no such directory")
    for label in AMAZON_LABELS:
      path = os.path.join(root, domain, label + ".review")
      examples.extend(_read_review_file(path, label, domain))
  return examples


def read_examples(spec, text_field=None, label_field=None, text_b_field=None, domain_field=None,
                  delimiter=None, label_map=None, vocab_file=None, domains=None,
                  require_label=True):
  """Reads any supported input, chosen by layout and extension (or the spec's format=).

  `spec` is a path or `PATH:key=value,...` (data_spec.py); its options override the arguments.
  A directory -> Amazon reviews (`domains`); `.json` -> LEOPARD JSON when records have `sentence1`
  (domain from the file name), else Meta-BERT style; `.jsonl`; `.csv`/`.tsv` (or any file with
  a delimiter); `.tf_record`/`.tfrecord` -> LEOPARD tf_record (`label_map`, or the spec's
  `label_maps=label_maps.json`: the map of the file's task; `vocab_file`).
  Field/column names default to text (or sentence1), label, text_b (or sentence2), domain.
  With `require_label=False` (prediction) a missing label gives examples with label None.
  """
  path, options = parse_data_spec(spec)
  chosen = {"text": text_field, "label": label_field, "text_b": text_b_field,
            "domain": domain_field}
  chosen.update((key, options[key]) for key in FIELD_KEYS if key in options)
  fields = {key: DEFAULT_FIELDS[key] if name is None else _names(name)
            for key, name in chosen.items()}
  # Columns the user named must exist; text and (unless optional) label always must.
  required = {key for key, name in chosen.items() if name is not None} | {"text"}
  required |= {"label"} if require_label else set()
  ext = os.path.splitext(path)[1].lower()
  if os.path.isdir(path):
    return read_amazon_reviews(plain_path(spec), domains)
  if not os.path.exists(path):
    raise DataError(path, "no such file or directory")
  ext = "." + options["format"] if "format" in options else ext
  delimiter = options.get("delimiter", delimiter)
  if ext in (".json", ".jsonl") and ({"header", "delimiter"} & set(options)):
    raise DataError(path, "header= and delimiter= apply to CSV/TSV files, not JSON")
  if ext == ".json":
    data = _load_json(path)
    first = data[0] if isinstance(data, list) and data else None
    leopard = isinstance(first, dict) and "sentence1" in first and not any(
        name in first for name in fields["domain"])
    return _json_list_examples(path, data, fields, task_from_filename(path) if leopard else None,
                               required)
  if ext == ".jsonl":
    return _read_jsonl(path, fields, required)
  if ext in _DELIMITERS or delimiter:
    return _read_delimited(path, fields, delimiter or _DELIMITERS[ext],
                           options.get("header") != "none", required)
  if ext in (".tf_record", ".tfrecord"):
    if set(options) - {"label_maps"}:
      raise DataError(path, f"data spec options ({', '.join(options)}) apply to CSV, TSV and "
                      "JSON files only (a tf_record takes label_maps=)")
    if "label_maps" in options:  # PATH.tf_record:label_maps=leopard/label_maps.json
      label_map = load_leopard_label_map(options["label_maps"], task_from_filename(path))
    return read_leopard_tf_record(path, label_map, vocab_file)
  raise DataError(path, f"unknown extension '{ext}' (expected .json, .jsonl, .csv, .tsv, "
                  ".tf_record or a directory of <domain>/*.review; or give PATH:format=...)")


def load_leopard_label_map(label_maps_json, task):
  """Returns {label string: label id} for `task` from a label_maps.json."""
  maps = _load_json(label_maps_json)
  if not isinstance(maps, dict):
    raise DataError(label_maps_json, f"expected a JSON object of tasks, got {_json_type(maps)}")
  if task not in maps or not isinstance(maps[task], dict):
    tasks = ", ".join(sorted(t for t in maps if not t.startswith("_")))
    raise DataError(label_maps_json, f"no label map for task '{task}' (tasks: {tasks})")
  return {str(label): int(i) for label, i in maps[task].items()}


def _names(name):
  return (name,) if isinstance(name, (str, int)) else tuple(name)


def _fields(text, label, text_b, domain):
  return {"text": _names(text), "label": _names(label),
          "text_b": _names(text_b) if text_b else (), "domain": _names(domain) if domain else ()}


def _json_type(value):
  return _JSON_TYPES.get(type(value), type(value).__name__)


def read_text(path, fallback_encoding=None):
  """Whole file as text, BOM dropped, newlines untranslated (csv needs them raw)."""
  path = os.fspath(path)
  if not os.path.exists(path):
    raise DataError(path, "no such file")
  if os.path.isdir(path):
    raise DataError(path, "is a directory, expected a file")
  with open(path, "rb") as f:
    data = f.read()
  try:
    text = data.decode("utf-8-sig")
  except UnicodeDecodeError as e:
    if not fallback_encoding:
      raise DataError(path, f"not UTF-8 text (byte {e.start}: {e.reason})") from None
    text = data.decode(fallback_encoding)
  if not text.strip():
    raise DataError(path, "empty file (no examples)")
  return text


def _load_json(path):
  try:
    return json.loads(read_text(path))
  except json.JSONDecodeError as e:
    raise DataError(path, f"malformed JSON at line {e.lineno}:{e.colno}: {e.msg}") from None


def _nonempty(examples, path):
  if not examples:
    raise DataError(path, "no examples")
  return examples


def _json_list_examples(path, data, fields, domain=None, required=_REQUIRED):
  if not isinstance(data, list):
    raise DataError(path, f"expected a JSON list of objects, got {_json_type(data)}")
  return _nonempty([_example(record, path, f"record {i} (0-based)", fields, domain,
                             "label" in required) for i, record in enumerate(data)], path)


def _read_jsonl(path, fields, required=_REQUIRED):
  examples = []
  for line_number, line in enumerate(read_text(path).split("\n"), 1):
    if not line.strip():
      continue
    where = f"line {line_number}"
    try:
      record = json.loads(line)
    except json.JSONDecodeError as e:
      raise DataError(path, f"malformed JSON at column {e.colno}: {e.msg}", where) from None
    examples.append(_example(record, path, where, fields, label_required="label" in required))
  return _nonempty(examples, path)


def _read_delimited(path, fields, delimiter=None, header=True, required=_REQUIRED):
  ext = os.path.splitext(os.fspath(path))[1].lower()
  delimiter = delimiter or _DELIMITERS.get(ext)
  if delimiter is None:
    raise DataError(path, f"unknown extension '{ext}' (expected .csv or .tsv, or pass a delimiter)")
  quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
  reader = csv.reader(io.StringIO(read_text(path), newline=""), delimiter=delimiter,
                      quoting=quoting)
  rows = _delimited_rows(reader, path, ext)
  first = next(rows, None)
  if first is None:
    raise DataError(path, "no examples")
  columns = _find_columns(path, fields, required, first[1], header)
  # Records are keyed by the column's name (or "column N"), so errors name the column.
  record_fields = {key: (columns[key][0],) if key in columns else () for key in fields}
  shape = "the header has" if header else "the first row has"
  examples = []
  for line, row in rows if header else itertools.chain([first], rows):
    if len(row) != len(first[1]):
      raise DataError(path, f"{len(row)} fields, {shape} {len(first[1])}", f"line {line}")
    record = {name: row[index] for name, index in columns.values()}
    examples.append(_example(record, path, f"line {line}", record_fields,
                             label_required="label" in required))
  return _nonempty(examples, path)


def _delimited_rows(reader, path, ext):
  """(line number where the row starts, row) of the non-empty rows."""
  start = 1
  try:
    for row in reader:
      line, start = start, reader.line_num + 1
      if row:
        yield line, row
  except csv.Error as e:
    raise DataError(path, f"malformed {ext or 'delimited'} row: {e}",
                    f"line {reader.line_num}") from None


def _find_columns(path, fields, required, first, header):
  """{key: (name, 0-based index)} of the columns to read; DataError listing the file's columns
  when a required one is missing."""
  columns, missing = {}, []
  for key, names in fields.items():
    for name in names:
      if isinstance(name, int) and name < len(first):
        columns[key] = f"column {name}", name
        break
      # Only the columns read are checked for duplicates: a duplicated column nobody reads is
      # harmless, and erroring on it would refuse usable files.
      if header and name in first:
        if first.count(name) > 1:
          indices = [i for i, column in enumerate(first) if column == name]
          raise DataError(path, f"column '{name}' appears {len(indices)} times in the header "
                          f"(columns {indices}); choose one by 0-based index, e.g. "
                          f"{key}={indices[0]}", "line 1")
        columns[key] = name, first.index(name)
        break
    else:
      if key in required:
        missing.append(key)
  if missing:
    wanted = ", ".join(f"{key} ({' or '.join(map(_column, fields[key]))})" for key in missing)
    suggest = ",".join(f"{key}=N" for key in missing)
    preview = " ".join(f"{i}={_short(cell)!r}" for i, cell in enumerate(first))
    if not header:
      hint = (f"the file has {len(first)} columns, first row {preview}; give 0-based indices, "
              f"e.g. {path}:header=none,{suggest}")
    elif any(not c.strip() or _NUMBER.fullmatch(c.strip()) or len(c) > 40 for c in first):
      hint = (f"the first row looks like data, not a header: {preview}; no header? use "
              f"{path}:header=none,{suggest} (N: 0-based column index)")
    else:
      hint = (f"the header has {preview}; choose them by name or 0-based index, e.g. "
              f"{path}:{suggest}")
    raise DataError(path, f"no column for {wanted}: {hint}")
  return columns


def _column(name):
  return f"column {name}" if isinstance(name, int) else f"'{name}'"


def _short(cell, width=30):
  return cell if len(cell) <= width else cell[:width - 3] + "..."


def _read_review_file(path, label, domain):
  # Blitzer's original files may hold latin-1 bytes; the copies in ../shared are UTF-8.
  text = read_text(path, fallback_encoding="latin-1")
  examples = []
  for block in _REVIEW.finditer(text):
    body = _REVIEW_TEXT.search(block.group(1))
    review = " ".join(html.unescape(body.group(1)).split()) if body else ""
    if not review:
      line = text.count("\n", 0, block.start()) + 1  # Counted only on error: it rescans the file.
      problem = "empty <review_text>" if body else "missing <review_text>"
      raise DataError(path, f"{problem} in the <review> block", f"line {line}")
    examples.append(LabeledExample(text_a=review, label=label, domain=domain))
  if not examples:
    raise DataError(path, "no <review> blocks")
  return examples


def conflicting_labels(examples):
  """[(text, text_b), [examples]] of the texts that occur with more than one label."""
  by_text = collections.defaultdict(list)
  for example in examples:
    by_text[(example.text_a, example.text_b)].append(example)
  return [(text, group) for text, group in by_text.items()
          if len({e.label for e in group}) > 1]


def _example(record, path, where, fields, domain=None, label_required=True):
  """Validates one record (dict) and builds the example; `domain` overrides the domain field.

  Without `label_required`, a record without a label gives label None (text to predict).
  """
  if not isinstance(record, dict):
    raise DataError(path, f"expected an object, got {_json_type(record)}", where)
  text_a = _text(record, fields["text"], path, where, required=True)
  # An empty second text means "no pair" (a CSV has no other way to say so).
  text_b = _text(record, fields["text_b"], path, where, required=False, allow_empty=True) or None
  if domain is None:
    domain = _text(record, fields["domain"], path, where, required=False, allow_empty=True) or None
  return LabeledExample(text_a=text_a, label=_label(record, fields["label"], path, where,
                                                    label_required), text_b=text_b, domain=domain,
                        where=where)


def _label(record, names, path, where, required):
  name, label = _lookup(record, names, path, where, required)
  if name is None:
    return None
  if isinstance(label, bool) or not isinstance(label, (str, int)):
    raise DataError(path, f"field '{name}' must be a string or integer, got {_json_type(label)}",
                    where)
  label = str(label)
  if not label.strip():
    raise DataError(path, f"empty label in field '{name}'", where)
  return label


def _lookup(record, names, path, where, required):
  """(name, value) of the first of `names` in `record`; (None, None) if absent and optional."""
  for name in map(str, names):  # an index given for a JSON field is that field's name
    if name in record and record[name] is not None:
      return name, record[name]
  if required:
    alternatives = "".join(f" (or '{n}')" for n in names[1:])
    raise DataError(path, f"missing field '{names[0]}'{alternatives}; the record has "
                    f"{', '.join(repr(k) for k in record) or 'no fields'} (name yours with a "
                    "data spec, e.g. PATH:text=review,label=stars)", where)
  return None, None


def _text(record, names, path, where, required, allow_empty=False):
  name, value = _lookup(record, names, path, where, required)
  if name is None:
    return None
  if not isinstance(value, str):
    raise DataError(path, f"field '{name}' must be a string, got {_json_type(value)}", where)
  if not value.strip() and not allow_empty:
    raise DataError(path, f"empty text in field '{name}'", where)
  return value
