"""What a step is: a name, a read-only check that says whether anything must change, and an apply."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..context import Context


@dataclass(frozen=True)
class Check:
    """A check's verdict. `needed`: apply must run; `skip`: the step does not apply to this host."""

    reason: str
    needed: bool = False
    skip: bool = False

    @classmethod
    def ok(cls, reason: str) -> Check:
        return cls(reason)

    @classmethod
    def change(cls, reason: str) -> Check:
        return cls(reason, needed=True)

    @classmethod
    def skipped(cls, reason: str) -> Check:
        return cls(reason, skip=True)


class Step(Protocol):
    id: str

    def check(self, ctx: Context) -> Check:
        """Read-only. Raises StepError when the host cannot be brought to the desired state at all."""
        ...

    def apply(self, ctx: Context, check: Check) -> str:
        """Make it so (only called when `check.needed` and not planning); returns what was done."""
        ...


class CheckOnly:
    """Base for steps that only verify (preflight, readiness, status): nothing to apply."""

    def apply(self, ctx: Context, check: Check) -> str:
        raise AssertionError(f"{type(self).__name__} has nothing to apply")
