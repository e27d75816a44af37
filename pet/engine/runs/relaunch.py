"""Jobs that heal themselves: `torchrun --max-restarts K tools/train_net.py --cfg FILE --resume`.

torchrun relaunches every process of the job when one of them dies, raises or hangs (the others then fail after
DISTRIBUTED.TIMEOUT_S), and `--resume` continues from the newest checkpoint, or starts fresh on a folder without
one, so the first launch and every relaunch are the same command. This module keeps the few facts a relaunch
needs in OUTPUT_DIR:

- `.heartbeat` (rank 0, after every update): the launch, the updates done and the time, so a relaunch knows where
  and when the launch before it stopped, even one killed by SIGKILL, and logs its recovery time (from the last
  update before the failure to the first update after it);
- `.launch.json` (rank 0, when training starts): which launch this is and the iteration it resumed from;
- `.failure-<launch>-<rank>.json` (each process that fails with an error): the iteration and the error.

From them, a relaunch stops with `CrashLoopError` (exit code 4, one line naming the iteration and the first error)
when the launch before it was itself a relaunch and either never got past the iteration it resumed from, or failed
at the same iteration with the same error as the launch before that: a fault that will come back, where burning
every restart on it would only delay the error.
"""
import glob
import json
import logging
import os
import time
from typing import Any, Dict, List, Optional

from pet.engine.distributed.process_group import all_gather_objects, get_rank, is_main_process, relaunch_attempt
from pet.engine.loop.hooks import HookBase
from pet.engine.persistence.safe_files import atomic_write, no_follow
from pet.errors import CrashLoopError

logger = logging.getLogger(__name__)

HEARTBEAT = ".heartbeat"
LAUNCH = ".launch.json"
FAILURE = ".failure-{launch}-{rank}.json"


def read_json(path: str) -> Optional[Dict[str, Any]]:
    """A small JSON record of this module, or None when it is missing or unreadable (a kill mid-write)."""
    try:
        with open(path, encoding="utf-8", opener=no_follow) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def last_heartbeat(output_dir: str) -> Optional[Dict[str, Any]]:
    """{"launch", "done": updates done, "time": when} of the newest update any launch finished, or None."""
    try:
        with open(os.path.join(output_dir, HEARTBEAT), encoding="ascii", opener=no_follow) as f:
            launch, done, when = f.read().split()
        return {"launch": int(launch), "done": int(done), "time": float(when)}
    except (OSError, ValueError):
        return None


def failures(output_dir: str, launch: int) -> List[Dict[str, Any]]:
    """The failure records of `launch`, earliest first."""
    found = [read_json(path) for path in glob.glob(os.path.join(output_dir, FAILURE.format(launch=launch, rank="*")))]
    return sorted((record for record in found if record), key=lambda record: record.get("time", 0.0))


def crash_loop(output_dir: str) -> Optional[str]:
    """Why relaunching again would repeat a failure (the error line), or None."""
    previous = read_json(os.path.join(output_dir, LAUNCH))
    if previous is None or not isinstance(previous.get("launch"), int) or previous["launch"] < 1:
        return None  # the first failure of a job is never a loop
    if previous.get("crash_loop"):
        return str(previous["crash_loop"])
    launch, resumed_from = previous["launch"], int(previous.get("resumed_from", 0))
    heartbeat = last_heartbeat(output_dir) or {"launch": -1, "done": 0}
    reached = heartbeat["done"] if heartbeat["launch"] == launch else resumed_from  # its own updates only
    failed = failures(output_dir, launch)
    first = failed[0] if failed else None
    error = first["error"] if first else "no error recorded (killed by a signal or out of memory?)"
    at = first["iteration"] if first else reached
    if reached <= resumed_from:
        return (f"crash loop: relaunch {launch} resumed at iteration {resumed_from} and failed again before passing "
                f"it (at iteration {at}); the first error: {error}")
    before = failures(output_dir, launch - 1)
    if first and before and (first["iteration"], first["error"]) == (before[0]["iteration"], before[0]["error"]):
        return (f"crash loop: launches {launch - 1} and {launch} both failed at iteration {at} with the same error: "
                f"{error}")
    return None


def check_relaunch(output_dir: str, resumed_from: int) -> None:
    """At the start of training: stop a crash loop (every process, with the same line), else record this launch
    (rank 0). Every process calls it; rank 0 decides, so that all of them stop or go on together."""
    launch = relaunch_attempt()
    verdict = all_gather_objects(crash_loop(output_dir) if launch and is_main_process() else None)[0]
    if is_main_process():
        if not launch:  # a new job: failures of an earlier job in this folder say nothing about this one
            for path in glob.glob(os.path.join(output_dir, FAILURE.format(launch="*", rank="*"))):
                os.remove(path)
        record = {"launch": launch, "resumed_from": resumed_from, "crash_loop": verdict}
        atomic_write(os.path.join(output_dir, LAUNCH), lambda f: f.write(json.dumps(record).encode()))
    if verdict is not None:
        raise CrashLoopError(f"{verdict}; fix the cause, then run the same command again")


def record_failure(output_dir: str, iteration: int, error: BaseException) -> None:
    """Keep why this process failed at `iteration`, for the next launch to judge (a failure to write it is not
    worth hiding the error for)."""
    record = {"iteration": iteration, "error": " ".join(f"{type(error).__name__}: {error}".split())[:300],
              "time": time.time(), "rank": get_rank()}
    path = os.path.join(output_dir, FAILURE.format(launch=relaunch_attempt(), rank=get_rank()))
    try:
        atomic_write(path, lambda f: f.write(json.dumps(record).encode()))
    except OSError:
        pass


class Heartbeat(HookBase):
    """Rank 0 notes the updates done and the time after every update in OUTPUT_DIR/.heartbeat (one small write in
    place), and a relaunch logs how long the job took to recover: from the last update before the failure to its
    own first update."""

    def __init__(self, output_dir: str) -> None:
        self.path = os.path.join(output_dir, HEARTBEAT)
        self.previous = last_heartbeat(output_dir) if relaunch_attempt() else None
        self._descriptor: Optional[int] = None

    def before_train(self) -> None:
        if os.path.islink(self.path):
            os.remove(self.path)  # never written through a link
        self._descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)

    def after_step(self) -> None:
        now, done = time.time(), self.trainer.iter + 1
        os.pwrite(self._descriptor, f"{relaunch_attempt():06d} {done:012d} {now:.6f}\n".encode("ascii"), 0)
        if self.previous is not None:  # iterations numbered from 0, as everywhere in the logs
            logger.info("Recovered from the failure of launch %d in %.1f s: from its last update (iteration %d) to "
                        "this launch's first (iteration %d)", self.previous["launch"], now - self.previous["time"],
                        self.previous["done"] - 1, self.trainer.iter)
            self.previous = None

    def after_train(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None
