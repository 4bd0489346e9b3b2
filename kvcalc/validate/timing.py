"""Timing in the manner of gpt-fast: warm-ups discarded, the device synchronised before the clock is read,
CUDA events on GPUs, the median of repeats. On CUDA a second figure replays the work as a CUDA graph, which takes
the per-kernel launch overhead out."""

from __future__ import annotations

import statistics
import time
from typing import Callable, NamedTuple


class Timing(NamedTuple):
    ms: float  # median wall time of one call, launches included
    graph_ms: float | None  # the same work replayed as a CUDA graph (None on the CPU or when capture fails)


def _median_ms(fn: Callable[[], object], sync: Callable[[], None], repeats: int, events) -> float:
    times = []
    for _ in range(repeats):
        if events is not None:
            start, end = events()
            start.record()
            fn()
            end.record()
            sync()
            times.append(start.elapsed_time(end))
        else:
            sync()
            t = time.perf_counter()
            fn()
            sync()
            times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def measure(fn: Callable[[], object], device, *, warmup: int = 3, repeats: int = 10, graphs: bool = True) -> Timing:
    import torch

    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    events = (lambda: (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))) if cuda else None
    for _ in range(warmup):
        fn()
    sync()
    ms = _median_ms(fn, sync, repeats, events)
    graph_ms = None
    if cuda and graphs:
        try:
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                fn()
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                fn()
            graph.replay()
            sync()
            graph_ms = _median_ms(graph.replay, sync, repeats, events)
        except RuntimeError:
            graph_ms = None
    return Timing(ms, graph_ms)
