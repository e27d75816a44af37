"""Checkpoints that survive crashes: atomic writes, `weights_only` reads, the last N kept.

A checkpoint holds the state of every registered object (model, optimizer, scheduler, grad scaler, trainer
counters), the iteration to resume at, the RNG states of torch, CUDA, Python and NumPy of every process, and
metadata of the run (its config text, its number of processes). It is written to a temporary file
in the same folder, flushed and fsync'ed, then renamed over its final name, and the folder is fsync'ed: a crash
at any moment leaves either the old file or the complete new one, never half of one. `last_checkpoint` names
the newest complete checkpoint and is replaced the same way. A sharded (FSDP) run writes checkpoint folders instead
(`sharded_checkpoint`), with the same names, marker and pruning.
"""
import contextlib
import glob
import io
import itertools
import logging
import math
import os
import random
import re
import shutil
from typing import Any, Callable, ContextManager, Dict, FrozenSet, Iterator, List, Optional

import numpy as np
import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor

from torch.distributed.checkpoint.state_dict import (get_model_state_dict, get_optimizer_state_dict,
                                                     set_model_state_dict, set_optimizer_state_dict)

from pet.config.rules import MAX_ITERATIONS
from pet.engine.distributed.process_group import all_gather_objects, all_reduce_sum, get_rank, get_world_size
from pet.engine.persistence.safe_files import atomic_write, safe_output_path, safe_torch_load
from pet.engine.persistence.background_writes import BackgroundWrites, snapshot
from pet.engine.persistence.sharded import (finish_folder, is_sharded_checkpoint, merge, prepare_folder, read_extra,
                                            read_metadata, read_section, read_tensors, split_tensors, start_folder,
                                            write_tensors)
from pet.errors import CheckpointError, NonFiniteWeightsError
from pet.models.speed import strip_compile_prefix
from pet.solver.optimizers.shards import local_shards
from pet.state_fields import require_fields

logger = logging.getLogger(__name__)

LAST_CHECKPOINT = "last_checkpoint"
FINAL_NAMES = ("model_final", "model_last_good")
_PERIODIC = re.compile(r"^model_(\d+)(\.pth)?$")


def capture_rng_state() -> Dict[str, Any]:
    """Every RNG state a training step can draw from, in types `torch.load(weights_only=True)` accepts."""
    numpy_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
        "numpy": [numpy_state[0], torch.from_numpy(numpy_state[1].copy()), *numpy_state[2:]],
    }


def gather_rng_states() -> List[Dict[str, Any]]:
    """Every process's `capture_rng_state()`, in rank order (sent as bytes: torch's object collectives do not
    carry these tensors)."""
    if get_world_size() == 1:
        return [capture_rng_state()]
    buffer = io.BytesIO()
    torch.save(capture_rng_state(), buffer)
    return [torch.load(io.BytesIO(data), weights_only=True) for data in all_gather_objects(buffer.getvalue())]


def check_rng_state(state: Any) -> None:
    """A `ValueError` unless `state` has the form `capture_rng_state` gives."""
    require_fields(state, {"torch": torch.Tensor, "cuda": list, "python": (tuple, list), "numpy": list}, "RNG")
    if state["torch"].dtype != torch.uint8 or state["torch"].shape != torch.get_rng_state().shape:
        raise ValueError("its torch state is not a generator state of this torch")
    numpy_state = state["numpy"]
    if not (len(numpy_state) == 5 and numpy_state[0] == "MT19937" and isinstance(numpy_state[1], torch.Tensor)
            and numpy_state[1].shape == (624,) and isinstance(numpy_state[2], int) and 0 <= numpy_state[2] <= 624
            and numpy_state[3] in (0, 1) and isinstance(numpy_state[4], float)):
        raise ValueError("its NumPy state is not (MT19937, 624 keys, position, gaussian flag, cached gaussian)")
    try:
        random.Random().setstate(tuple(state["python"]))
    except (TypeError, ValueError) as e:
        raise ValueError(f"its Python state does not restore: {e}") from None


