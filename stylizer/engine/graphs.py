"""CUDA graphs of the step loop: capture once per plan and shape, replay every step of every job.

A real-size guided step launches thousands of small kernels, and the GPU waits on the launches
(see README, *Performance*). A CUDA graph records them once and replays them with one launch.
This is ``torch.cuda.graph`` on the step's pure function (:mod:`stylizer.engine.step`), with the
backward pass inside the capture as ``torch.cuda.make_graphed_callables`` does: no compiler,
so a capture costs a few steps' time rather than inductor's minutes.

A captured graph reads and writes fixed addresses. :class:`CapturedCall` owns a copy of every
input tensor; each call copies the new values in (a few device-to-device copies), replays, and
returns the graph's own outputs, which the next replay overwrites. Graphs are kept per backend,
at most :data:`DEFAULT_GRAPHS` of them unless the server says otherwise, least recently used dropped first.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import torch
from torch.utils import _pytree as pytree

log = logging.getLogger(__name__)

# Enough for a job's inversion, unguided and guided steps in both modes at two sizes.
DEFAULT_GRAPHS = 8
# Runs before the capture, on a side stream, so that lazy initialisation (cuBLAS handles,
# cuDNN's algorithm search, autocast's casts) happens outside it.
WARMUP_RUNS = 2
# The attribute under which an object (a backend) keeps its graphs, so they live exactly as long as it.
_GRAPHS = "_stylizer_graphs"


class CapturedCall:
    """``fn(*args)`` captured as one CUDA graph, replayed on new arguments of the same structure and shapes.

    Args:
        fn: a function of tensors (nested in tuples, named tuples, lists and dicts) that neither
            synchronises with the host nor draws random numbers.
        args: example arguments; their values are copied, so the call that captures also computes.
    """

    def __init__(self, fn: Callable[..., Any], args: tuple) -> None:
        flat, self._spec = pytree.tree_flatten(args)
        self._inputs = [x.detach().clone() if isinstance(x, torch.Tensor) else x for x in flat]
        static = pytree.tree_unflatten(self._inputs, self._spec)
        started = time.perf_counter()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_RUNS):
                fn(*static)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        # thread_local: work another thread runs meanwhile (a second GPU's worker) does not break the capture.
        with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
            self.outputs = fn(*static)
        torch.cuda.synchronize()
        self.capture_s = time.perf_counter() - started

    def __call__(self, *args: Any) -> Any:
        """Copy ``args`` into the graph's inputs, replay, and return its outputs (valid until the next replay)."""
        flat, spec = pytree.tree_flatten(args)
        if spec != self._spec:
            raise ValueError("a captured graph was called with arguments of another structure")
        for static, value in zip(self._inputs, flat, strict=True):
            if isinstance(static, torch.Tensor) and static.data_ptr() != value.data_ptr():
                static.copy_(value)
        self.graph.replay()
        return self.outputs


class GraphCache:
    """Captured graphs by key, at most ``max_graphs`` of them, least recently used dropped first.

    Attributes:
        captures: how many graphs were captured.
        capture_s: the seconds all captures took (warm-up runs included).
    """

    def __init__(self, max_graphs: int = DEFAULT_GRAPHS) -> None:
        self.max_graphs = max_graphs
        self._graphs: OrderedDict[Hashable, CapturedCall] = OrderedDict()
        self.captures = 0
        self.capture_s = 0.0

    def __len__(self) -> int:
        return len(self._graphs)

    def call(self, key: Hashable, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` through the graph kept under ``key`` (with the arguments' shapes), capturing it on first use."""
        full_key = (key, shapes(args))
        graph = self._graphs.get(full_key)
        if graph is None:
            graph = CapturedCall(fn, args)
            self.captures += 1
            self.capture_s += graph.capture_s
            log.info("captured a CUDA graph in %.2f s: %s", graph.capture_s, key)
            self._graphs[full_key] = graph
            if len(self._graphs) > self.max_graphs:
                self._graphs.popitem(last=False)
            return graph.outputs
        self._graphs.move_to_end(full_key)
        return graph(*args)

    def clear(self) -> None:
        """Drop every graph (and, once unreferenced, its memory pool)."""
        self._graphs.clear()


def shapes(args: Any) -> tuple:
    """The structure-defining part of ``args``: each tensor's shape, dtype and device, in order."""
    flat, _ = pytree.tree_flatten(args)
    return tuple((tuple(x.shape), x.dtype, x.device) if isinstance(x, torch.Tensor) else x for x in flat)


def graphs_of(owner: object, max_graphs: int | None = None) -> GraphCache:
    """The graphs kept on ``owner`` (a backend), created on first use.

    Args:
        max_graphs: how many to keep from now on (None: as before, :data:`DEFAULT_GRAPHS` at first).
    """
    cache = owner.__dict__.get(_GRAPHS)
    if cache is None:
        cache = owner.__dict__[_GRAPHS] = GraphCache()
    if max_graphs is not None:
        cache.max_graphs = max_graphs
    return cache
