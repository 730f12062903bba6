"""Keep freed memory in the process on Linux with glibc, so that each training step on the CPU
reuses the previous step's buffers instead of faulting fresh pages in.

glibc serves a block above its mmap threshold (128 KiB, rising to at most 32 MiB) with a
fresh `mmap` and gives it back with `munmap` when freed, and it trims its heap whenever the
free top grows past 128 KiB. A CNN's step allocates and frees activations of tens to hundreds
of MiB, so by default every step hands them to the kernel and takes them back as new pages,
each one faulted in and zeroed (docs/benchmarks/cpu-tunings.md has what that costs).
Raising both thresholds keeps the memory in the heap, where the next step finds it. The
process then holds on to its peak working set, as PyTorch's CUDA caching allocator does on
a GPU.
"""

from __future__ import annotations

import ctypes
import platform

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's <malloc.h>
M_MMAP_THRESHOLD = -3
KEEP_BELOW = 1 << 30  # bytes: blocks up to 1 GiB come from the heap and stay there when freed


def keep_freed_memory() -> bool:
    """Tell the C library to keep freed blocks for reuse. True where it did (glibc); False
    where the C library is another (macOS, Windows, musl), which is left as it is. It applies
    to the whole process, from now on, and calling it again changes nothing."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL(None).mallopt  # the C library the process already runs on
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    # Both: with only the mmap threshold raised, the heap's freed top is still trimmed.
    return bool(mallopt(M_MMAP_THRESHOLD, KEEP_BELOW)) and bool(mallopt(M_TRIM_THRESHOLD,
                                                                         KEEP_BELOW))
