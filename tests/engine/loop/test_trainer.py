"""The loop: accumulation equals the large batch, bf16/fp16 autocast, skipped updates, hook order."""
import copy
import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from pet.config import get_cfg
from pet.data import ResumableBatchSampler
from pet.engine import HookBase, Trainer, classification_losses
from pet.engine.evaluation.tasks import model_losses
from pet.engine.loop.hooks import GradNormHook
from pet.solver import GradientGuard, Optimizer
from pet.solver.units import SolverUnit


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 3))


def dataset(size=96, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(size, 12, generator=generator), torch.randint(0, 3, (size,), generator=generator))


def make_trainer(model, batch_size=8, accumulation=1, amp_dtype=None, scaler=None, opt_type="SGD", start_iter=0):
    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.OPTIMIZER.TYPE", opt_type, "SOLVER.OPTIMIZER.BASE_LR", 0.1])
    data = DataLoader(dataset(), batch_sampler=ResumableBatchSampler(96, batch_size, accumulation, seed=5,
                                                                     start_iter=start_iter))
    unit = SolverUnit.of(Optimizer(model, cfg.SOLVER.OPTIMIZER).build_guarded())
    return Trainer(model, classification_losses, data, [unit], torch.device("cpu"), accumulation=accumulation,
                   amp_dtype=amp_dtype, grad_scaler=scaler)


@pytest.mark.parametrize("opt_type", ["SGD", "ADAMW"])
def test_accumulation_makes_the_same_updates_as_the_large_batch(opt_type):
    large, accumulated = mlp(), mlp()
    make_trainer(large, batch_size=32, opt_type=opt_type).train(0, 9)  # 9 updates: 3 epochs of 3
    make_trainer(accumulated, batch_size=8, accumulation=4, opt_type=opt_type).train(0, 9)
    for p, q in zip(large.parameters(), accumulated.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    assert not torch.equal(large[1].weight, mlp()[1].weight)


def test_accumulation_counts_updates_not_micro_batches():
    trainer = make_trainer(mlp(), batch_size=8, accumulation=4)
    trainer.train(0, 5)
    assert trainer.units[0].optimizer.state_dict()["state"][0]["momentum_buffer"] is not None
    assert trainer.iter == 4  # 5 updates over 20 micro-batches


def test_bf16_autocast_on_cpu():
    model = mlp()
    seen = []
    model[1].register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    before = copy.deepcopy(model)
    trainer = make_trainer(model, amp_dtype=torch.bfloat16)
    trainer.train(0, 3)
    assert seen == [torch.bfloat16] * 3
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay fp32
    assert all(not torch.equal(p, q) for p, q in zip(model.parameters(), before.parameters()))
    assert math.isfinite(trainer.storage.latest()["loss"][0])


class FailsAt(nn.Module):
    """Wraps a model; at the given calls its loss becomes NaN, or its gradients inf."""

    def __init__(self, model, nan_loss_at=(), inf_grad_at=()):
        super().__init__()
        self.model, self.nan_loss_at, self.inf_grad_at, self.calls = model, nan_loss_at, inf_grad_at, 0

    def forward(self, x):
        self.calls += 1
        out = self.model(x)
        if self.calls in self.nan_loss_at:
            out = out * float("nan")
        if self.calls in self.inf_grad_at:
            out = out + InfGradient.apply(out) * 0
        return out


class InfGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return torch.full_like(grad, float("inf"))


class ParamsAfterEachStep(HookBase):
    def __init__(self):
        self.snapshots = []

    def after_step(self):
        self.snapshots.append([p.detach().clone() for p in self.trainer.model.parameters()])


def test_a_nan_loss_skips_the_update_and_is_counted():
    model = FailsAt(mlp(), nan_loss_at=(3,))
    trainer = make_trainer(model)
    snapshots = ParamsAfterEachStep()
    trainer.register_hooks([snapshots])
    trainer.train(0, 5)
    assert trainer.skipped_updates == 1
    assert trainer.storage.latest()["skipped_updates"][0] == 1
    for p, q in zip(snapshots.snapshots[1], snapshots.snapshots[2]):
        assert torch.equal(p, q)  # update 3 (index 2) changed nothing
    assert not torch.equal(snapshots.snapshots[3][0], snapshots.snapshots[2][0])  # training went on
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert all(torch.isfinite(v).all() for s in trainer.units[0].optimizer.state.values() for v in s.values())


@pytest.mark.parametrize("opt_type", ["SGD", "RMSPROP"])  # fused (the kernels skip) and foreach (the host does)
def test_an_fp16_update_with_inf_gradients_is_skipped_by_the_scaler_and_counted(opt_type):
    model = FailsAt(mlp(), inf_grad_at=(2,))
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 8)
    trainer = make_trainer(model, amp_dtype=torch.float16, scaler=scaler, opt_type=opt_type)
    assert trainer.units[0].optimizer.param_groups[0].get("fused") is (True if opt_type == "SGD" else None)
    snapshots = ParamsAfterEachStep()
    trainer.register_hooks([snapshots])
    trainer.train(0, 4)
    assert trainer.skipped_updates == 1
    assert scaler.get_scale() == 2.0 ** 7  # backed off once
    for p, q in zip(snapshots.snapshots[0], snapshots.snapshots[1]):
        assert torch.equal(p, q)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_fp16_gradients_are_unscaled_before_clipping():
    model = mlp()
    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.OPTIMIZER.BASE_LR", 0.1, "SOLVER.OPTIMIZER.CLIP_GRADIENTS.ENABLED", True,
                         "SOLVER.OPTIMIZER.CLIP_GRADIENTS.CLIP_VALUE", 1e-3, "SOLVER.OPTIMIZER.MOMENTUM", 0.0,
                         "SOLVER.OPTIMIZER.WEIGHT_DECAY", 0.0])
    optimizer = Optimizer(model, cfg.SOLVER.OPTIMIZER).build()
    measured = []  # the gradients the update used (fused kernels write the clipped ones back)
    optimizer.register_step_post_hook(lambda opt, args, kwargs: measured.append(
        torch.nn.utils.get_total_norm([p.grad for p in model.parameters()]).item()))
    data = DataLoader(dataset(), batch_sampler=ResumableBatchSampler(96, 8, seed=5))
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 16)
    before = [p.detach().clone() for p in model.parameters()]
    Trainer(model, classification_losses, data, optimizer, torch.device("cpu"), amp_dtype=torch.float16,
            grad_scaler=scaler).train(0, 1)
    # Clipping saw unscaled gradients: the update used a global norm of the clip value (not 65536x it).
    assert measured == [pytest.approx(1e-3, rel=1e-3)]
    moved = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p - q)
                                                  for p, q in zip(model.parameters(), before)]))
    assert moved.item() == pytest.approx(0.1 * 1e-3, rel=1e-2)  # lr x clipped norm


