"""CSV that a spreadsheet opens as data, never as formulas (OWASP "CSV Injection").

Cells of the edge's CSVs (breakdowns, series, audit, the privacy export) carry values
that outsiders chose: ids and error texts from beacons, user agents, audit parameters.
Excel, LibreOffice and Google Sheets run a cell that starts with `=`, `+`, `-` or `@` as
a formula (`=HYPERLINK(...)` exfiltrates, `@SUM(...)` runs), and tab or CR at the start
can smuggle one past a check. So, as OWASP recommends:

- a text cell starting with one of those characters gets a leading `'`, which spreadsheets
  read as "this is text" and hide (numbers stay numbers: `-3` from our own figures is
  written as a number, not as text);
- a cell holding `"`, `,`, CR or LF is quoted (RFC 4180, `"` doubled) so it can start
  neither a new cell nor a new row; so is one holding `;` or a tab, the separators
  spreadsheets pick in many locales, where `x;=1+1` would otherwise split into a formula.

Written by hand rather than with `csv.writer`: its minimal quoting knows only its own
delimiter, and quoting every cell would change every existing file for no gain.
"""

from __future__ import annotations

from typing import Any, Iterable

from litestar import Response

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_QUOTE_IF = ('"', ",", ";", "\t", "\r", "\n")


def cell(value: Any) -> str:
    """One value as written: numbers as they are, None as empty, text neutralised and
    quoted when it holds a separator, a quote or a line break."""
    if value is None:
        return ""
    if isinstance(value, (bool, int, float)):
        return str(value)
    text = value if isinstance(value, str) else str(value)
    if text.startswith(FORMULA_START):
        text = "'" + text
    if any(c in text for c in _QUOTE_IF):
        text = '"' + text.replace('"', '""') + '"'
    return text


def line(values: Iterable[Any]) -> str:
    return ",".join(cell(v) for v in values) + "\n"


class SafeWriter:
    """A `csv.writer` look-alike over `cell`, for code that writes row by row."""

    def __init__(self, out) -> None:
        self._out = out

    def writeheader(self, columns: Iterable[str]) -> None:
        self._out.write(line(columns))

    def writerow(self, row: Iterable[Any]) -> None:
        self._out.write(line(row))


def writer(out) -> SafeWriter:
    return SafeWriter(out)


def table(columns: list[str], rows: Iterable[dict]) -> str:
    """A header and one line per dict (missing keys empty, extra keys ignored)."""
    return line(columns) + "".join(line(row.get(c) for c in columns) for row in rows)


def csv_response(rows: list[dict], columns: list[str], filename: str) -> Response[str]:
    """Rows as a CSV download, formula-neutralised and quoted: values in it come from
    beacons and requests."""
    return Response(table(columns, rows), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})
