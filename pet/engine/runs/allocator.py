"""CPU memory between updates: keep what a training step frees for the next one (glibc's malloc settings).

Each update frees its gradients (`zero_grad(set_to_none=True)`) and its scratch buffers (oneDNN's convolution
backward takes tens of MB per layer), and the next one allocates them again. glibc hands blocks above its mmap
threshold back to the OS at once and trims the heap when its top is free, so every update page-faults the same
memory back in: about a fifth of a ResNet-18 update on CPU (docs/benchmarks.md). `keep_freed_memory` turns both
off for the process (`mallopt`), so the memory is reused; the price is that the process's resident memory does
not shrink while it runs.
"""
import ctypes
import ctypes.util
import logging

logger = logging.getLogger(__name__)

# glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
TRIM_THRESHOLD_BYTES = 1 << 30


def keep_freed_memory() -> bool:
    """Have glibc keep freed memory in the process (no mmap'ed blocks, no heap trimming below 1 GiB); return
    whether it took (False on a C library without `mallopt`, e.g. macOS or musl)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
