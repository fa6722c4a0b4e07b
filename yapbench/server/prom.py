"""The four Prometheus metrics of moshi-server's `metrics::asr`, in the text exposition format."""

from __future__ import annotations

import bisect

STEP_BUCKETS = (0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08)
NUM_STEPS_BUCKETS = (2.0, 25.0, 125.0, 250.0, 500.0, 750.0, 1125.0, 1500.0, 2250.0, 3000.0, 4500.0)


def _num(x: float) -> str:
    """Numbers as the Rust prometheus crate prints them: integers without a fraction."""
    return str(int(x)) if float(x).is_integer() else repr(float(x))


class Histogram:
    def __init__(self, name: str, help_text: str, buckets: tuple[float, ...]) -> None:
        self.name, self.help, self.buckets = name, help_text, buckets
        self.counts = [0] * len(buckets)
        self.total = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        i = bisect.bisect_left(self.buckets, value)
        if i < len(self.counts):
            self.counts[i] += 1
        self.total += 1
        self.sum += value

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        cumulative = 0
        for bound, count in zip(self.buckets, self.counts):
            cumulative += count
            lines.append(f'{self.name}_bucket{{le="{_num(bound)}"}} {cumulative}')
        lines.append(f'{self.name}_bucket{{le="+Inf"}} {self.total}')
        lines.append(f"{self.name}_sum {_num(self.sum)}")
        lines.append(f"{self.name}_count {self.total}")
        return lines


class AsrMetrics:
    def __init__(self) -> None:
        self.connect = 0
        self.open_channels = 0
        self.step_duration = Histogram("asr_model_step_duration", "ASR model step duration distribution.",
                                       STEP_BUCKETS)
        self.num_steps = Histogram("asr_connection_num_steps",
                                   "ASR model, distribution of number of steps for a connection.", NUM_STEPS_BUCKETS)

    def render(self) -> str:
        lines = [
            "# HELP asr_connect Number of connections to the asr.",
            "# TYPE asr_connect counter",
            f'asr_connect{{handler="all"}} {self.connect}',
            *self.num_steps.render(),
            *self.step_duration.render(),
            "# HELP asr_open_channels Number of open channels (users currently connected).",
            "# TYPE asr_open_channels gauge",
            f'asr_open_channels{{handler="all"}} {self.open_channels}',
        ]
        return "\n".join(lines) + "\n"
