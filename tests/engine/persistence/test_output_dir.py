"""The output folder: one run at a time, an earlier run's files moved aside (nothing deleted), temporary files of an
interrupted write removed."""
import os
import time

import pytest

from pet.config import ConfigError
from pet.engine.persistence.output_dir import FolderLock, archive_previous_run, claim_output_dir


def earlier_run(folder, started=1_700_000_000):
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("config.yaml", "metrics.json", "last_checkpoint", "model_final.pth"):
        (folder / name).write_text(name)
    os.utime(folder / "config.yaml", (started, started))


def test_a_new_run_moves_the_earlier_runs_files_into_a_folder_named_after_its_start(tmp_path):
    earlier_run(tmp_path)
    lock = claim_output_dir(str(tmp_path), resume=False)
    lock.release()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(1_700_000_000))
    assert sorted(os.listdir(tmp_path)) == [".lock", f"run-{stamp}"]
    assert (tmp_path / f"run-{stamp}" / "metrics.json").read_text() == "metrics.json"  # moved, not rewritten
    earlier_run(tmp_path)  # a second earlier run with the same start time gets its own folder
    assert archive_previous_run(str(tmp_path)).endswith(f"run-{stamp}-2")


def test_a_resumed_run_keeps_the_folder_as_it_is(tmp_path):
    earlier_run(tmp_path)
    claim_output_dir(str(tmp_path), resume=True).release()
    assert sorted(os.listdir(tmp_path)) == [".lock", "config.yaml", "last_checkpoint", "metrics.json",
                                            "model_final.pth"]


def test_a_second_run_into_a_claimed_folder_is_refused(tmp_path):
    first = claim_output_dir(str(tmp_path), resume=False)
    with pytest.raises(ConfigError, match=rf"^OUTPUT_DIR = '{tmp_path}' is in use by another run \(process "
                                          rf"{os.getpid()}\)"):
        FolderLock(str(tmp_path))
    first.release()
    FolderLock(str(tmp_path)).release()  # free again once the first run ends


def test_temporary_files_of_an_interrupted_write_are_removed(tmp_path):
    (tmp_path / ".model_0000100.pth.tmp-4242").write_bytes(b"x" * 100)
    (tmp_path / "notes.tmp-keep").write_text("not ours")
    claim_output_dir(str(tmp_path), resume=True).release()
    assert sorted(os.listdir(tmp_path)) == [".lock", "notes.tmp-keep"]


def test_the_lock_is_never_taken_through_a_symbolic_link(tmp_path):
    outside = tmp_path / "precious.txt"
    outside.write_text("precious")
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").symlink_to(outside)
    with pytest.raises(ConfigError, match=r"\.lock is a symbolic link \(to .*precious\.txt\); the run will not "
                                          r"write through it"):
        claim_output_dir(str(run), resume=False)
    assert outside.read_text() == "precious"
    (run / ".lock").unlink()
    (run / ".lock").mkdir()
    with pytest.raises(ConfigError, match=r"\.lock is a folder, not the run's lock file"):
        claim_output_dir(str(run), resume=False)


def test_only_a_runs_own_files_are_moved_aside(tmp_path):
    earlier_run(tmp_path)
    for name in ("events.out.tfevents.1700000000.host.1.0", "model_0000100.pth", "log.txt"):
        (tmp_path / name).write_text(name)
    (tmp_path / "model_0000200").mkdir()  # an FSDP checkpoint folder
    mine = {"notes.md": "my notes", "train.py": "print()", "model_notes.txt": "not a checkpoint"}
    for name, text in mine.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "data").mkdir()
    moved = archive_previous_run(str(tmp_path))
    assert sorted(os.listdir(moved)) == ["config.yaml", "events.out.tfevents.1700000000.host.1.0", "last_checkpoint",
                                         "log.txt", "metrics.json", "model_0000100.pth", "model_0000200",
                                         "model_final.pth"]
    assert sorted(os.listdir(tmp_path)) == sorted([*mine, "data", os.path.basename(moved)])
    assert all((tmp_path / name).read_text() == text for name, text in mine.items())
    assert archive_previous_run(str(tmp_path)) is None  # no run left: nothing to move, no empty folder