class Recorder(HookBase):
    def __init__(self, log):
        self.log = log

    def before_train(self):
        self.log.append("before_train")

    def before_step(self):
        self.log.append(f"before_step {self.trainer.iter}")

    def after_step(self):
        self.log.append(f"after_step {self.trainer.iter}")

    def after_train(self):
        self.log.append("after_train")


def test_hooks_run_in_order_around_each_step():
    log = []
    trainer = make_trainer(mlp())
    trainer.register_hooks([Recorder(log), None])
    trainer.train(3, 5)
    assert log == ["before_train", "before_step 3", "after_step 3", "before_step 4", "after_step 4", "after_train"]


class TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.trunk, self.head_a, self.head_b = nn.Linear(12, 8), nn.Linear(8, 3), nn.Linear(8, 3)


def two_losses(model, batch):
    images, labels = batch
    features = torch.relu(model.trunk(images))
    return {"loss_a": nn.functional.cross_entropy(model.head_a(features), labels),
            "loss_b": nn.functional.cross_entropy(model.head_b(features), labels) * 3.0}


def plain_sgd(model, modules, lr=0.5):
    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.OPTIMIZER.BASE_LR", lr, "SOLVER.OPTIMIZER.MOMENTUM", 0.0,
                         "SOLVER.OPTIMIZER.WEIGHT_DECAY", 0.0])
    return Optimizer(model, cfg.SOLVER.OPTIMIZER, modules=modules).build()


def test_each_optimizer_gets_the_gradient_of_its_own_losses_only():

    model, reference = TwoHeads(), TwoHeads()
    units = [SolverUnit("a", plain_sgd(model, ("trunk", "head_a")), losses=("loss_a",)),
             SolverUnit("b", plain_sgd(model, ("head_b",)), losses=("loss_b",))]
    data = DataLoader(dataset(), batch_sampler=ResumableBatchSampler(96, 8, seed=5))
    Trainer(model, two_losses, data, units, torch.device("cpu")).train(0, 1)

    images, labels = next(iter(DataLoader(dataset(), batch_sampler=ResumableBatchSampler(96, 8, seed=5))))
    losses = two_losses(reference, (images, labels))
    grad_trunk = torch.autograd.grad(losses["loss_a"], reference.trunk.weight, retain_graph=True)[0]
    grad_b = torch.autograd.grad(losses["loss_b"], reference.head_b.weight)[0]
    torch.testing.assert_close(model.trunk.weight, reference.trunk.weight - 0.5 * grad_trunk)
    torch.testing.assert_close(model.head_b.weight, reference.head_b.weight - 0.5 * grad_b)


