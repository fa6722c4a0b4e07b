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

from ..metrics import TURN_SEP

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
    errors = np.full(len(sessions), np.nan)
    ref_words = np.full(len(sessions), np.nan)
    # Work on codes (samples and transcripts repeat): one alignment per distinct pair, no per-session Python.
    s_codes, samples = pd.factorize(sessions["sample"])
    h_codes, hyps = pd.factorize(sessions["transcript"])
    refs = [references.get(str(name), "") for name in samples]
    has_ref = np.array([bool(r.strip()) for r in refs] + [False])  # the last entry: no sample (code -1)
    scored = (sessions["outcome"] == "ok").to_numpy() & has_ref[s_codes]
    if scored.any():
        width = len(hyps) + 1  # transcript code + 1, so that a missing transcript (-1) is pair 0
        pairs, inverse = np.unique(s_codes[scored].astype(np.int64) * width + h_codes[scored] + 1,
                                   return_inverse=True)
        counts = np.array([_count(refs[p // width], "" if p % width == 0 else str(hyps[p % width - 1]))
                           for p in pairs.tolist()], dtype=np.float64).reshape(-1, 2)
        errors[scored] = counts[inverse, 0]
        ref_words[scored] = counts[inverse, 1]
    return pd.DataFrame({"wer_errors": errors, "wer_ref_words": ref_words}, index=sessions.index)


def _count(reference: str, hypothesis: str) -> tuple[int, int]:
    ref, hyp = normalise(reference), normalise(hypothesis)
    if not ref:  # a reference of punctuation only has no words to score against
        return 0, 0
    o = jiwer.process_words(ref, hyp, reference_transform=_WORDS, hypothesis_transform=_WORDS)
    return o.substitutions + o.deletions + o.insertions, o.substitutions + o.deletions + o.hits


def with_conversations(refs: dict[str, str], samples: pd.Series) -> dict[str, str]:
    """`refs` plus the reference of each conversation among `samples` (its turns' sample names joined by
    TURN_SEP): its turns' references in turn order, so a conversation is scored as one transcript."""
    out = dict(refs)
    for name in samples.dropna().unique():
        parts = str(name).split(TURN_SEP)
        if len(parts) > 1 and name not in out and all(p in refs for p in parts):
            out[str(name)] = " ".join(refs[p] for p in parts)
    return out


def references(meta: dict) -> dict[str, str]:
    """Sample name -> reference transcript, from run.json's `samples` (entries without one are left out)."""
    out = {}
    for name, info in (meta.get("samples") or {}).items():
        text = info.get("transcript") if isinstance(info, dict) else info
        if isinstance(text, str) and text.strip():
            out[name] = text
    return out
