"""Conversations (--conversation): several turns of speech on one connection, separated by silence that is
streamed in real time, as a voice agent's user speaks, pauses while the agent answers, and speaks again.

A conversation is built once per session as one PreparedClip: the turns' pre-built speech frames and, between
them, one shared pre-built silence frame repeated, so the streamer paces it exactly like a single clip (the same
per-frame cost) and flushes with the Marker only after the last turn.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Sequence

from .endofturn import DEFAULT_RULE, EndOfTurnRule, Smoothing
from .metrics import TURN_SEP
from .protocol import FRAME_SECONDS
from .streamer import PreparedClip, Turn

_NUMBER = r"(\d+(?:\.\d+)?)"
_RANGE = re.compile(rf"^{_NUMBER}(?:\s*-\s*{_NUMBER})?$")
FORMAT = ("turns=N[-M],pause=S[-T]s[,head=2][,threshold=0.5][,smoothing=none|unmute][,flush=end|turn], "
          "e.g. turns=3-6,pause=1.5-4s")
KEYS = ("turns", "pause", "head", "threshold", "smoothing", "flush")
FLUSH = ("end", "turn")


@dataclass(frozen=True)
class ConversationSpec:
    """How conversations are drawn: a turn count and each pause drawn uniformly from their ranges."""

    turns: tuple[int, int]
    pause_s: tuple[float, float]
    end_of_turn: EndOfTurnRule = DEFAULT_RULE
    flush_turns: bool = False  # flush=turn: a Marker after each turn's speech, not only after the last pause

    def draw_turns(self, rng: random.Random) -> int:
        return rng.randint(*self.turns)

    def draw_pause_s(self, rng: random.Random) -> float:
        return rng.uniform(*self.pause_s)


def parse_conversation(text: str) -> ConversationSpec | None:
    """'turns=3-6,pause=1.5-4s' (a single number is a fixed value); '' -> None. ValueError says what is wrong."""
    if not text.strip():
        return None
    fields: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in KEYS:
            raise ValueError(f"--conversation {text!r}: {part.strip()!r} is not one of {', '.join(KEYS)} "
                             f"as KEY=VALUE ({FORMAT})")
        if key in fields:
            raise ValueError(f"--conversation {text!r}: {key} is given twice")
        fields[key] = value.strip()
    missing = [k for k in ("turns", "pause") if k not in fields]
    if missing:
        raise ValueError(f"--conversation {text!r}: {' and '.join(missing)} missing ({FORMAT})")
    turns = _range(text, "turns", fields["turns"])
    pause_text = fields["pause"]
    if not pause_text.endswith("s"):
        raise ValueError(f"--conversation {text!r}: the pause needs its unit, seconds: pause={pause_text}s")
    pause = _range(text, "pause", pause_text[:-1].strip())
    if turns[0] != int(turns[0]) or turns[1] != int(turns[1]) or turns[0] < 1:
        raise ValueError(f"--conversation {text!r}: turns must be whole numbers >= 1")
    flush = fields.get("flush", "end")
    if flush not in FLUSH:
        raise ValueError(f"--conversation {text!r}: flush={flush!r} is not one of {', '.join(FLUSH)}")
    try:
        rule = EndOfTurnRule(int(fields.get("head", "2")), float(fields.get("threshold", "0.5")),
                             Smoothing(fields.get("smoothing", "none")))
    except ValueError as exc:  # a head or threshold that is not a number, or out of range; an unknown smoothing
        raise ValueError(f"--conversation {text!r}: {exc} (head an index from 0, threshold in (0, 1], smoothing "
                         f"one of {', '.join(Smoothing)})") from None
    return ConversationSpec((int(turns[0]), int(turns[1])), pause, rule, flush == "turn")


def _range(text: str, key: str, value: str) -> tuple[float, float]:
    m = _RANGE.match(value)
    if not m:
        raise ValueError(f"--conversation {text!r}: {key}={value!r} is not a number or a range LOW-HIGH ({FORMAT})")
    lo = float(m.group(1))
    hi = float(m.group(2)) if m.group(2) is not None else lo
    if hi < lo:
        raise ValueError(f"--conversation {text!r}: {key} range {value} runs backwards")
    return lo, hi


def build_conversation(clips: Sequence[PreparedClip], pauses_s: Sequence[float],
                       end_of_turn: EndOfTurnRule = DEFAULT_RULE, flush_turns: bool = False) -> PreparedClip:
    """The clips as turns, pauses_s[i] seconds of silence after turn i. The last turn has its pause too (the user
    waits for the agent's answer), so its end of turn is detected before the flush ends the conversation."""
    if len(pauses_s) != len(clips):
        raise ValueError(f"{len(clips)} turns need {len(clips)} pauses, got {len(pauses_s)}")
    silence = clips[0].silence  # one masked frame object, shared by every pause of every conversation
    frames: list[bytes] = []
    turns: list[Turn] = []
    for clip, pause_s in zip(clips, pauses_s):
        turns.append(Turn(clip.name, len(frames), len(frames) + clip.n_frames))
        frames.extend(clip.frames)
        frames.extend([silence] * round(pause_s / FRAME_SECONDS))
    return PreparedClip(TURN_SEP.join(c.name for c in clips), tuple(frames), silence, len(frames) * FRAME_SECONDS,
                        tuple(turns), end_of_turn, flush_turns)


def draw_conversation(spec: ConversationSpec, pick, rng: random.Random) -> PreparedClip:
    """A conversation of spec.draw_turns() turns, each a clip from `pick(rng)` (samples drawn per turn)."""
    n = spec.draw_turns(rng)
    return build_conversation([pick(rng) for _ in range(n)], [spec.draw_pause_s(rng) for _ in range(n)],
                              spec.end_of_turn, spec.flush_turns)
