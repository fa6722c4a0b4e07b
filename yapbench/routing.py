"""`--target-policy least_loaded`: each new session goes to the target with the most free slots.

The free slots come from the slot poller's latest reading of every target's /api/modules_info (serverpoll, once a
second). Between two readings this process's own sessions move them: a session it started since the reading takes
a slot, and one that ended since gives a slot back, whether the reading counted it (it was streaming then) or it
was started after the reading (a rejected session: it never held one). Without the second half, a target whose
sessions are short looks fuller and fuller until the next reading. Other processes' sessions show at the next
reading. Pure bookkeeping: the caller passes the reading and its generation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

UNKNOWN = -(1 << 30)  # the headroom of a target without a reading: chosen only when no target has one


@dataclass
class LeastLoaded:
    generation: int = -1  # the poller's generation the counts below are relative to
    moved: dict[str, int] = field(default_factory=dict)  # target -> sessions started minus ended since the reading

    def pick(self, targets: Sequence[str], free: Callable[[str], int | None], generation: int) -> str:
        """The target with the most free slots now (`free`: the reading of poller generation `generation`), and
        count a session started on it."""
        self._follow(generation)

        def headroom(target: str) -> int:
            slots = free(target)
            return (UNKNOWN if slots is None else slots) - self.moved.get(target, 0)

        target = max(targets, key=headroom)
        self.moved[target] = self.moved.get(target, 0) + 1
        return target

    def ended(self, target: str, generation: int) -> None:
        """A session on `target` ended (any outcome): its slot, if it had one, is free again."""
        self._follow(generation)
        self.moved[target] = self.moved.get(target, 0) - 1

    def _follow(self, generation: int) -> None:
        # A new reading already shows every session started or ended before it.
        if generation != self.generation:
            self.generation = generation
            self.moved = {}
