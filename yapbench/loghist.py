"""A log-bucketed histogram of milliseconds (HdrHistogram-style): fixed buckets, mergeable by adding counts.

Bucket k >= 1 holds values in [LOW_MS * R**(k-1), LOW_MS * R**k); bucket 0 holds everything below LOW_MS (zero and
the clock's tiny negatives); the last bucket also holds everything above the range. A bucket stands for the value
2ab/(a+b) of its edges a < b, which is within RELATIVE_ERROR of every value in it. 10 ms (the generator's lag
limit, docs/metrics.md) is an edge, so "how many frames were later than 10 ms" is an exact count.

The bucket scheme is part of the run-directory format (send_lag_hist.bin): changing it changes the format.
"""

from __future__ import annotations

import math

import numpy as np

RELATIVE_ERROR = 0.01
R = (1 + RELATIVE_ERROR) / (1 - RELATIVE_ERROR)  # ratio of consecutive edges
EDGE_MS = 10.0  # an exact edge
_BELOW = math.ceil(math.log(EDGE_MS / 0.001) / math.log(R))  # buckets from ~1 us up to 10 ms
LOW_MS = EDGE_MS / R**_BELOW  # ~0.001 ms
BUCKETS = _BELOW + math.ceil(math.log(3_600_000.0 / EDGE_MS) / math.log(R)) + 1  # up to an hour: 1,102
EDGES = LOW_MS * R ** np.arange(BUCKETS)  # EDGES[k] is bucket k+1's lower edge (bucket 0 is below EDGES[0])
VALUES = np.concatenate(([0.0], 2 * EDGES[:-1] * EDGES[1:] / (EDGES[:-1] + EDGES[1:])))


_PER_LOW, _PER_LOG_R = np.float32(1 / LOW_MS), np.float32(1 / math.log(R))
CHUNK = 1 << 22  # values bucketed at a time: the float64 temporaries of 90 M values would need gigabytes


def bucket_of(values_ms: np.ndarray) -> np.ndarray:
    """Bucket index (int16) of each value; NaN goes to bucket 0 (callers drop NaN first when it matters)."""
    values = np.asarray(values_ms)
    if values.size <= CHUNK:
        return _bucket_of(values)
    out = np.empty(values.shape, dtype=np.int16)
    for lo in range(0, values.size, CHUNK):
        out[lo: lo + CHUNK] = _bucket_of(values[lo: lo + CHUNK])
    return out


def _bucket_of(values_ms: np.ndarray) -> np.ndarray:
    v = np.asarray(values_ms)
    if v.dtype.kind != "f":
        v = v.astype(np.float64)
    # The estimate in float32 (twice as fast as float64, and within a hundredth of a bucket): the comparison
    # with the edges below, in the values' own precision, puts every value in its exact bucket.
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        k = np.log(v.astype(np.float32, copy=False) * _PER_LOW) * _PER_LOG_R + np.float32(1)
    # fmax/fmin pass over a NaN (the log of a NaN or a negative value): it goes to bucket 0 as -inf does.
    k = np.fmin(np.fmax(k, np.float32(0)), np.float32(BUCKETS - 1)).astype(np.int16)  # >= 0: truncation is floor
    up = (k < BUCKETS - 1) & (v >= EDGES[np.minimum(k, BUCKETS - 1)])
    down = (k > 0) & (v < EDGES[np.maximum(k - 1, 0)])
    return (k + up - down).astype(np.int16)


def quantiles(counts: np.ndarray, qs: list[float]) -> np.ndarray:
    """Estimated quantiles (fractions in [0, 1]) from bucket counts along the last axis; NaN where a row is empty.

    The q-quantile is the value of the bucket holding the ceil(q*n)-th value (rank 1 for q=0: the minimum)."""
    c = np.asarray(counts, dtype=np.int64)
    cum = np.cumsum(c, axis=-1)
    n = cum[..., -1:]
    out = []
    for q in qs:
        rank = np.maximum(np.ceil(q * n), 1)
        k = np.argmax(cum >= rank, axis=-1)
        out.append(np.where(n[..., 0] > 0, VALUES[k], np.nan))
    return np.stack(out, axis=-1)


def mean(counts: np.ndarray) -> float | None:
    c = np.asarray(counts, dtype=np.float64)
    n = c.sum()
    return float((c * VALUES).sum() / n) if n else None