def test_a_step_interval_averages_gradients_like_accumulation():

    accumulated, interval = mlp(), mlp()
    make_trainer(accumulated, accumulation=2).train(0, 3)
    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.OPTIMIZER.BASE_LR", 0.1])
    unit = SolverUnit.of(Optimizer(interval, cfg.SOLVER.OPTIMIZER).build_guarded(), step_interval=2)
    data = DataLoader(dataset(), batch_sampler=ResumableBatchSampler(96, 8, seed=5))
    Trainer(interval, classification_losses, data, [unit], torch.device("cpu")).train(0, 6)
    for p, q in zip(accumulated.parameters(), interval.parameters()):
        torch.testing.assert_close(p, q)


def test_a_loss_name_the_model_does_not_return_is_a_config_error():
    from pet.config import ConfigError

    model = TwoHeads()
    units = [SolverUnit("a", plain_sgd(model, ("trunk", "head_a", "head_b")), losses=("loss_c",))]
    data = DataLoader(dataset(), batch_sampler=ResumableBatchSampler(96, 8, seed=5))
    with pytest.raises(ConfigError, match=r"SOLVER\.OPTIMIZERS\.a\.LOSSES names \['loss_c'\], but the model's losses "
                                          r"are \['loss_a', 'loss_b'\]"):
        Trainer(model, two_losses, data, units, torch.device("cpu")).train(0, 1)


def test_consecutive_skips_stop_the_run_and_save_the_last_good_state(tmp_path):
    from pet.engine import Checkpointer, PeriodicCheckpointer
    from pet.engine.persistence.checkpointer import read_checkpoint
    from pet.errors import NonFiniteError

    model = FailsAt(mlp(), nan_loss_at=range(3, 100))  # from the third update on, every loss is NaN
    trainer = make_trainer(model)
    trainer.max_consecutive_skips = 4
    snapshots = ParamsAfterEachStep()
    checkpointer = Checkpointer(str(tmp_path), model=model, optimizer=trainer.units[0].optimizer)
    trainer.register_hooks([snapshots, PeriodicCheckpointer(checkpointer, period=1000)])
    with pytest.raises(NonFiniteError, match=r"4 updates in a row \(iterations 2 to 5\) were skipped for non-finite "
                                             r"losses or gradients \(TRAIN\.MAX_CONSECUTIVE_SKIPS = 4\)"):
        trainer.train(0, 50)
    saved = read_checkpoint(str(tmp_path / "model_last_good.pth"))
    assert saved["iteration"] == 6 and (tmp_path / "last_checkpoint").read_text() == "model_last_good.pth\n"
    good = snapshots.snapshots[1]  # after the last good update (iteration 1)
    for (name, value), expected in zip(saved["model"].items(), good):
        assert torch.equal(value, expected), name


