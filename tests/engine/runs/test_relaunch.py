"""The crash-loop verdict of a relaunch, from the records the launches before it left in OUTPUT_DIR."""
import json

import pytest

from pet.engine.runs import relaunch
from pet.errors import CrashLoopError


def launch(folder, number, resumed_from, crash_loop=None):
    (folder / ".launch.json").write_text(json.dumps({"launch": number, "resumed_from": resumed_from,
                                                     "crash_loop": crash_loop}))


def heartbeat(folder, number, done, when=100.0):
    (folder / ".heartbeat").write_text(f"{number:06d} {done:012d} {when:.6f}\n")


def failure(folder, number, rank, iteration, error, when):
    (folder / f".failure-{number}-{rank}.json").write_text(json.dumps({"iteration": iteration, "error": error,
                                                                       "time": when, "rank": rank}))


def test_a_first_failure_is_never_a_loop(tmp_path):
    launch(tmp_path, 0, 0)
    heartbeat(tmp_path, 0, 3)
    failure(tmp_path, 0, 1, 3, "RuntimeError: boom", 5.0)
    assert relaunch.crash_loop(str(tmp_path)) is None


def test_a_relaunch_without_an_update_past_its_resume_point_is_a_loop(tmp_path):
    launch(tmp_path, 1, 10)
    heartbeat(tmp_path, 0, 14)  # the heartbeat is launch 0's: launch 1 never finished an update
    failure(tmp_path, 1, 1, 10, "OSError: disk gone", 7.0)
    failure(tmp_path, 1, 0, 10, "DistributedError: peer died", 8.0)
    assert relaunch.crash_loop(str(tmp_path)) == ("crash loop: relaunch 1 resumed at iteration 10 and failed again "
                                                  "before passing it (at iteration 10); the first error: OSError: "
                                                  "disk gone")


def test_a_relaunch_that_made_progress_is_relaunched_again(tmp_path):
    launch(tmp_path, 1, 10)
    heartbeat(tmp_path, 1, 12)  # two updates past its resume point, then a transient fault elsewhere
    failure(tmp_path, 0, 0, 14, "RuntimeError: a", 1.0)
    failure(tmp_path, 1, 0, 12, "RuntimeError: b", 2.0)
    assert relaunch.crash_loop(str(tmp_path)) is None


def test_the_same_error_at_the_same_iteration_twice_is_a_loop(tmp_path):
    launch(tmp_path, 1, 10)
    heartbeat(tmp_path, 1, 14)
    failure(tmp_path, 0, 1, 14, "ValueError: bad batch", 1.0)
    failure(tmp_path, 1, 1, 14, "ValueError: bad batch", 2.0)
    assert relaunch.crash_loop(str(tmp_path)) == ("crash loop: launches 0 and 1 both failed at iteration 14 with the "
                                                  "same error: ValueError: bad batch")


def test_a_declared_loop_stops_every_later_relaunch_at_once(tmp_path, monkeypatch):
    launch(tmp_path, 2, 10, crash_loop="crash loop: it happened")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "3")
    with pytest.raises(CrashLoopError, match=r"^crash loop: it happened; fix the cause, then run the same command"):
        relaunch.check_relaunch(str(tmp_path), 10)
    assert json.loads((tmp_path / ".launch.json").read_text())["launch"] == 3


def test_a_new_job_forgets_the_failures_of_an_earlier_one(tmp_path, monkeypatch):
    failure(tmp_path, 0, 1, 14, "RuntimeError: old", 1.0)
    failure(tmp_path, 1, 1, 14, "RuntimeError: old", 2.0)
    monkeypatch.delenv("TORCHELASTIC_RESTART_COUNT", raising=False)
    relaunch.check_relaunch(str(tmp_path), 0)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".launch.json"]


def test_broken_records_are_no_verdict(tmp_path):
    (tmp_path / ".launch.json").write_text("{\"launch\": 1, \"resum")  # a kill mid-write
    (tmp_path / ".heartbeat").write_text("garbage")
    assert relaunch.crash_loop(str(tmp_path)) is None