def restore_rng_state(state: Dict[str, Any]) -> None:
    """Put back the RNG states of `capture_rng_state`."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    random.setstate(state["python"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy(), *rest))


def rng_state_of_this_process(states: Any, path: str) -> Optional[Dict[str, Any]]:
    """This process's RNG states from a checkpoint's `rng` (one entry per process); None for a process the
    checkpoint has no entry for (a run resumed with more processes): it keeps the seed it started with."""
    if not isinstance(states, list) or not all(isinstance(state, dict) for state in states):
        raise CheckpointError(f"checkpoint {path} holds RNG states that cannot be restored: not one per process")
    if get_rank() < len(states):
        return states[get_rank()]
    logger.warning("%s holds the RNG states of %d processes; process %d keeps its own seed", path, len(states),
                   get_rank())
    return None


def _group_layout(groups: Any) -> list:
    return [(g.get("name"), tuple(g.get("param_names", ())), len(g["params"])) for g in groups]


def check_optimizer_groups(optimizer: torch.optim.Optimizer, saved: Dict[str, Any]) -> None:
    """Refuse optimizer state saved for other param groups (a changed model or changed grouping rules), before
    anything is loaded: groups are compared by name and by the names of their parameters, in order, so state is
    never attached to another tensor. The error lists both sets of groups and the parameters that differ."""
    now, then = _group_layout(optimizer.param_groups), _group_layout(saved["param_groups"])
    if now != then:
        def describe(layout: list) -> str:
            return ", ".join(f"{name} ({count} tensors)" for name, _, count in layout)
        saved_names, own_names = ({p for _, names, _ in layout for p in names} for layout in (then, now))
        only_saved, only_own = sorted(saved_names - own_names)[:5], sorted(own_names - saved_names)[:5]
        differ = f"; parameters only in the checkpoint {only_saved}, only in this run {only_own}" \
            if only_saved or only_own else ""
        raise CheckpointError(f"it holds optimizer state for param groups [{describe(then)}] but the optimizer "
                              f"has [{describe(now)}]: the model or the SOLVER.OPTIMIZER grouping changed{differ}")


# What each torch object's state must hold before torch reads it (torch answers a missing field with a KeyError).
_OPTIMIZER_FIELDS = {"state": dict, "param_groups": list, "optimizer_class": str}
_SCALER_FIELDS = {"scale": (float, int), "growth_factor": (float, int), "backoff_factor": (float, int),
                  "growth_interval": int, "_growth_tracker": int}


class OptimizerState:
    """An optimizer as checkpoints see it: its state saved with its class name, and loaded only into an optimizer
    of the same class and param groups (checked before anything is loaded, so state never lands on another tensor);
    its groups keep the hyperparameters the config gave them (`configured_keys`; None: every hyperparameter), where
    torch's own loading brings back the saved ones. Only the state (moments, step counts) is taken."""

    def __init__(self, optimizer: torch.optim.Optimizer, configured_keys: Optional[FrozenSet[str]] = None) -> None:
        self.optimizer = optimizer
        self.configured_keys = configured_keys

    def state_dict(self) -> Dict[str, Any]:
        """torch's state dict, naming the class."""
        return dict(self.optimizer.state_dict(), optimizer_class=type(self.optimizer).__name__)

    def check(self, state: Any, by_name: bool = False) -> None:
        """A `ValueError` or `CheckpointError` when `state` is not of this class and these param groups, or holds
        state tensors of other shapes than the parameters' (`by_name`: the state of an FSDP folder, keyed by
        parameter name, whose tensors DCP reads into tensors of the right shapes or refuses)."""
        require_fields(state, _OPTIMIZER_FIELDS, "optimizer")
        if state["optimizer_class"] != type(self.optimizer).__name__:
            raise CheckpointError(f"it holds the state of a {state['optimizer_class']} optimizer, but this run's is "
                                  f"{type(self.optimizer).__name__}: SOLVER.OPTIMIZER.TYPE changed")
        check_optimizer_groups(self.optimizer, state)
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        if not isinstance(state["state"], dict):
            raise ValueError("the optimizer state's 'state' is not a dict")
        if by_name:
            return
        for index, entry in state["state"].items():
            if not (isinstance(index, int) and 0 <= index < len(params) and isinstance(entry, dict)):
                raise ValueError(f"the optimizer state holds {index!r}: {type(entry).__name__}, not a parameter's state")
            for name, value in entry.items():
                check_state_value(value, params[index], name, f"{name} of parameter {index}")

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Take the saved state, keep the configured hyperparameters."""
        self.check(state)
        with self.configured_hyperparameters():
            self.optimizer.load_state_dict({key: value for key, value in state.items() if key != "optimizer_class"})

    @contextlib.contextmanager
    def configured_hyperparameters(self) -> Iterator[None]:
        """Within the block the optimizer's state is loaded; afterwards its groups hold again the hyperparameters
        the config gave them."""
        keys = self.configured_keys
        configured = [{key: value for key, value in group.items() if key != "params" and (keys is None or key in keys)}
                      for group in self.optimizer.param_groups]
        yield
        for group, hyperparameters in zip(self.optimizer.param_groups, configured):
            group.update(hyperparameters)


# The per-element buffers torch's fused kernels read: a 0-dim tensor is no step count there.
ELEMENTWISE_STATE = frozenset({"momentum_buffer", "exp_avg", "exp_avg_sq", "max_exp_avg_sq", "sum"})


def check_state_value(value: Any, param: torch.Tensor, name: str, what: str) -> None:
    """A `ValueError` unless `value` can be state `name` of a parameter: a tensor of the parameter's shape, a 0-dim
    one or a number for a scalar state (step counts, NAdam's and ASGD's factors; a flag: timm's Muon's
    `use_muon`), the parameter's shape with its last or second-to-last size 1 for Adafactor's factored second
    moments. A tensor of another shape reaches kernels that index it by the parameter's shape: torch's fused SGD
    crashes the process on one."""
    scalar_allowed = name not in ELEMENTWISE_STATE
    if scalar_allowed and isinstance(value, (int, float)):
        return
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"the optimizer state's {what} is a {type(value).__name__}")
    if isinstance(param, DTensor) or (scalar_allowed and value.dim() == 0):
        return
    shape = tuple(param.shape)
    factored = {"row_var": shape[:-1] + (1,), "col_var": shape[:-2] + (1,) + shape[-1:]} if len(shape) >= 2 else {}
    if tuple(value.shape) not in (shape, factored.get(name)):
        raise ValueError(f"the optimizer state's {what} has the shape {tuple(value.shape)}, the parameter {shape}")


def save_tensors(data: Any, file: Any, checksums: bool = True) -> None:
    """`torch.save(data, file)`, with or without the CRC32 of each zip record (one writer at a time: the flag is
    torch's, for the whole process)."""
    torch.serialization.set_crc32_options(checksums)
    try:
        torch.save(data, file)
    finally:
        torch.serialization.set_crc32_options(True)


def state_of(obj: Any) -> Dict[str, Any]:
    """`obj.state_dict()`; a bare optimizer's through `OptimizerState`, naming its class."""
    return (OptimizerState(obj) if isinstance(obj, torch.optim.Optimizer) else obj).state_dict()


def load_state(obj: Any, state: Dict[str, Any]) -> None:
    """`obj.load_state_dict(state)`, a bare optimizer's through `OptimizerState`. A state that does not fit the
    object is a `ValueError` or a `CheckpointError`; anything else is a bug and is raised as it is."""
    if isinstance(obj, torch.nn.Module):
        try:
            obj.load_state_dict(state)
        except RuntimeError as e:  # torch's answer to missing, unexpected or reshaped tensors
            raise ValueError(" ".join(str(e).split())[:300]) from None
        return
    if isinstance(obj, torch.amp.GradScaler) and obj.is_enabled():
        require_fields(state, _SCALER_FIELDS, "grad scaler")
    (OptimizerState(obj) if isinstance(obj, torch.optim.Optimizer) else obj).load_state_dict(state)


def non_finite_weights(model: torch.nn.Module, sharded: bool = False) -> List[str]:
    """The names of the model's floating-point parameters and buffers that hold an inf or NaN (of this process's
    shards, with `sharded`: every process then learns whether any process found one, and gets a name or a
    placeholder)."""
    named = [(name, tensor.detach()) for name, tensor in itertools.chain(model.named_parameters(),
                                                                          model.named_buffers())
             if tensor.is_floating_point()]
    local, _ = local_shards([tensor for _, tensor in named])
    filled = [(name, tensor) for (name, _), tensor in zip(named, local) if tensor.numel()]
    bad: List[str] = []
    if filled:
        largest = torch.stack(torch._foreach_norm([tensor for _, tensor in filled], math.inf))
        bad = [filled[i][0] for i in torch.nonzero(~torch.isfinite(largest)).flatten().tolist()]
    if sharded and get_world_size() > 1:
        if all_reduce_sum(torch.tensor([float(len(bad))])).item() and not bad:
            bad = ["(a shard of another process)"]
    return bad


class StateDictGroup:
    """Several named objects (the optimizers or schedulers of a run) saved and loaded as one state dict."""

    def __init__(self, members: Dict[str, Any]) -> None:
        self.members = {name: OptimizerState(member) if isinstance(member, torch.optim.Optimizer) else member
                        for name, member in members.items()}

    def state_dict(self) -> Dict[str, Any]:
        return {name: state_of(member) for name, member in self.members.items()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if sorted(state) != sorted(self.members):
            raise CheckpointError(f"it holds state for {sorted(state)}, but this run has {sorted(self.members)}")
        for name, member in self.members.items():
            load_state(member, state[name])


class Checkpointer:
    """Saves and loads the state of named objects in `save_dir`.

    Args:
        save_dir: the run's output folder.
        keep: periodic checkpoints (`model_<iter>.pth`) kept on disk; older ones are deleted.
        enabled: whether this process writes (only rank 0 does).
        background: write checkpoints from a copy taken between updates, in a thread of their own (checkpoints
            saved with `wait` excepted: the final one, the last good one, one a stop signal asks for).
        objects: name -> object with `state_dict()` / `load_state_dict()`.
    """

    def __init__(self, save_dir: str, keep: int = 3, enabled: bool = True, metadata: Optional[Dict[str, Any]] = None,
                 save_context: Callable[[], ContextManager] = contextlib.nullcontext, sharded: bool = False,
                 background: bool = False, **objects: Any) -> None:
        self.save_dir = save_dir
        self.keep = keep
        self.enabled = enabled
        # Checkpoint folders written by every process (an FSDP run: `objects` has `model` and `optimizers`).
        self.sharded = sharded
        self.suffix = "" if sharded else ".pth"
        self.metadata = dict(metadata or {})
        self.save_context = save_context  # what the state is captured within (schedule-free optimizers' eval mode)
        self.objects = objects
        self.loaded_path: Optional[str] = None  # the checkpoint the run resumed from
        self.background = background
        self.writes = BackgroundWrites()
        # FSDP folders written in the background coordinate over a process group of their own (every process
        # builds the checkpointer at the same point, so every process joins it).
        self._group = dist.new_group(backend="gloo") if sharded and background else None

    def save(self, name: str, iteration: int, mark: bool = True, extra: Optional[Dict[str, Any]] = None,
             wait: bool = False) -> Optional[str]:
        """Write checkpoint `name` holding every object, the iteration, the metadata (and `extra`) and the RNG states
        of every process, then (with `mark`) name it in `last_checkpoint`; return its path (None on a process that
        does not write). Every process calls it: the RNG states are gathered, and an FSDP folder is written by
        all. With `background` (and not `wait`) the state is copied now and written while training goes on."""
        background = self.background and not wait
        if not background:
            self.writes.wait()  # a write in flight lands first, in its order
        metadata = dict(self.metadata, **(extra or {}), iteration=iteration, rng=gather_rng_states())
        # Every process enters the context (it may run collectives: SyncBatchNorm statistics); the state dicts
        # hold the model's own tensors, so they are written (or copied) before it is left.
        with self.save_context():
            self._check_finite(name, iteration)
            if self.sharded:
                return self._save_folder(name, metadata, mark, background)
            return self._save_file(name, metadata, mark, background)

    def wait(self) -> None:
        """Return once no checkpoint is being written in the background (raising the error of one that failed)."""
        self.writes.wait()

    def _check_finite(self, name: str, iteration: int) -> None:
        """A `NonFiniteWeightsError` before anything is written when the model's weights hold inf or NaN: a run never
        ends with a non-finite model and exit code 0, and the previous checkpoint stays the newest. Every process
        checks (under DDP their weights are the same, under FSDP they agree), so all of them stop together."""
        model = self.objects.get("model")
        bad = non_finite_weights(model, self.sharded) if isinstance(model, torch.nn.Module) else []
        if bad:
            kept = self.latest()
            raise NonFiniteWeightsError(
                f"the model's weights hold inf or NaN at iteration {iteration} ({', '.join(bad[:3])}"
                f"{', ...' if len(bad) > 3 else ''}), so {name} was not saved; "
                + (f"the newest good checkpoint is {kept}" if kept else "no checkpoint was written")
                + ": check the optimizer's settings (SOLVER.OPTIMIZER, KWARGS) and the lr")

    def _sharded_states(self) -> Dict[str, Any]:
        """Every object's state, the model's and optimizers' keyed by parameter name and holding this process's
        shards (`torch.distributed.checkpoint.state_dict`)."""
        model, optimizers = self.objects["model"], self.objects["optimizers"].members
        states = {key: state_of(obj) for key, obj in self.objects.items() if key not in ("model", "optimizers")}
        states["model"] = get_model_state_dict(model)
        states["optimizers"] = {name: dict(get_optimizer_state_dict(model, member.optimizer),
                                           optimizer_class=type(member.optimizer).__name__)
                                for name, member in optimizers.items()}
        return states

    def _save_folder(self, name: str, metadata: Dict[str, Any], mark: bool, background: bool) -> Optional[str]:
        """Every process writes its shards of folder `name` (DCP); rank 0 adds the rest and the marker."""
        path = os.path.join(self.save_dir, name)
        temporary = os.path.join(self.save_dir, f".{name}.tmp-{metadata['iteration']}")
        tensors, rest = split_tensors(dict(self._sharded_states(), **metadata))
        try:
            prepare_folder(temporary)
            if background:
                self.writes.wait()
                written = start_folder(tensors, temporary, self._group)
                self.writes.submit(lambda: (written.result(), self._finish_folder(path, temporary, rest, name, mark)))
            else:
                write_tensors(tensors, temporary)
                self._finish_folder(path, temporary, rest, name, mark)
                dist.barrier()
        except OSError as e:
            raise CheckpointError(f"cannot write checkpoint {path}: {e.strerror or e}; the previous checkpoint is "
                                  "intact") from None
        return path if self.enabled else None

    def _finish_folder(self, path: str, temporary: str, rest: Dict[str, Any], name: str, mark: bool) -> None:
        finish_folder(path, temporary, rest)
        if self.enabled:
            if mark:
                self._mark(name)
            self._saved(path, rest["iteration"])

    def _save_file(self, name: str, metadata: Dict[str, Any], mark: bool, background: bool) -> Optional[str]:
        """Rank 0 writes `<name>.pth`, atomically, then the marker."""
        if not self.enabled:
            return None
        path = os.path.join(self.save_dir, f"{name}.pth")
        data = dict({key: state_of(obj) for key, obj in self.objects.items()}, **metadata)
        if background:
            copied = snapshot(data)  # the next update changes the live tensors in place
            # Without the zip's CRC32s: computing them is most of the CPU time a write takes (4x the rest on 2
            # cores), time taken from training while it runs beside it; the rename keeps the file whole.
            self.writes.submit(lambda: self._write_file(path, name, copied, mark, checksums=False))
        else:
            self._write_file(path, name, data, mark)
        return path

    def _write_file(self, path: str, name: str, data: Dict[str, Any], mark: bool, checksums: bool = True) -> None:
        try:
            atomic_write(path, lambda f: save_tensors(data, f, checksums))
            if mark:
                self._mark(f"{name}.pth")
        except OSError as e:
            kept = self.latest()
            raise CheckpointError(f"cannot write checkpoint {path}: {e.strerror or e}; "
                                  + (f"the previous checkpoint {kept} is intact" if kept else "no checkpoint is kept")
                                  ) from None
        self._saved(path, data["iteration"])

    def _saved(self, path: str, iteration: int) -> None:
        logger.info("Saved checkpoint %s (after iteration %d)", path, iteration - 1)
        self._prune()

    def _mark(self, name: str) -> None:
        """Name `name` in `last_checkpoint`, atomically."""
        atomic_write(os.path.join(self.save_dir, LAST_CHECKPOINT), lambda f: f.write(f"{name}\n".encode()))

    def _prune(self) -> None:
        for old in self.periodic()[self.keep:]:
            shutil.rmtree(old) if os.path.isdir(old) else os.remove(old)

    def periodic(self) -> List[str]:
        """This run's periodic checkpoints (files `model_<iteration>.pth`, or FSDP folders `model_<iteration>`),
        newest first: by iteration, not by name. Links and entries of the other kind are not the run's."""
        found = []
        for path in glob.glob(os.path.join(self.save_dir, "model_*")):
            match = _PERIODIC.search(os.path.basename(path))
            if match and match.group(2) == (self.suffix or None) and not os.path.islink(path) \
                    and os.path.isdir(path) == self.sharded:
                found.append((int(match.group(1)), path))
        return [path for _, path in sorted(found, reverse=True)]

    def marked(self) -> Optional[str]:
        """The path `last_checkpoint` names (whether or not that file still exists), or None without a marker."""
        marker = safe_output_path(self.save_dir, LAST_CHECKPOINT)
        if not os.path.lexists(marker):
            return None
        with open(marker, "rb") as f:
            name = f.read(4096).decode("utf-8", errors="replace").strip()
        if os.path.basename(name) != name or name in ("", ".", "..") or "\0" in name:
            raise CheckpointError(f"{marker} names {name[:100]!r}, which is not a file in {self.save_dir}")
        return safe_output_path(self.save_dir, name, folder_too=True)

    def latest(self) -> Optional[str]:
        """The checkpoint `last_checkpoint` names, when it exists; else None."""
        path = self.marked()
        return path if path is not None and os.path.exists(path) else None

    def candidates(self) -> List[str]:
        """Every checkpoint of `save_dir` a resume may start from, newest first: the one `last_checkpoint`
        names, then the final and last-good ones, then the periodic ones by iteration."""
        named = [self.marked(), *(os.path.join(self.save_dir, f"{name}{self.suffix}") for name in FINAL_NAMES),
                 *self.periodic()]
        ordered = list(dict.fromkeys(path for path in named if path is not None))
        return [path for path in ordered if os.path.exists(path) or path == named[0]]

    def load_newest(self) -> Optional[Dict[str, Any]]:
        """Load the newest checkpoint that reads completely (`candidates`), falling back with a warning past one
        that is missing or broken; None when the folder holds none. A folder whose checkpoints all fail is a
        `CheckpointError`: a resume never starts over silently."""
        candidates = self.candidates()
        for path in candidates:
            try:
                if os.path.islink(path):
                    raise CheckpointError("it is a symbolic link, which a resume does not follow")
                data = read_checkpoint(path)
            except CheckpointError as e:
                logger.warning("Cannot resume from %s (%s); trying an older checkpoint", path, e)
                continue
            return self.restore(data, path)
        if candidates:
            raise CheckpointError(f"no checkpoint in {self.save_dir} can be loaded (tried {', '.join(candidates)}); "
                                  "remove the folder's last_checkpoint to start over")
        return None

    def load(self, path: str, restore_rng: bool = True) -> Dict[str, Any]:
        """Load `path` into every registered object and return the whole checkpoint."""
        return self.restore(read_checkpoint(path), path, restore_rng)

    def restore(self, data: Dict[str, Any], path: str, restore_rng: bool = True) -> Dict[str, Any]:
        """Load a checkpoint's contents (read from `path`) into every registered object."""
        check_contents(data, path, self.objects)
        if is_sharded_checkpoint(path) != self.sharded:
            kind = "a file of a DDP run" if self.sharded else "a folder of an FSDP run"
            raise CheckpointError(f"checkpoint {path} is {kind}, and this run's DISTRIBUTED.STRATEGY is "
                                  f"{'FSDP' if self.sharded else 'DDP'}: resume with the strategy that wrote it")
        if self.sharded:
            data = self._load_sharded(data, path)
        for key, obj in self.objects.items():
            if self.sharded and key in ("model", "optimizers"):
                continue
            self.load_into(key, obj, data, path)
        state = rng_state_of_this_process(data["rng"], path) if restore_rng else None
        if state is not None:
            try:
                check_rng_state(state)
            except ValueError as e:
                raise CheckpointError(f"checkpoint {path} holds RNG states that cannot be restored: {e}") from None
            restore_rng_state(state)
        logger.info("Loaded checkpoint %s (after iteration %d)", path, data["iteration"] - 1)
        self.loaded_path = path
        return data

    @staticmethod
    def load_into(key: str, obj: Any, data: Dict[str, Any], path: str) -> None:
        """Load `data[key]` (of the checkpoint at `path`) into `obj`; a state that does not fit is a
        `CheckpointError` naming the checkpoint and the key."""
        if key not in data:
            raise CheckpointError(f"checkpoint {path} has no state for {key!r}")
        try:
            load_state(obj, data[key])
        except (CheckpointError, ValueError) as e:
            raise CheckpointError(f"checkpoint {path} does not fit this run ({key}): "
                                  f"{' '.join(str(e).split())}") from None

    def _load_sharded(self, data: Dict[str, Any], path: str) -> Dict[str, Any]:
        """Load the model and optimizers from checkpoint folder `path` (at any number of processes), matching
        optimizer state by parameter name; return the checkpoint with its tensors."""
        model, optimizers = self.objects["model"], self.objects["optimizers"].members
        saved = data.get("optimizers")
        try:
            require_fields(saved, {name: dict for name in optimizers}, "optimizers")
            for name, member in optimizers.items():
                member.check(saved[name], by_name=True)
        except (CheckpointError, ValueError) as e:
            raise CheckpointError(f"checkpoint {path} does not fit this run (optimizers): {e}") from None
        tensors, _ = split_tensors(self._sharded_states())
        data = merge(read_tensors(path, tensors), data)
        set_model_state_dict(model, data["model"])
        for name, member in optimizers.items():
            with member.configured_hyperparameters():
                set_optimizer_state_dict(model, member.optimizer, {key: data["optimizers"][name][key]
                                                                   for key in ("state", "param_groups")})
        return data


def check_contents(data: Any, path: str, objects: Dict[str, Any]) -> None:
    """A `CheckpointError` naming what a checkpoint lacks: a dict with every object's state, an integer
    iteration and the RNG states."""
    if not isinstance(data, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(data).__name__}, not a checkpoint of this project")
    missing = [key for key in [*objects, "iteration", "rng"] if key not in data]
    if missing:
        raise CheckpointError(f"checkpoint {path} has no state for {missing}")
    iteration = data["iteration"]
    if not isinstance(iteration, int) or isinstance(iteration, bool) or not 0 <= iteration <= MAX_ITERATIONS:
        raise CheckpointError(f"checkpoint {path} holds the iteration {iteration!r}, not an integer in [0, 1e9]")


def read_checkpoint(path: str) -> Dict[str, Any]:
    """`torch.load(path, weights_only=True)`: tensors and plain containers only, never code. Of a checkpoint
    folder, the part that is not sharded tensors, once its metadata and data files are checked (a folder a crash cut
    short fails here, where a resume passes over it)."""
    if is_sharded_checkpoint(path):
        data = read_extra(path)
        read_metadata(path)
        return data
    return safe_torch_load(path)


def checkpoint_weights(path: str, ema: bool = False, project_only: bool = False) -> Dict[str, torch.Tensor]:
    """The model state (with `ema`: the weight average) of a checkpoint file or folder of this project, or a plain
    state dict as it is; with `project_only`, anything but a checkpoint of this project is a `CheckpointError`, and
    so is, always, a file whose weights are not tensors by name."""
    if is_sharded_checkpoint(path):
        read_checkpoint(path)  # its extra.pth and metadata, checked before any tensor is read
        state = read_section(path, "ema.average" if ema else "model")
    else:
        data = read_checkpoint(path)
        ours = isinstance(data, dict) and "model" in data
        if project_only and not ours:
            raise CheckpointError(f"{path} is not a checkpoint of this project (it has no model state)")
        if ema:
            state = data["ema"]["average"] if ours and isinstance(data.get("ema"), dict) else {}
        else:
            state = data["model"] if ours else data
    if ema and not state:
        raise CheckpointError(f"{path} holds no weight average (the run had SOLVER.EMA.ENABLED False)")
    if not isinstance(state, dict) or not state or not all(
            isinstance(name, str) and isinstance(tensor, torch.Tensor) for name, tensor in state.items()):
        raise CheckpointError(f"{path} holds no model weights (a {type(state).__name__}, not tensors by name)")
    return strip_compile_prefix(state)


def read_checkpoint_metadata(path: str) -> Dict[str, Any]:
    """A checkpoint's contents for its metadata (classes, best score, config) without reading its tensors: a
    `.pth` file memory-mapped (tensors are read only when touched), a folder's `extra.pth`."""
    data = read_extra(path) if is_sharded_checkpoint(path) else safe_torch_load(path, mmap=True)
    return data if isinstance(data, dict) else {}


def checkpoint_classes(path: str) -> Optional[List[str]]:
    """The class (or detection category) names a checkpoint of this project was trained on; None when it names
    none (a plain state dict, an older checkpoint) or cannot be read (its weights were read already: no reason to
    stop)."""
    try:
        classes = read_checkpoint_metadata(path).get("classes")
    except CheckpointError:
        return None
    return [str(name) for name in classes] if isinstance(classes, (list, tuple)) else None
