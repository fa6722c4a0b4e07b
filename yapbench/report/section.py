"""A section another part of yapbench hands the report (the capacity search's answer and curve): the report renders
it without knowing where it came from, so it never imports its producers."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Section:
    title: str
    lines: tuple[str, ...]  # the headline, in bold
    header: tuple[str, ...]  # the table's columns
    rows: tuple[tuple[object, ...], ...]  # cells: numbers are formatted as the report's own; strings as they are
    image: str | None = None  # a PNG beside report.html
