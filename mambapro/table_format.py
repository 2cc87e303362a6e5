"""One output table of :mod:`mambapro.tables` (raw rows for CSV, formatted sections for Markdown) and how its numbers
are printed; tables are written atomically (:func:`mambapro.results.write_text`)."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mambapro.results import write_text

__all__ = ["Table", "fmt", "fmt_stat", "write_tables"]


@dataclass
class Table:
    """One output table: raw ``rows`` (CSV, numbers unformatted) and Markdown ``sections`` (title, header,
    formatted rows)."""

    name: str
    title: str
    columns: list[str]
    rows: list[dict[str, Any]]
    sections: list[tuple[str, list[str], list[list[str]]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns, lineterminator="\n", extrasaction="raise")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
        return buf.getvalue()

    def to_markdown(self) -> str:
        lines = [f"# {self.title}", ""]
        for title, header, rows in self.sections:
            if title:
                lines += [f"## {title}", ""]
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "|".join("---" for _ in header) + "|")
            lines += ["| " + " | ".join(r) + " |" for r in rows]
            lines.append("")
        lines += [f"- {n}" for n in self.notes]
        return "\n".join(lines).rstrip() + "\n"


def fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, str):
        return value
    return f"{value:.{digits}f}"


def fmt_stat(mean: float, std: float, digits: int = 1) -> str:
    if math.isnan(std):
        return fmt(mean, digits)
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def write_tables(tables: Iterable[Table], out: str | Path) -> list[Path]:
    written = []
    for t in tables:
        written.append(write_text(Path(out) / f"{t.name}.csv", t.to_csv()))
        written.append(write_text(Path(out) / f"{t.name}.md", t.to_markdown()))
    return written
