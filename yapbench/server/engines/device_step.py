"""The host side shared by the engines that run the whole batched step on a torch device (torch, moshi).

Per step, as moshi-server's BatchedAsr does it (docs/protocol.md §3): the input is always the full batch,
(batch_size, 1920) float32 frames plus an active mask; every row is computed, only active rows advance. The frames
and the mask go to static device buffers (pinned on the host, so the copies are plain DMA), the subclass's
`_compute` reads them and writes one (batch_size, 1 + extra_heads) float32 tensor: the text token, then each extra
head's class-0 probability. Reading that tensor back is the step's one host synchronisation.

On CUDA `_compute` is captured once as a CUDA graph and replayed (option cuda_graph, default true): eager PyTorch
pays a Python launch per kernel, hundreds a step, which a compiled server does not, and would make the step time
a measure of PyTorch's launcher rather than of the model.
"""

from __future__ import annotations

import gc
from abc import abstractmethod

import numpy as np
import torch

from ...protocol import FRAME_SAMPLES
from .base import Engine, ModelSpec, StepOutput

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
REPORTED_CLASS = 0  # Step.prs reports class 0 of each extra head's softmax (docs/protocol.md §2)


def pick_device(spec: ModelSpec) -> tuple[torch.device, torch.dtype]:
    """Options device ("cuda" when available, else "cpu") and dtype ("bfloat16" on CUDA, "float32" on CPU:
    moshi-server's defaults)."""
    device = torch.device(spec.options.get("device") or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = DTYPES[spec.options.get("dtype") or ("bfloat16" if device.type == "cuda" else "float32")]
    return device, dtype


class DeviceStepEngine(Engine):
    """Subclasses build their model, then call `_start(extra_heads)`; they implement `_compute`. An engine whose
    library graphs its own pieces passes capture=False: nested captures do not mix."""

    blocking = True  # a step holds the GPU for milliseconds: the loop runs it in a worker thread
    default_step_ms = 0.0  # the cost is real, nothing to simulate

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self.device, self.dtype = pick_device(spec)
        torch.manual_seed(spec.seed)  # samplers draw from the default generator (the one CUDA graphs support)
        self._graph: torch.cuda.CUDAGraph | None = None

    def _start(self, extra_heads: int, capture: bool = True) -> None:
        b, on_gpu = self.spec.batch_size, self.device.type == "cuda"
        self._heads = extra_heads
        self._frames = torch.zeros(b, FRAME_SAMPLES, device=self.device)
        self._active = torch.zeros(b, dtype=torch.bool, device=self.device)
        self._out = torch.zeros(b, 1 + extra_heads, device=self.device)
        self._host_frames = torch.zeros(b, FRAME_SAMPLES, pin_memory=on_gpu)
        self._host_active = torch.zeros(b, dtype=torch.bool, pin_memory=on_gpu)
        if capture and on_gpu and bool(self.spec.options.get("cuda_graph", True)):
            self._graph = self._capture()

    @abstractmethod
    def _compute(self) -> None:
        """One step from self._frames and self._active into self._out (no host synchronisation on CUDA)."""

    def _prepare(self) -> None:
        """Eager work before each step's compute (or graph replay), e.g. handing the mask to library modules."""

    def _capture(self) -> torch.cuda.CUDAGraph:
        # Warm up on a side stream with no slot active (nothing in the state moves), then capture.
        self._prepare()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.no_grad():
            for _ in range(3):
                self._compute()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), torch.no_grad():
            self._compute()
        return graph

    def warmup(self) -> None:
        # The real server's two warm-up steps on zeros; with no slot active they leave every slot as it was.
        for _ in range(2):
            self.step(np.zeros((self.spec.batch_size, FRAME_SAMPLES), np.float32), np.zeros(self.spec.batch_size, bool))

    def step(self, frames: np.ndarray, active: np.ndarray) -> StepOutput:
        self._host_frames.numpy()[:] = frames
        self._host_active.numpy()[:] = active
        self._frames.copy_(self._host_frames, non_blocking=True)
        self._active.copy_(self._host_active, non_blocking=True)
        with torch.no_grad():
            self._prepare()
            if self._graph is not None:
                self._graph.replay()
            else:
                self._compute()
        out = self._out.cpu().numpy()  # the step's one synchronisation
        prs = out[:, 1:].copy() if self._heads else None
        return StepOutput(tokens=out[:, 0].astype(np.int64), prs=prs)

    def _drop_model(self) -> None:
        """Drop the references to the model and its streaming state (called by `close`)."""

    def close(self) -> None:
        self._graph = None  # the graph's memory pool goes first, then the tensors it pointed at
        self._drop_model()
        gc.collect()  # model code may hold reference cycles (moshi's streaming states do): free them now
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