@pytest.mark.parametrize("opt_type", ["SGD", "RMSPROP"])  # fused kernels (device flag) and the host check
def test_non_finite_gradients_are_skipped_without_clipping(opt_type):
    model = FailsAt(mlp(), inf_grad_at=(2,))
    trainer = make_trainer(model, opt_type=opt_type)
    assert trainer.units[0].guard.clip_type == "none"  # NONFINITE.CHECK_GRADIENTS is on
    snapshots = ParamsAfterEachStep()
    trainer.register_hooks([snapshots])
    trainer.train(0, 4)
    assert trainer.skipped_updates == 1
    assert all(torch.equal(p, q) for p, q in zip(snapshots.snapshots[0], snapshots.snapshots[1]))
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("fp16", [False, True], ids=["guard", "grad_scaler"])
def test_non_finite_gradients_at_the_first_update_leave_no_trace_with_fused_sgd(fp16):
    # torch's fused SGD makes its momentum buffers with empty_like on the first step, even when it skips it.
    model = FailsAt(mlp(), inf_grad_at=(1,))
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 8) if fp16 else None
    trainer = make_trainer(model, amp_dtype=torch.float16 if fp16 else None, scaler=scaler)
    assert all(group["fused"] and group["momentum"] for group in trainer.units[0].optimizer.param_groups)
    snapshots = ParamsAfterEachStep()
    trainer.register_hooks([snapshots])
    trainer.train(0, 4)
    assert trainer.skipped_updates == 1
    assert all(torch.equal(p, q) for p, q in zip(snapshots.snapshots[0], mlp().parameters()))
    # The three later updates are those of a run that starts at the second batch.
    reference = mlp()
    make_trainer(reference, amp_dtype=torch.float16 if fp16 else None, start_iter=1,
                 scaler=torch.amp.GradScaler("cpu", init_scale=2.0 ** 7) if fp16 else None).train(0, 3)
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_the_gradient_check_can_be_turned_off():
    cfg = get_cfg()
    cfg.SOLVER.OPTIMIZER.NONFINITE.CHECK_GRADIENTS = False
    built = Optimizer(mlp(), cfg.SOLVER.OPTIMIZER).build_guarded()
    optimizer = built.optimizer
    assert built.guard is None
    assert not any(isinstance(getattr(hook, "__self__", hook), GradientGuard)
                   for hook in optimizer._optimizer_step_pre_hooks.values())


class LossDict(nn.Module):
    """Computes its own losses in training mode, as torchvision's detectors do."""

    def __init__(self):
        super().__init__()
        self.net = mlp()

    def forward(self, images, labels):
        logits = self.net(images)
        return {"loss_cls": nn.functional.cross_entropy(logits, labels), "loss_l2": (logits ** 2).mean() * 0.1}


def test_a_model_returning_a_dict_of_losses_is_trained_on_their_sum_and_each_is_logged():
    model, reference = LossDict(), LossDict()
    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.OPTIMIZER.BASE_LR", 0.1, "SOLVER.OPTIMIZER.MOMENTUM", 0.0,
                         "SOLVER.OPTIMIZER.WEIGHT_DECAY", 0.0])
    data = DataLoader(dataset(), batch_sampler=ResumableBatchSampler(96, 8, 1, seed=5))
    batch = next(iter(data))
    trainer = Trainer(model, model_losses, data, [SolverUnit.of(Optimizer(model, cfg.SOLVER.OPTIMIZER).build_guarded())],
                      torch.device("cpu"))
    trainer.train(0, 1)

    losses = reference(*batch)  # the same update by hand: plain SGD on the sum
    sum(losses.values()).backward()
    with torch.no_grad():
        for p, q in zip(model.parameters(), reference.parameters()):
            assert torch.allclose(p, q - 0.1 * q.grad, atol=1e-7)
    logged = {name: value for name, (value, _) in trainer.storage.latest().items()}
    assert logged["loss_cls"] == pytest.approx(losses["loss_cls"].item())
    assert logged["loss_l2"] == pytest.approx(losses["loss_l2"].item())
    assert logged["loss"] == pytest.approx(sum(v.item() for v in losses.values()))


def test_a_model_that_returns_no_loss_dict_is_a_clear_error():
    with pytest.raises(TypeError, match=r"Sequential returned Tensor in training mode; the trainer needs a dict"):
        model_losses(mlp(), (torch.randn(2, 12),))


def test_the_skip_counters_are_saved_and_continued(tmp_path):
    from pet.engine.persistence.checkpointer import Checkpointer

    trainer = make_trainer(FailsAt(mlp(), nan_loss_at=(2, 3)))
    trainer.train(0, 3)
    assert (trainer.skipped_updates, trainer.consecutive_skips) == (2, 2)
    Checkpointer(str(tmp_path), trainer=trainer).save("model_final", 3)
    resumed = make_trainer(mlp())
    Checkpointer(str(tmp_path), trainer=resumed).load(str(tmp_path / "model_final.pth"))
    assert (resumed.skipped_updates, resumed.consecutive_skips) == (2, 2)


class NanImagesAt(torch.utils.data.Dataset):
    """The trainer's usual data, with NaN images in the given samples."""

    def __init__(self, bad):
        self.data, self.bad = dataset(), set(bad)

    def __len__(self):
        return len(self.data)

    def __getitem__(self, index):
        image, label = self.data[index]
        return (torch.full_like(image, float("nan")) if index in self.bad else image), label


class BuffersAfterEachStep(HookBase):
    def __init__(self):
        self.snapshots = []

    def after_step(self):
        self.snapshots.append({n: b.clone() for n, b in self.trainer.model.named_buffers()})


