import platform
import subprocess
import sys

import pytest

from cnnlab.training import host_memory

# In a fresh process (the C library's settings are process-wide): page faults taken by ten
# 64 MiB allocate-fill-free cycles before and after the call under test.
FAULTS_AROUND = """
import resource, torch
from cnnlab.training.device import training_device
from cnnlab.training.host_memory import keep_freed_memory

def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        torch.empty(16 << 20).fill_(1.0)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

first = faults()
{call}
print(first, faults())
"""

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc",
                                reason="keeping freed memory is a glibc setting")


def faults_before_and_after(call: str) -> tuple[int, int]:
    out = subprocess.run([sys.executable, "-c", FAULTS_AROUND.format(call=call)], check=True,
                         capture_output=True, text=True).stdout.split()
    return int(out[0]), int(out[1])


@pytest.mark.slow
@glibc_only
@pytest.mark.parametrize("call", ["assert keep_freed_memory()", "training_device('cpu')"])
def test_freed_blocks_are_reused_not_faulted_in_again(call):
    before, after = faults_before_and_after(call)
    # 10 x 16,384 pages faulted in by default; once kept, only the first cycle's
    assert before > 100_000
    assert after * 5 < before


def test_other_c_libraries_are_left_alone(monkeypatch):
    monkeypatch.setattr(platform, "libc_ver", lambda: ("musl", ""))
    monkeypatch.setattr(host_memory.ctypes, "CDLL", lambda name: pytest.fail("mallopt called"))
    assert host_memory.keep_freed_memory() is False
