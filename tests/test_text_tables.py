"""Text tables as people export them (issue 17): sniffed delimiters, byte-order marks, decimal
commas, index columns, text columns, repeated names, only the chosen columns parsed."""

import numpy as np
import pytest

from nfkit.data import read_table


def _file(tmp_path, text, name="t.csv", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_a_spreadsheet_export_reads_with_notes(tmp_path):
    # Excel in a decimal-comma locale: BOM, semicolons, decimal commas, an index, a label.
    text = ";a;b;species\n0;1,5;2;setosa\n1;2,5;3;virginica\n2;3,0;4,25;setosa\n"
    table = read_table(_file(tmp_path, text, encoding="utf-8-sig"))
    assert table.columns == ["a", "b"]
    np.testing.assert_allclose(table.values, [[1.5, 2.0], [2.5, 3.0], [3.0, 4.25]])
    notes = " | ".join(table.notes)
    for part in ("semicolon-separated", "unnamed first column", "text column 'species'",
                 "decimal commas in column 'a'"):  # fmt: skip
        assert part in notes, part


@pytest.mark.parametrize(("sep", "name"), [("\t", "tab"), ("   ", "whitespace"), (",", None)])
def test_the_delimiter_is_sniffed(tmp_path, sep, name):
    text = "\n".join(sep.join(row) for row in [["x", "y"], ["1", "2"], ["3", "4.5"]])
    table = read_table(_file(tmp_path, text, name="t.txt"))
    assert table.columns == ["x", "y"] and table.values.tolist() == [[1, 2], [3, 4.5]]
    assert any(name in n for n in table.notes) if name else not table.notes


def test_only_the_chosen_columns_are_parsed(tmp_path):
    path = _file(tmp_path, "a,b,c\n1,oops,2\n3,4,5\n")
    assert read_table(path, ["a", "c"]).values.tolist() == [[1, 2], [3, 5]]
    with pytest.raises(ValueError, match=r"line 2, column 'b': 'oops' is not a number"):
        read_table(path)


@pytest.mark.parametrize(
    ("text", "kwargs", "message"),
    [
        ("a,b,a\n1,2,3\n", {}, r"column 'a' appears twice \(columns 0 and 2"),
        ("a,label\n1,x\n2,y\n", {"columns": ["label"]}, r"column 'label' holds text \('x'\)"),
        ("a,b\n1,2\n3,4\n", {"delimiter": ";"}, "each line is one cell; the file looks comma"),
        ("label\nx\ny\n", {}, "has no numeric columns"),
    ],
)
def test_what_cannot_be_read_says_why(tmp_path, text, kwargs, message):
    with pytest.raises(ValueError, match=message):
        read_table(_file(tmp_path, text), **kwargs)
