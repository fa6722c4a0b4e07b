"""The sample manifest: which speech files a load streams, with their exact transcripts (for WER)."""

from __future__ import annotations

import csv
import fnmatch
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError

DEFAULT_MANIFEST = Path(__file__).resolve().parent.parent / "samples" / "manifest.csv"
REQUIRED_COLUMNS = ("file", "transcript")


@dataclass(frozen=True)
class Sample:
    name: str  # the manifest's `file` column, relative to the manifest
    path: Path
    transcript: str
    language: str = ""
    duration_s: float = 0.0
    weight: float = 1.0


def load_manifest(path: str | Path = DEFAULT_MANIFEST) -> list[Sample]:
    """Read manifest.csv (columns file, transcript; optional language, duration_s, weight)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"manifest {p}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"manifest {p}: cannot be read ({exc})") from None
    reader = csv.DictReader(text.splitlines())
    missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise UserError(f"manifest {p}: missing column(s) {', '.join(missing)} (line 1 is {text.splitlines()[:1]})")
    samples = []
    for line_no, row in enumerate(reader, start=2):
        name = (row.get("file") or "").strip()
        if not name:
            raise UserError(f"manifest {p}, line {line_no}: empty 'file' column")
        try:
            duration = float(row.get("duration_s") or 0.0)
            weight = float(row.get("weight") or 1.0)
        except ValueError as exc:
            raise UserError(f"manifest {p}, line {line_no}: {exc}") from None
        if weight < 0:
            raise UserError(f"manifest {p}, line {line_no}: weight must be >= 0")
        samples.append(
            Sample(name, (p.parent / name).resolve(), (row.get("transcript") or "").strip(),
                   (row.get("language") or "").strip(), duration, weight)
        )
    if not samples:
        raise UserError(f"manifest {p}: lists no samples")
    return samples


def select(samples: list[Sample], spec: str | None) -> list[Sample]:
    """Pick samples by a comma-separated list of names or glob patterns ("mid.wav,real/en_*"), or "lang:fr".

    A pattern that is a path to an audio file outside the manifest is used as is, with no transcript.
    """
    if not spec:
        return samples
    chosen: list[Sample] = []
    for pattern in (s.strip() for s in spec.split(",")):
        if not pattern:
            continue
        if pattern.startswith("lang:"):
            hits = [s for s in samples if s.language == pattern[5:]]
        else:
            hits = [s for s in samples if fnmatch.fnmatch(s.name, pattern) or s.name == pattern]
            if not hits and Path(pattern).is_file():
                hits = [Sample(Path(pattern).name, Path(pattern).resolve(), "")]
        if not hits:
            raise UserError(f"samples: {pattern!r} matches nothing in the manifest and is not a file")
        chosen.extend(h for h in hits if h not in chosen)
    return chosen
