"""Data specs (PATH:text=...,label=...,header=none): parsing, the GLUE / AG News files as
distributed, and errors that say which columns a file has."""
import collections

import pytest

from metabert_tf import datasets
from metabert_tf.data import readers
from metabert_tf.data.examples import LabeledExample
from tests.test_readers import _raises, _write

# (file under meta_train/, spec options, examples, label counts) per README.txt of the data.
META_TRAIN = [
    ("glue/CoLA/train.tsv", "header=none,text=3,label=1", 8551, {"0", "1"}),
    ("glue/CoLA/dev.tsv", "header=none,text=3,label=1", 1043, {"0", "1"}),
    ("glue/SST-2/train.tsv", "text=sentence", 67349, {"0", "1"}),
    ("glue/SST-2/dev.tsv", "text=sentence", 872, {"0", "1"}),
    ("glue/MRPC/train.tsv", "label=Quality,text=#1 String,text_b=#2 String", 3667, {"0", "1"}),
    ("glue/MRPC/dev.tsv", "label=0,text=3,text_b=4", 408, {"0", "1"}),
    ("glue/RTE/train.tsv", "", 2490, {"entailment", "not_entailment"}),
    ("glue/RTE/dev.tsv", "", 277, {"entailment", "not_entailment"}),
    ("glue/QNLI/dev.tsv", "text=question,text_b=sentence", 5463,
     {"entailment", "not_entailment"}),
    ("agnews/dev.tsv", "header=none,text=0,label=1", 10001,
     {"World", "Sports", "Business", "Sci/Tech"}),
    ("agnews/test.tsv", "header=none,text=0,label=1", 7600,
     {"World", "Sports", "Business", "Sci/Tech"}),
]


def _meta_train(shared_dir, name):
  return shared_dir / "data" / "meta_train" / name


# --- parsing -----------------------------------------------------------------------------------


def test_parse_data_spec(tmp_path):
  assert readers.parse_data_spec("a/b.tsv") == ("a/b.tsv", {})
  assert readers.parse_data_spec("b.tsv:header=none, text=3,label=1,delimiter=pipe") == (
      "b.tsv", {"header": "none", "text": 3, "label": 1, "delimiter": "|"})
  assert readers.parse_data_spec("m.tsv:text=#1 String,format=csv,delimiter=;") == (
      "m.tsv", {"text": "#1 String", "format": "csv", "delimiter": ";"})
  # A ':' that does not start key=value options, or a file whose name holds them, is path.
  assert readers.parse_data_spec("gs://bucket/x.tsv") == ("gs://bucket/x.tsv", {})
  odd = _write(tmp_path / "x.tsv:text=a", "text\tlabel\n")
  assert readers.parse_data_spec(str(odd)) == (str(odd), {})
  assert readers.data_path("d/x.csv:label=y") == "d/x.csv"


@pytest.mark.parametrize("spec, what", [
    ("x.tsv:txt=1", "unknown data spec key 'txt' (known: text, text_b, label, domain, header, "
     "delimiter, format, label_maps)"),
    ("x.tsv:header=yes", "header=yes: expected header=none"),
    ("x.tsv:delimiter=colon", "delimiter=colon: expected tab, comma, semicolon, pipe or one"),
    ("x.tsv:format=xml", "format=xml: expected one of csv, tsv, json, jsonl"),
    ("x.tsv:text=1,text=2", "data spec key 'text' given twice"),
    ("x.tsv:text=", "empty value for data spec key 'text'"),
])
def test_parse_data_spec_errors(spec, what):
  _raises([spec, what], readers.parse_data_spec, spec)


# --- the GLUE and AG News files as distributed -------------------------------------------------


@pytest.mark.parametrize("name, options, count, labels", META_TRAIN,
                         ids=[name for name, *_ in META_TRAIN])
def test_meta_train_files(shared_dir, name, options, count, labels):
  path = _meta_train(shared_dir, name)
  examples = readers.read_examples(f"{path}:{options}" if options else path)
  assert len(examples) == count
  assert set(collections.Counter(e.label for e in examples)) == labels
  pairs = {e.text_b is not None for e in examples}
  assert pairs == {name.split("/")[-2] in ("MRPC", "RTE", "QNLI")}
  assert all(e.text_a.strip() for e in examples)


def test_meta_train_first_rows(shared_dir):
  cola = readers.read_examples(f"{_meta_train(shared_dir, 'glue/CoLA/dev.tsv')}:header=none,"
                               "text=3,label=1")
  assert cola[0] == LabeledExample("The sailors rode the breeze clear of the rocks.", "1")
  mrpc = readers.read_examples(f"{_meta_train(shared_dir, 'glue/MRPC/dev.tsv')}:label=Quality,"
                               "text=#1 String,text_b=#2 String")
  assert mrpc[0].text_a.startswith("He said the foodservice pie business doesn 't fit")
  assert mrpc[0].text_b.startswith('" The foodservice pie')  # quoting off: the '"' is text
  news = readers.read_examples(f"{_meta_train(shared_dir, 'agnews/dev.tsv')}:header=none,"
                               "text=0,label=1")
  assert news[1].text_a.startswith("It #39;s over.") and news[1].label == "Sci/Tech"


