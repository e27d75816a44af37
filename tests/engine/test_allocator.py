"""Keeping freed memory: the same large tensor allocated again does not page-fault again (glibc only)."""
import subprocess
import sys
import textwrap

import pytest

FAULTS = textwrap.dedent("""
    import resource, sys, torch
    from pet.engine.allocator import keep_freed_memory
    if sys.argv[1] == "keep":
        assert keep_freed_memory()
    torch.ones(16 * 2 ** 20).sum()  # the first allocation faults in either case
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        torch.ones(16 * 2 ** 20).sum()  # 64 MB, freed at once: what a backward pass does with its buffers
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def page_faults(mode: str) -> int:
    result = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, check=True)
    return int(result.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_kept_memory_is_reused_without_page_faults():
    usual, kept = page_faults("usual"), page_faults("keep")
    assert usual > 10 * 16_000  # every 64 MB allocation maps 16,384 fresh pages
    assert kept < usual / 10