def test_a_skipped_update_leaves_the_batch_norm_statistics_as_they_were():
    model = nn.Sequential(nn.Linear(12, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
    sampler = ResumableBatchSampler(96, 8, seed=5)
    bad_batch = next(b for i, b in enumerate(sampler) if i == 2)  # the samples of iteration 2
    cfg = get_cfg()
    trainer = Trainer(model, classification_losses, DataLoader(NanImagesAt(bad_batch[:1]), batch_sampler=sampler),
                      [SolverUnit.of(Optimizer(model, cfg.SOLVER.OPTIMIZER).build_guarded())], torch.device("cpu"))
    buffers = BuffersAfterEachStep()
    trainer.register_hooks([buffers])
    trainer.train(0, 5)
    assert trainer.skipped_updates == 1
    for name, value in buffers.snapshots[2].items():  # the skipped iteration moved nothing, counters included
        assert torch.equal(value, buffers.snapshots[1][name]), name
    assert all(torch.isfinite(b.float()).all() for b in model.buffers())
    assert not torch.equal(buffers.snapshots[3]["1.running_mean"], buffers.snapshots[2]["1.running_mean"])


def test_the_weight_average_moves_only_after_updates_that_were_taken():
    from pet.engine.loop.hooks import EMAHook
    from pet.solver.optimizers.ema import WeightEMA

    model = FailsAt(mlp(), nan_loss_at=(5, 6))  # micro-batches 5 and 6: the third update is skipped
    trainer = make_trainer(model, accumulation=2)
    ema = WeightEMA(model, decay=0.5, warmup_iters=0)
    trainer.register_hooks([EMAHook(ema, period=2)])
    trainer.train(0, 6)  # 6 updates of 2 micro-batches; one skipped: 5 taken, the average updated after 2 and 4
    assert trainer.skipped_updates == 1 and ema.updates == 2


class GradNormRecorder(HookBase):
    """Reads `grad_norm` from the storage after every step: (iteration it was recorded at, value)."""

    def __init__(self):
        self.seen = []

    def after_step(self):
        value = self.trainer.storage.latest().get("grad_norm")
        self.seen.append(None if value is None else (value[1], value[0]))


@pytest.mark.parametrize("implementation", ["FUSED", "FOR_LOOP"])  # the device-flag path and the host path
@pytest.mark.parametrize("clip_type, norm_type", [("full_model", 2.0), ("full_model", math.inf), ("norm", 2.0),
                                                  ("norm", 1.0)])
def test_grad_norm_is_torchs_total_norm_of_the_gradients_at_written_iterations(clip_type, norm_type, implementation):
    check_grad_norm(clip_type, norm_type, implementation)


@pytest.mark.parametrize("implementation", ["FUSED", "FOR_LOOP"])
@pytest.mark.parametrize("clip_type", ["full_model", "norm"])
def test_grad_norm_is_of_the_true_gradients_under_a_grad_scaler(clip_type, implementation):
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=10_000)
    check_grad_norm(clip_type, 2.0, implementation, scaler)


def check_grad_norm(clip_type, norm_type, implementation, scaler=None):
    """Train 7 updates with GradNormHook at period 3; compare what it recorded with get_total_norm of the
    gradients backward left (divided by the GradScaler's scale)."""
    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.OPTIMIZER.TYPE", "ADAMW", "SOLVER.OPTIMIZER.BASE_LR", 0.1,
                         "SOLVER.OPTIMIZER.KERNELS.IMPLEMENTATION", implementation,
                         "SOLVER.OPTIMIZER.CLIP_GRADIENTS.ENABLED", True,
                         "SOLVER.OPTIMIZER.CLIP_GRADIENTS.CLIP_TYPE", clip_type,
                         "SOLVER.OPTIMIZER.CLIP_GRADIENTS.CLIP_VALUE", 0.05,
                         "SOLVER.OPTIMIZER.CLIP_GRADIENTS.NORM_TYPE", norm_type])
    model = mlp()
    gradients = []  # each update's gradients as backward left them, before the clipping
    params = list(model.parameters())
    for p in params:
        p.register_post_accumulate_grad_hook(lambda p: gradients.append(p.grad.clone()))
    data = DataLoader(dataset(), batch_sampler=ResumableBatchSampler(96, 8, seed=5))
    trainer = Trainer(model, classification_losses, data,
                      [SolverUnit.of(Optimizer(model, cfg.SOLVER.OPTIMIZER).build_guarded())],
                      torch.device("cpu"), amp_dtype=torch.float16 if scaler else None, grad_scaler=scaler)
    scale = scaler.get_scale() if scaler else 1.0
    recorder = GradNormRecorder()
    trainer.register_hooks([GradNormHook(trainer.units, period=3), recorder])
    trainer.train(0, 7)
    per_update = [gradients[i:i + len(params)] for i in range(0, len(gradients), len(params))]
    written = [2, 5, 6]  # every third update, and the last
    for it, seen in enumerate(recorder.seen):
        if it not in written:  # not read on other updates (reading would wait for the device)
            assert seen is None or seen[0] < it
            continue
        expected = torch.nn.utils.get_total_norm(per_update[it], norm_type).item() / scale
        assert seen[0] == it and seen[1] == pytest.approx(expected, rel=1e-5), it
    assert any(seen[1] > 0.05 for seen in recorder.seen if seen)  # the norms were above the clip value