def test_cola_without_spec_suggests_header_none(shared_dir):
  path = _meta_train(shared_dir, "glue/CoLA/dev.tsv")
  _raises([path, "no column for text ('text' or 'sentence1'), label ('label')",
           "the first row looks like data, not a header: 0='gj04' 1='1' 2='' 3='The sailors",
           f"no header? use {path}:header=none,text=N,label=N"], readers.read_examples, path)


@pytest.mark.parametrize("name, columns", [
    ("glue/SST-2/dev.tsv", "the header has 0='sentence' 1='label'"),
    ("glue/MRPC/dev.tsv", "the header has 0='Quality' 1='#1 ID' 2='#2 ID' 3='#1 String'"),
])
def test_missing_columns_list_the_header(shared_dir, name, columns):
  path = _meta_train(shared_dir, name)
  error = _raises([path, "no column for text", columns], readers.read_examples, path)
  assert "line 2" not in str(error) and "looks like data" not in str(error)


# --- options on synthetic files ----------------------------------------------------------------


def test_header_none_errors_name_the_columns(tmp_path):
  path = _write(tmp_path / "x.tsv", "a\tpos\nb\tneg\tc\n")
  _raises([path, "no column for text (column 5): the file has 2 columns, first row 0='a' "
           "1='pos'", "header=none,text=N"], readers.read_examples,
          f"{path}:header=none,text=5,label=1")
  _raises([path, "line 2", "3 fields, the first row has 2"], readers.read_examples,
          f"{path}:header=none,text=0,label=1")


def test_duplicate_column_names(tmp_path):
  path = _write(tmp_path / "d.csv", "text,label,text,note,note\nold,pos,new,x,y\n")
  _raises([path, "line 1", "column 'text' appears 2 times in the header (columns [0, 2]); "
           "choose one by 0-based index, e.g. text=0"], readers.read_examples, path)
  assert readers.read_examples(f"{path}:text=2") == [LabeledExample("new", "pos")]
  # 'note' is duplicated too, but never read: no error.
  assert readers.read_delimited(path, 0) == [LabeledExample("old", "pos")]


def test_delimiter_format_and_json_fields(tmp_path):
  path = _write(tmp_path / "x.txt", "good|pos\nbad|neg\n")
  expected = [LabeledExample("good", "pos"), LabeledExample("bad", "neg")]
  assert readers.read_examples(f"{path}:delimiter=pipe,header=none,text=0,label=1") == expected
  path = _write(tmp_path / "x.data", '{"q": "good", "y": "pos"}\n{"q": "bad", "y": "neg"}\n')
  assert readers.read_examples(f"{path}:format=jsonl,text=q,label=y") == expected
  _raises([path, "header= and delimiter= apply to CSV/TSV files, not JSON"],
          readers.read_examples, f"{path}:format=jsonl,header=none")
  _raises([path, "unknown extension '.data'", "PATH:format="], readers.read_examples, path)


def test_options_refused_for_records_and_directories(tmp_path):
  record = _write(tmp_path / "x.tf_record", "")
  for path in (record, tmp_path):
    _raises([path, "data spec options (text) apply to CSV, TSV and JSON files only"],
            readers.read_examples, f"{path}:text=0")
  # The programs read tf_records as encoded features: an original LEOPARD record's label map is
  # an option of read_examples only, and the error says so.
  _raises([record, "label_maps= reads an original LEOPARD tf_record from Python only"],
          readers.plain_path, f"{record}:label_maps=maps.json")


def test_labels_optional_for_prediction(tmp_path):
  path = _write(tmp_path / "x.tsv", "id\tsentence\n1\tgood\n")
  _raises([path, "no column for label ('label')"], readers.read_examples, f"{path}:text=sentence")
  assert readers.read_examples(f"{path}:text=sentence", require_label=False) == [
      LabeledExample("good", None)]
  # A label column the user names must be there, even when labels are optional.
  _raises([path, "no column for label ('gold')"], readers.read_examples,
          f"{path}:text=sentence,label=gold", require_label=False)


def test_datasets_use_the_path_part(tmp_path):
  _write(tmp_path / "x.tsv", "a\tpos\n")
  spec = "x.tsv:header=none,text=0,label=1"
  assert datasets.resolve(spec, str(tmp_path)) == f"{tmp_path}/{spec}"
  assert datasets.exists(f"{tmp_path}/{spec}") and not datasets.exists(f"{tmp_path}/y.tsv:text=0")
  assert datasets.read(f"{tmp_path}/{spec}") == [LabeledExample("a", "pos")]
  assert datasets.is_tf_record("a.tf_record") and not datasets.is_tf_record("a.tsv:text=0")
