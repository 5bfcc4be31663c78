"""keep_freed_memory: a freed large tensor's pages are reused instead of faulted in anew.

malloc settings are process-wide, so each case runs in its own interpreter.
"""

import platform
import subprocess
import sys

import pytest

PAGE_FAULTS_OF_A_SECOND_ALLOCATION = """
import resource, sys, torch
from seq2seq.allocator import keep_freed_memory
changed = keep_freed_memory({enabled})
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
block = torch.ones(17 * 1024 * 1024)  # 68 MiB, over glibc's largest mmap threshold
del block
before = faults()
block = torch.ones(16 * 1024 * 1024)  # 64 MiB: fits the freed block (with its alignment slack)
print(changed, faults() - before)
"""


def second_allocation(enabled: bool) -> tuple[bool, int]:
    script = PAGE_FAULTS_OF_A_SECOND_ALLOCATION.format(enabled=enabled)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    changed, faults = result.stdout.split()
    return changed == "True", int(faults)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_freed_memory_is_reused_without_page_faults() -> None:
    changed, kept_faults = second_allocation(True)
    restored, default_faults = second_allocation(False)
    assert changed and restored
    pages = 64 * 1024 * 1024 // 4096
    assert default_faults >= pages // 2  # mapped anew: a fault per page (or per huge page run)
    assert kept_faults < pages // 20


def test_opting_out_leaves_malloc_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    from seq2seq import allocator

    monkeypatch.setenv("SEQ2SEQ_KEEP_FREED_MEMORY", "0")
    monkeypatch.setattr(allocator, "_glibc", lambda: pytest.fail("malloc was touched"))
    assert allocator.keep_freed_memory() is False


@pytest.mark.parametrize("entry", ["seq2seq", "train.py"])
def test_entry_points_keep_freed_memory(
    entry: str, tmp_path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from seq2seq import cli, lightning_cli

    calls = []
    module, argv = (
        (cli, ["score", "--hypotheses", str(tmp_path / "missing"), "--reference", "x"])
        if entry == "seq2seq"
        else (lightning_cli, ["fit", "--config", str(tmp_path / "missing.yaml")])
    )
    monkeypatch.setattr(module, "keep_freed_memory", lambda: calls.append(True))
    with pytest.raises(SystemExit):  # the missing file is refused after malloc is set
        module.main(argv)
    assert calls == [True]