def test_the_consecutive_skip_counter_resets_after_a_taken_update():
    trainer = make_trainer(FailsAt(mlp(), nan_loss_at=(2, 3, 5, 6)))
    trainer.max_consecutive_skips = 3  # two in a row, twice, never three
    trainer.train(0, 4)
    assert (trainer.skipped_updates, trainer.consecutive_skips) == (2, 0)
    trainer.train(4, 8)
    assert (trainer.skipped_updates, trainer.consecutive_skips) == (4, 0)


class StopAt:
    """Stop signals as `StopSignals.agreed` reports them: from iteration `at` on, a SIGTERM."""

    def __init__(self, trainer, at):
        self.trainer, self.at = trainer, at

    def agreed(self):
        return "SIGTERM" if self.trainer.iter >= self.at else None


def test_a_stop_signal_on_the_last_iteration_ends_the_run_normally():
    from pet.errors import Preempted

    trainer = make_trainer(mlp())
    trainer.stop_signals = StopAt(trainer, at=2)
    trainer.train(0, 3)  # the signal came with the last update: nothing is left to resume
    assert trainer.iter == 2 and trainer.failure is None
    trainer = make_trainer(mlp())
    trainer.stop_signals = StopAt(trainer, at=1)
    with pytest.raises(Preempted, match="stopped by SIGTERM after 2 iterations"):
        trainer.train(0, 3)


def test_a_nan_loss_clears_the_gradients_of_an_optimizer_that_is_not_due():

    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.OPTIMIZER.BASE_LR", 0.1])
    model = FailsAt(mlp(), nan_loss_at=(1,))  # iteration 0; the unit steps after iterations 1, 3, ...
    unit = SolverUnit.of(Optimizer(model, cfg.SOLVER.OPTIMIZER).build_guarded(), step_interval=2)
    data = DataLoader(dataset(), batch_sampler=ResumableBatchSampler(96, 8, seed=5))
    trainer = Trainer(model, classification_losses, data, [unit], torch.device("cpu"))
    trainer.train(0, 2)
    assert trainer.skipped_updates == 1  # the NaN gradients of iteration 0 do not reach iteration 1's update
    reference = mlp()
    for p, q in zip(model.parameters(), reference.parameters()):
        assert not torch.equal(p, q) and torch.isfinite(p).all()


def ddp_accumulation(rank, world_size, folder):
    """Each of 2 processes: batch 4 x 2 micro-batches per update, DDP-wrapped."""
    from torch.nn.parallel import DistributedDataParallel

    model = mlp()
    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.OPTIMIZER.BASE_LR", 0.1])
    optimizer = Optimizer(model, cfg.SOLVER.OPTIMIZER).build()
    data = DataLoader(dataset(), batch_sampler=ResumableBatchSampler(96, 4, 2, rank, world_size, seed=5))
    Trainer(DistributedDataParallel(model), classification_losses, data, optimizer, torch.device("cpu"),
            accumulation=2).train(0, 3)
    torch.save(model.state_dict(), f"{folder}/rank{rank}.pt")


def test_ddp_with_accumulation_equals_one_process_with_the_whole_batch(tmp_path):
    from tests.engine.distributed_processes import run_in_processes

    run_in_processes(ddp_accumulation, 2, tmp_path, str(tmp_path))
    whole = mlp()
    make_trainer(whole, batch_size=16).train(0, 3)  # 2 processes x 4 images x 2 micro-batches
    for rank in range(2):
        state = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        for name, tensor in whole.state_dict().items():
            torch.testing.assert_close(state[name], tensor, rtol=1e-5, atol=1e-6, msg=name)
