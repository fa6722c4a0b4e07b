"""`--target-policy least_loaded`: each new session goes to the target with the most free slots.

The free slots come from the slot poller's latest reading of every target's /api/modules_info (serverpoll, once a
second). Between two readings this process's own sessions move them: a session it started since the reading takes
a slot, and one that ended since gives a slot back, whether the reading counted it (it was streaming then) or it
was started after the reading (a rejected session: it never held one). Without the second half, a target whose
sessions are short looks fuller and fuller until the next reading. Other processes' sessions show at the next
reading. Pure bookkeeping: the caller passes each target's latest reading and the poll round it came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

UNKNOWN = -(1 << 30)  # the headroom of a target without a reading: chosen only when no target has one

Reading = Callable[[str], "tuple[int | None, int]"]  # target -> (free slots, the poll round they were read in)


@dataclass
class LeastLoaded:
    # target -> sessions started minus ended since its reading, and the poll round of that reading. Per target: a
    # target that missed a poll round keeps its older reading, and so the sessions counted against it since then.
    moved: dict[str, int] = field(default_factory=dict)
    read_in: dict[str, int] = field(default_factory=dict)

    def pick(self, targets: Sequence[str], reading: Reading) -> str:
        """The target with the most free slots now (`reading`: the poller's latest per target), and count a session
        started on it."""

        def headroom(target: str) -> int:
            free, round_ = reading(target)
            self._follow(target, round_)
            return (UNKNOWN if free is None else free) - self.moved[target]

        target = max(targets, key=headroom)
        self.moved[target] += 1
        return target

    def ended(self, target: str, reading: Reading) -> None:
        """A session on `target` ended (any outcome): its slot, if it had one, is free again."""
        self._follow(target, reading(target)[1])
        self.moved[target] -= 1

    def _follow(self, target: str, round_: int) -> None:
        # A new reading of this target already shows every session started or ended before it.
        if self.read_in.get(target) != round_:
            self.read_in[target] = round_
            self.moved[target] = 0
