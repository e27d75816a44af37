"""Keeping freed memory: the same large tensor allocated again does not page-fault again (glibc only)."""
import subprocess
import sys
import textwrap

import pytest

# Transparent huge pages fault 2 MB at a time, when the kernel has them to spare (less so on a loaded machine):
# they are turned off for the measuring process, so that every 4 KB page counts and the counts do not depend on load.
FAULTS = textwrap.dedent("""
    import ctypes, resource, sys, torch
    from pet.engine.runs.allocator import keep_freed_memory
    PR_SET_THP_DISABLE = 41
    ctypes.CDLL(None).prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0)
    if sys.argv[1] == "keep":
        assert keep_freed_memory()
    for _ in range(2):
        torch.ones(16 * 2 ** 20).sum()  # the first allocations fault in either case
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        torch.ones(16 * 2 ** 20).sum()  # 64 MB, freed at once: what a backward pass does with its buffers
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def page_faults(mode: str) -> int:
    result = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, check=True)
    return int(result.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_kept_memory_is_reused_without_page_faults():
    usual, kept = page_faults("usual"), page_faults("keep")
    assert usual > 16 * 16_384  # nearly every one of the 20 allocations of 64 MB maps 16,384 fresh pages
    assert kept < 2 * 16_384  # kept memory: at most one of them (where the heap settles)
