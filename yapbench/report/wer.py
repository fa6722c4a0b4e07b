"""Word error rate of each session's transcript against its sample's reference (jiwer).

Normalisation, applied to both sides (docs/report.md): lowercase; hyphens, dashes and slashes become spaces
("real-time" = "real time"); every other Unicode punctuation character is removed ("Hello," = "hello",
"don't" = "dont"); whitespace collapses. Numbers are not spelled out, so "20" against "twenty" is an error.

Only `ok` sessions are scored: a session cut short already counts in error_rate and would count twice here.
Identical (reference, transcript) pairs are scored once: a load streams the same few samples thousands of times
and a deterministic model answers alike, so this turns tens of thousands of alignments into a handful.
"""

from __future__ import annotations

import jiwer
import numpy as np
import pandas as pd

NORMALISE = jiwer.Compose([
    jiwer.ToLowerCase(),
    jiwer.SubstituteRegexes({r"[-\u2010-\u2015/]": " "}),
    jiwer.RemovePunctuation(),
    jiwer.RemoveMultipleSpaces(),
    jiwer.Strip(),
])
_WORDS = jiwer.ReduceToListOfListOfWords()


def normalise(text: str) -> str:
    return NORMALISE(text)


def score_sessions(sessions: pd.DataFrame, references: dict[str, str]) -> pd.DataFrame:
    """Per session: `wer_errors` (S+D+I) and `wer_ref_words`, NaN where the session is not scored."""
    out = pd.DataFrame({"wer_errors": np.nan, "wer_ref_words": np.nan}, index=sessions.index)
    ref = sessions["sample"].astype(object).map(references)
    scored = (sessions["outcome"] == "ok") & ref.notna() & (ref.fillna("") != "")
    if not scored.any():
        return out
    pairs = pd.DataFrame({"ref": ref[scored], "hyp": sessions.loc[scored, "transcript"].astype(object).fillna("").astype(str)})
    unique = pairs.drop_duplicates()
    counts = [_count(r, h) for r, h in zip(unique["ref"], unique["hyp"])]
    unique = unique.assign(wer_errors=[c[0] for c in counts], wer_ref_words=[c[1] for c in counts])
    merged = pairs.merge(unique, on=["ref", "hyp"], how="left")
    out.loc[scored, "wer_errors"] = merged["wer_errors"].to_numpy()
    out.loc[scored, "wer_ref_words"] = merged["wer_ref_words"].to_numpy()
    return out


def _count(reference: str, hypothesis: str) -> tuple[int, int]:
    ref, hyp = normalise(reference), normalise(hypothesis)
    if not ref:  # a reference of punctuation only has no words to score against
        return 0, 0
    o = jiwer.process_words(ref, hyp, reference_transform=_WORDS, hypothesis_transform=_WORDS)
    return o.substitutions + o.deletions + o.insertions, o.substitutions + o.deletions + o.hits


def references(meta: dict) -> dict[str, str]:
    """Sample name -> reference transcript, from run.json's `samples` (entries without one are left out)."""
    out = {}
    for name, info in (meta.get("samples") or {}).items():
        text = info.get("transcript") if isinstance(info, dict) else info
        if isinstance(text, str) and text.strip():
            out[name] = text
    return out
