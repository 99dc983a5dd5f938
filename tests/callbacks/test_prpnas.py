"""PRP-NAS (thesis §3.3): supernets, the α losses, HVI selection, SupernetModule, the callbacks, DDP and resume."""

import copy
import json
import math
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from conftest import CONFIGS, hwnas_env

from hwnas_pl.callbacks import OperationPruning, ParetoRankAlphaUpdate, SupernetExport, SupernetRanking
from hwnas_pl.checkpoint import CheckpointMismatchError
from hwnas_pl.datamodules import DigitsDataModule
from hwnas_pl.errors import ConfigError
from hwnas_pl.evaluators.analytic import AnalyticCostModel
from hwnas_pl.evaluators.tables import TableCostModel
from hwnas_pl.modules import NonFiniteLossError, SupernetModule
from hwnas_pl.prpnas import (
    alpha_hinge_loss,
    fair_paths,
    greedy_hvi_selection,
    listwise_rank_loss,
    op_frequency,
    path_scores,
    sample_paths,
)
from hwnas_pl.spaces import MBConvSpace, NASBench201Space
from hwnas_pl.spaces.supernet import batch_statistics

HWNAS = str(Path(sys.executable).parent / "hwnas")
DIGITS_PRPNAS = CONFIGS / "prpnas_nb201_digits.yaml"
SMALL_NB201 = NASBench201Space(channels=4, cells=1)


# ---------------------------------------------------------------------- core pieces
@pytest.mark.parametrize(
    "space,shape", [(NASBench201Space(channels=4, cells=2), (1, 8, 8)), (MBConvSpace("cifar"), (3, 32, 32))]
)
def test_supernet_path_equals_the_standalone_network_with_its_weights(space, shape):
    torch.manual_seed(0)
    supernet = space.build_supernet(10, shape)
    x = torch.randn(3, *shape)
    for arch in space.sample(3, np.random.default_rng(0)):
        child = space.build(arch, 10, shape)
        child.load_state_dict(supernet.child_state_dict(arch))  # strict: every child tensor comes from the supernet
        supernet.eval(), child.eval()
        torch.testing.assert_close(supernet(x, arch), child(x), rtol=0, atol=0)


def test_pruning_removes_the_op_everywhere_and_refuses_the_last_one():
    supernet = NASBench201Space(channels=4, cells=2).build_supernet(10, (1, 8, 8))
    before = sum(p.numel() for p in supernet.parameters())
    freed = supernet.prune(2, "nor_conv_3x3")
    # one ReLU-Conv3x3(no bias)-BN per cell: 6 cells (2 per stage at 4, 8, 16 channels)
    assert freed == 2 * sum(c * c * 9 + 2 * c for c in (4, 8, 16))
    assert sum(p.numel() for p in supernet.parameters()) == before - freed
    assert "nor_conv_3x3" not in supernet.alive(2) and all("nor_conv_3x3" not in p for p in supernet.places(2))
    with pytest.raises(ConfigError, match="pruned or unknown"):
        supernet(torch.zeros(1, 1, 8, 8), ("nor_conv_3x3",) * 6)
    for op in ("none", "skip_connect", "nor_conv_1x1"):
        supernet.prune(2, op)
    with pytest.raises(ConfigError, match="last alive op"):
        supernet.prune(2, "avg_pool_3x3")


def test_fair_paths_use_every_op_of_every_layer_exactly_once():
    rng = np.random.default_rng(0)
    paths = fair_paths([range(5)] * 6, rng)
    assert paths.shape == (5, 6)
    assert all(sorted(paths[:, layer]) == list(range(5)) for layer in range(6))
    uneven = fair_paths([[0, 2], [1, 3, 4]], rng)  # K = 3; the 2-op layer uses both, one twice
    assert uneven.shape == (3, 2) and set(uneven[:, 0]) == {0, 2} and sorted(uneven[:, 1]) == [1, 3, 4]


def test_sample_paths_are_distinct_and_n_beyond_the_space_is_refused():
    paths = sample_paths([[0, 1], [0, 1, 2]], 6, np.random.default_rng(0))
    assert len({tuple(p) for p in paths}) == 6
    big = sample_paths([range(5)] * 6, 50, np.random.default_rng(0))
    assert len({tuple(p) for p in big}) == 50
    with pytest.raises(ConfigError, match="allow only 6; expected n <= 6"):
        sample_paths([[0, 1], [0, 1, 2]], 7, np.random.default_rng(0))


def test_alpha_losses_against_hand_computed_values():
    assert op_frequency(np.array([[0, 1], [0, 2], [1, 2], [0, 2]]), 3).tolist() == [
        [0.75, 0.25, 0.0],
        [0.0, 0.25, 0.75],
    ]
    probs = torch.tensor([[0.5, 0.3, 0.2]], requires_grad=True)
    alive = torch.ones(1, 3, dtype=torch.bool)
    # true top-N (ĝ) favour op 1; α's top-N (g) over-use op 0 (0.6 > 0.2), not op 2 (0.2 < 0.3):
    # op 0 must trail op 1 by m: max(0, 0.1 - (0.3 - 0.5)) = 0.3
    hinge = alpha_hinge_loss(probs, np.array([[0.6, 0.2, 0.2]]), np.array([[0.2, 0.5, 0.3]]), alive, margin=0.1)
    assert hinge.item() == pytest.approx(0.3)
    hinge.backward()
    assert probs.grad.tolist() == [[1.0, -1.0, 0.0]]  # lower the over-used op, raise the true favourite
    # α's favourite already is the true one but leads an over-used op by less than m: still a gradient
    close = torch.tensor([[0.45, 0.4, 0.15]])
    g, g_true = np.array([[0.4, 0.6, 0.0]]), np.array([[0.5, 0.3, 0.2]])
    assert alpha_hinge_loss(close, g, g_true, alive, 0.1).item() == pytest.approx(0.05)
    assert alpha_hinge_loss(probs.detach(), g, g_true, alive, 0.1).item() == 0.0  # leads by 0.2 >= m
    assert alpha_hinge_loss(probs.detach(), g_true, g_true, alive, 0.1).item() == 0.0  # same top-N: nothing to fix
    # a pruned op is neither the favourite nor counted: op 2 pruned makes op 0 the true favourite
    g, g_true = np.array([[0.2, 0.5, 0.3]]), np.array([[0.3, 0.1, 0.6]])
    assert alpha_hinge_loss(probs.detach(), g, g_true, alive, 0.1).item() == pytest.approx(0.2)  # 0.1 - (0.2 - 0.3)
    pruned = torch.tensor([[True, True, False]])
    assert alpha_hinge_loss(probs.detach(), g, g_true, pruned, 0.1).item() == 0.0  # 0.1 - (0.5 - 0.3) < 0
    # ListNet: target softmax([-1, -2]) against log_softmax([1, 0])
    target = np.exp([-1, -2]) / np.exp([-1, -2]).sum()
    logp = np.array([1.0, 0.0]) - np.log(np.exp([1.0, 0.0]).sum())
    loss = listwise_rank_loss(torch.tensor([1.0, 0.0]), [1, 2])
    assert float(loss) == pytest.approx(-(target * logp).sum(), rel=1e-6)
    scores = path_scores(torch.tensor([[0.6, 0.4], [0.1, 0.9]]), np.array([[0, 1], [1, 0]]))
    assert scores.tolist() == pytest.approx([1.5, 0.5])


def _first_update(seed: int, optimizer=None) -> SupernetModule:
    """One α update of a supernet whose sub-networks' score is their number of nor_conv_3x3 edges (no cost)."""
    import types

    module = _module()
    three = SMALL_NB201_OPS.index("nor_conv_3x3")
    noise = np.random.default_rng(seed)
    module.estimate_accuracy = lambda paths, batches: (paths == three).sum(1) + 0.01 * noise.random(len(paths))
    module.costs = lambda paths: np.zeros(len(paths))
    module.heldout_batches = lambda n: []
    update = ParetoRankAlphaUpdate(n=50, top_n=10, seed=seed, optimizer=optimizer)
    trainer = types.SimpleNamespace(world_size=1, global_step=0, current_epoch=0)
    update.on_fit_start(trainer, module)
    update.update(trainer, module)
    return module


def test_the_first_alpha_step_is_decided_by_the_gradient_not_by_op_order():
    """Adam's first step moves every α by ±lr, so favoured ops tie and argmax picks by op order; SGD's does not."""
    three = SMALL_NB201_OPS.index("nor_conv_3x3")

    def outcome(optimizer):
        chosen, ties = 0, 0
        for seed in range(20):
            module = _first_update(seed, optimizer)
            chosen += int((module.argmax_path() == three).sum())
            top2 = module.alpha.detach().sort(dim=1, descending=True).values[:, :2]
            ties += int((top2[:, 0] - top2[:, 1] < 1e-6).sum())
        return chosen, ties

    chosen, ties = outcome(None)  # the default: SGD
    assert ties == 0 and chosen >= 0.7 * 20 * 6  # measured 87 of 120 (seed, edge) cases
    _, adam_ties = outcome(lambda p: torch.optim.Adam(p, lr=0.05, betas=(0.5, 0.999)))
    assert adam_ties > 0


def test_greedy_hypervolume_selection_by_hand():
    # (accuracy up, cost down), reference (0.6, 4): single-point volumes 0.3, 0.6, 0.375, 0.15
    F = np.array([[0.9, 3.0], [0.8, 1.0], [0.85, 2.5], [0.7, 2.5]])
    ref = [0.6, 4.0]
    assert greedy_hvi_selection(F, ref, ("max", "min"), [0, 1, 2, 3], 1) == [1]
    # then point 0 adds 0.1 * 1 > point 2's 0.05 * 1.5; then point 2 adds 0.05 * 0.5, point 3 (dominated) nothing
    assert greedy_hvi_selection(F, ref, ("max", "min"), [0, 1, 2, 3], 4) == [1, 0, 2, 3]
    # equal points: the earlier candidate wins
    assert greedy_hvi_selection(np.array([[0.8, 1.0], [0.8, 1.0]]), ref, ("max", "min"), [1, 0], 1) == [1]


# ---------------------------------------------------------------------- SupernetModule
def _module(**kwargs) -> SupernetModule:
    args = dict(space=SMALL_NB201, num_classes=10, input_shape=(1, 8, 8), warmup_epochs=1, cost_model=AnalyticCostModel)
    args.update(kwargs)
    return SupernetModule(optimizer=lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9), **args)


def test_warmup_step_trains_every_op_once_and_search_step_trains_the_argmax_path():
    module = _module()
    seen = []
    forward = module.supernet.forward
    module.supernet.forward = lambda x, ops: (seen.append(tuple(ops)), forward(x, ops))[1]
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    loss = module.training_step((x, y), 0)
    assert len(seen) == 5 and all(sorted(col) == sorted(SMALL_NB201_OPS) for col in zip(*seen))
    # one loss, the sum over the paths: their gradients accumulate into one optimiser step
    with torch.no_grad():
        total = sum(torch.nn.functional.cross_entropy(forward(x, ops), y) for ops in seen)
    assert loss.item() == pytest.approx(total.item(), rel=1e-5)
    loss.backward()
    assert module.alpha.grad is None  # α is not trained by the task loss
    seen.clear()
    module.warmup_epochs = 0
    with torch.no_grad():
        module.alpha[:, 3] = 1.0  # nor_conv_3x3 everywhere
    module.training_step((x, y), 0)
    assert seen == [("nor_conv_3x3",) * 6]


def test_per_path_warmup_backward_gives_the_summed_gradients_holding_one_graph():
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    grads, losses = {}, {}
    for mode in ("summed", "per_path"):
        torch.manual_seed(0)
        module = _module(warmup_backward=mode, seed=3)
        loss = module.training_step((x, y), 0)
        loss.backward()
        losses[mode] = loss.item()
        grads[mode] = {n: p.grad.clone() for n, p in module.supernet.named_parameters() if p.grad is not None}
    assert losses["per_path"] == pytest.approx(losses["summed"], rel=1e-6)  # the value is the summed loss too
    assert grads["per_path"].keys() == grads["summed"].keys() and len(grads["summed"]) > 10
    for name, g in grads["summed"].items():
        torch.testing.assert_close(grads["per_path"][name], g, rtol=1e-5, atol=1e-6)


SMALL_NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


def test_nan_loss_stops_with_one_sentence():
    module = _module()
    x = torch.full((4, 1, 8, 8), float("nan"))
    with pytest.raises(NonFiniteLossError, match="supernet training loss became nan at epoch 0, step 0"):
        module.training_step((x, torch.zeros(4, dtype=torch.long)), 0)


def test_cost_model_lacking_an_op_is_refused_before_training(tmp_path):
    rows = ["arch,latency_ms"] + [
        f"{SMALL_NB201.to_string(a)},1.0" for a in SMALL_NB201.sample(5, np.random.default_rng(0))
    ]
    (tmp_path / "costs.csv").write_text("\n".join(rows))
    module = _module(cost_model=lambda space: TableCostModel(space, tmp_path / "costs.csv"))
    with pytest.raises(ConfigError, match="Cost model TableCostModel cannot price every op of the nasbench201"):
        module.check_cost_model()


def _trainer(tmp_path, epochs, callbacks=(), **kwargs) -> L.Trainer:
    return L.Trainer(
        default_root_dir=tmp_path,
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=list(callbacks),
        **{"limit_train_batches": 4, **kwargs},
    )


def test_n_larger_than_the_space_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="n=20000 sub-networks, but the nasbench201 supernet has 15625"):
        _trainer(tmp_path, 1, [ParetoRankAlphaUpdate(n=20000)]).fit(_module(), DigitsDataModule(batch_size=32))


def _callbacks(tmp_path, prune_at=2):
    return [
        ParetoRankAlphaUpdate(n=12, top_n=4, num_batches=1),
        OperationPruning(at_epochs=[prune_at], num_samples=20, keep=3, num_batches=1),
        L.pytorch.callbacks.ModelCheckpoint(
            dirpath=tmp_path / "ckpt",
            filename="e{epoch}",
            save_top_k=-1,
            save_on_train_epoch_end=True,
            auto_insert_metric_name=False,
        ),
    ]


def test_search_updates_alpha_prunes_ops_and_leaves_the_optimizer_consistent(tmp_path):
    module = _module()
    trainer = _trainer(tmp_path, 4, _callbacks(tmp_path))
    trainer.fit(module, DigitsDataModule(batch_size=32))
    update, pruning = trainer.callbacks[0], trainer.callbacks[1]
    assert update.updates == 4  # when the search phase starts, then after each of its epochs 1, 2, 3
    assert not torch.allclose(module.alpha, torch.zeros_like(module.alpha))
    record = pruning.records[0]
    assert record["epoch"] == 2 and record["pruned"] and len(record["chosen"]) <= 3
    assert module.pruned == [tuple(p) for p in record["pruned"]]
    # every chosen sub-network survives; every pruned op is gone from the network, α's support and the optimizer
    for arch in record["chosen"]:
        module.supernet.check_path(SMALL_NB201.from_string(arch))
    for layer, op in module.pruned:
        assert op not in module.supernet.alive(layer)
        assert not module.alive_mask[layer, SMALL_NB201_OPS.index(op)]
        assert float(module.alpha_probs()[layer, SMALL_NB201_OPS.index(op)]) == 0.0
    optimizer = trainer.optimizers[0]
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert in_optimizer == {id(p) for n, p in module.named_parameters() if n != "alpha"}
    assert set(map(id, optimizer.state)) <= in_optimizer
    assert record["params_after"] == sum(p.numel() for p in module.supernet.parameters()) < record["params_before"]


def test_pruning_every_search_epoch_as_algorithm_2(tmp_path):
    pruning = OperationPruning(at_epochs=[], every_n_epochs=1, num_samples=20, keep=3, num_batches=1)
    trainer = _trainer(tmp_path, 4, [ParetoRankAlphaUpdate(n=6, top_n=2, num_batches=1), pruning])
    trainer.fit(_module(warmup_epochs=2), DigitsDataModule(batch_size=32))
    assert [r["epoch"] for r in pruning.records] == [2, 3]  # the search epochs, not the warm-up
    with pytest.raises(ConfigError, match="every_n_epochs must be >= 1 or null, got 0"):
        OperationPruning(every_n_epochs=0)


def test_argmax_path_follows_alpha_and_pruning_without_reading_the_device_each_step():
    module = _module(warmup_epochs=0)
    assert module.argmax_path().tolist() == [0] * 6  # uniform α: the first op
    with torch.no_grad():
        module.alpha[:, 3] = 1.0
    assert module.argmax_path().tolist() == [3] * 6
    calls = []
    probs = module.alpha_probs
    module.alpha_probs = lambda: (calls.append(1), probs())[1]
    module.argmax_path(), module.argmax_path()
    assert calls == []  # cached while α and the alive ops stay as they are
    module.prune_ops([(2, "nor_conv_3x3")])
    assert module.argmax_path()[2] != 3 and calls == [1]


def test_heldout_estimates_recalibrated_bn_fixed_batch_size_and_cross_entropy(tmp_path):
    module = _module(warmup_epochs=0, bn_mode="recalibrate", recalibration_batches=2, heldout_batch_size=10)
    trainer = _trainer(tmp_path, 1, limit_val_batches=2)
    trainer.fit(module, DigitsDataModule(batch_size=32))
    batches = module.heldout_batches(2)
    assert [len(y) for _, y in batches] == [10] * 6 + [4]  # 2 batches of 32 cut into batches of 10
    assert [len(x) for x in module.recalibration_inputs()] == [32, 32]
    norms = [m for m in module.supernet.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    before = [m.running_mean.clone() for m in norms]
    paths = module.sample_subnets(3, np.random.default_rng(0))
    acc = module.estimate_accuracy(paths, batches)
    assert all(torch.equal(a, m.running_mean) for a, m in zip(before, norms))  # put back after each path
    assert all(m.training == t for m, t in zip(norms, [m.training for m in norms]))
    # the same estimate by hand: recompute the statistics on the two training batches, then evaluate in eval mode
    from hwnas_pl.spaces.supernet import recalibrated_statistics

    ops = module.ops_of(paths[0])
    with recalibrated_statistics(module.supernet, lambda z: module.supernet(z, ops), module.recalibration_inputs()):
        assert not any(m.training for m in norms)
        x = torch.cat([b[0] for b in batches])
        y = torch.cat([b[1] for b in batches])
        expected = float((module.supernet(x, ops).argmax(1) == y).float().mean())
    assert acc[0] == pytest.approx(expected)
    ce = _module(warmup_epochs=0, heldout_score="cross_entropy")
    ce.supernet.load_state_dict(module.supernet.state_dict())
    loss = ce.estimate_accuracy(paths[:1], batches)[0]
    with torch.no_grad(), batch_statistics(ce.supernet):
        by_hand = sum(F.cross_entropy(ce.supernet(x, ops), y, reduction="sum") for x, y in batches) / 64
    assert loss == pytest.approx(-float(by_hand), rel=1e-6)


def test_warmup_validation_averages_the_fair_paths(tmp_path):
    """During warm-up α is uniform and its argmax an arbitrary cell: validation batch b runs fair path b mod K."""
    module = _module(warmup_epochs=5)
    seen = []
    forward = module.supernet.forward
    module.supernet.forward = lambda x, ops: (seen.append(tuple(ops)), forward(x, ops))[1]
    trainer = _trainer(tmp_path, 1, limit_val_batches=5)
    trainer.validate(module, DigitsDataModule(batch_size=32), verbose=False)
    assert len(seen) == 5 and all(sorted(col) == sorted(SMALL_NB201_OPS) for col in zip(*seen))
    seen.clear()
    trainer.test(module, DigitsDataModule(batch_size=32), verbose=False)
    assert set(seen) == {("none",) * 6}  # testing: the argmax path


def test_alpha_updates_continue_when_pruning_leaves_fewer_sub_networks_than_n(tmp_path):
    callbacks = [
        ParetoRankAlphaUpdate(n=12, top_n=4, num_batches=1),
        OperationPruning(at_epochs=[1], num_samples=20, keep=1, num_batches=1),  # one path survives
    ]
    module = _module()
    trainer = _trainer(tmp_path, 3, callbacks, limit_val_batches=1)
    trainer.fit(module, DigitsDataModule(batch_size=32))
    assert all(len(ops) == 1 for ops in module.alive_indices())
    assert trainer.callbacks[0].updates == 3 and len(trainer.callbacks[0].history[-1]["front"]) == 1


def test_resume_in_warmup_search_and_after_pruning_restores_every_state(tmp_path):
    # warm-up epochs 0-1, search 2-4, pruning after epoch 3
    _trainer(tmp_path, 5, _callbacks(tmp_path, 3)).fit(_module(warmup_epochs=2), DigitsDataModule(batch_size=32))

    class Check(L.Callback):
        def on_train_start(self, trainer, module):
            self.seen = {
                "epoch": trainer.current_epoch,
                "phase": module.phase,
                "alpha": module.alpha.detach().clone(),
                "pruned": list(module.pruned),
                "rng": module.rng.bit_generator.state,
                "alpha_optimizer": copy.deepcopy(trainer.callbacks[0].optimizer.state_dict()["state"]),
                "updates": trainer.callbacks[0].updates,
                "records": list(trainer.callbacks[1].records),
                "optimizer_params": sum(len(g["params"]) for g in trainer.optimizers[0].param_groups),
                "module_params": len([n for n, _ in module.named_parameters() if n != "alpha"]),
            }

    for epoch, phase, n_updates, pruned in [(0, "warmup", 0, False), (2, "search", 2, False), (3, "search", 3, True)]:
        ckpt_path = tmp_path / "ckpt" / f"e{epoch}.ckpt"
        saved = torch.load(ckpt_path, weights_only=False)
        check = Check()
        trainer = _trainer(tmp_path / f"resume{epoch}", 5, [*_callbacks(tmp_path / f"resume{epoch}", 3), check])
        module = _module(warmup_epochs=2)
        trainer.fit(module, DigitsDataModule(batch_size=32), ckpt_path=ckpt_path)
        seen = check.seen
        assert seen["epoch"] == epoch + 1 and seen["phase"] == phase
        torch.testing.assert_close(seen["alpha"], saved["state_dict"]["alpha"])
        assert [list(p) for p in seen["pruned"]] == saved["supernet"]["pruned"] and bool(seen["pruned"]) == pruned
        assert seen["rng"] == saved["supernet"]["rng"]
        assert seen["updates"] == n_updates == saved["callbacks"]["ParetoRankAlphaUpdate"]["updates"]
        if n_updates:  # SGD's momentum buffer came back
            torch.testing.assert_close(
                seen["alpha_optimizer"][0]["momentum_buffer"],
                saved["callbacks"]["ParetoRankAlphaUpdate"]["optimizer"]["state"][0]["momentum_buffer"],
            )
        assert seen["records"] == saved["callbacks"]["OperationPruning"]["records"]
        assert seen["optimizer_params"] == seen["module_params"]  # pruned parameters stay out of the optimizer
        # the run finished from there: 1 + 3 α updates in all, one pruning at epoch 3
        assert trainer.callbacks[0].updates == 4 and [r["epoch"] for r in trainer.callbacks[1].records] == [3]


def test_checkpoint_of_another_space_is_refused(tmp_path):
    trainer = _trainer(tmp_path, 1, limit_val_batches=1)
    trainer.fit(_module(), DigitsDataModule(batch_size=32))
    ckpt = tmp_path / "nb201.ckpt"
    trainer.save_checkpoint(ckpt)
    other = _module(space=MBConvSpace("cifar"), input_shape=(1, 8, 8))
    with pytest.raises(
        CheckpointMismatchError,
        match="supernet of the nasbench201 space with 6 layers, but the config's space is mbconv",
    ):
        _trainer(tmp_path / "other", 2).fit(other, DigitsDataModule(batch_size=32), ckpt_path=ckpt)


def test_mbconv_supernet_trains_warmup_and_search(tmp_path):
    module = _module(space=MBConvSpace("cifar"), input_shape=(3, 32, 32), warmup_epochs=1)
    trainer = _trainer(
        tmp_path, 2, [ParetoRankAlphaUpdate(n=4, top_n=2, num_batches=1)], limit_train_batches=1, limit_val_batches=1
    )
    trainer.fit(module, DigitsDataModule(batch_size=4, resize=32, channels=3))
    assert trainer.callbacks[0].updates == 2 and math.isfinite(float(trainer.callback_metrics["val/loss"]))
    assert module.alpha.shape == (21, 7) and not module.alive_mask[0, 6]  # the first layer has no skip


def test_ranking_is_measured_every_epoch_on_a_fixed_set_against_a_reference(tmp_path):
    from scipy.stats import kendalltau

    ranking = SupernetRanking(reference=AnalyticCostModel, reference_metric="params", num_samples=10, num_batches=1)
    export = SupernetExport(
        output_dir=str(tmp_path / "export"), num_samples=10, num_batches=1, threshold=1.0, max_paths=3
    )
    callbacks = [ParetoRankAlphaUpdate(n=8, top_n=2, num_batches=1), export, ranking]
    trainer = _trainer(tmp_path, 3, callbacks, limit_val_batches=1)
    trainer.fit(_module(), DigitsDataModule(batch_size=32))
    saved = json.loads((tmp_path / "export" / "ranking.json").read_text())
    assert [h["epoch"] for h in saved["history"]] == [0, 1, 2]
    assert [h["phase"] for h in saved["history"]] == ["warmup", "search", "search"]
    assert all(h["n"] == 10 for h in saved["history"]) and len(saved["archs"]) == 10
    # the same 10 sub-networks each epoch; the reference priced the data's 1x8x8 inputs, not its 3x32x32 default
    params = AnalyticCostModel(SMALL_NB201, input_shape=(1, 8, 8), num_classes=10).evaluate(saved["archs"])["params"]
    assert saved["true_acc"] == params.tolist()
    expected = kendalltau(saved["est_acc"], saved["true_acc"], variant="b").statistic
    assert saved["history"][-1]["tau_accuracy"] == pytest.approx(expected, nan_ok=True)
    assert math.isnan(saved["history"][0]["tau_alpha"])  # α is uniform during warm-up: P_s ranks nothing
    arch = json.loads((tmp_path / "export" / "architecture.json").read_text())
    assert len(arch["paths"]) == 3 and arch["paths"][0] == arch["arch"]  # threshold 1 keeps every op; capped at 3


def test_a_reference_table_gives_the_ranked_set_and_the_alpha_ground_truth(tmp_path):
    space = SMALL_NB201
    archs = [space.to_string(a) for a in space.sample(12, np.random.default_rng(5))]
    table = tmp_path / "table.csv"
    table.write_text("arch,test_acc,protocol\n" + "".join(f"{a},{50 + i},p1\n" for i, a in enumerate(archs)))
    reference = lambda s: TableCostModel(s, table)  # noqa: E731 - text columns are not metrics
    update = ParetoRankAlphaUpdate(n=8, top_n=2, reference=reference)
    ranking = SupernetRanking(reference=reference, num_samples=None, num_batches=1, output_dir=str(tmp_path / "r"))
    trainer = _trainer(tmp_path, 2, [update, ranking], limit_val_batches=1)
    module = _module()
    trainer.fit(module, DigitsDataModule(batch_size=32))
    saved = json.loads((tmp_path / "r" / "ranking.json").read_text())
    assert sorted(saved["archs"]) == sorted(archs) and saved["true_acc"] == [
        50.0 + archs.index(a) for a in saved["archs"]
    ]
    assert update.updates == 2 and all(set(h["front"]) <= set(archs) for h in update.history)  # sampled from the table
    assert not math.isnan(saved["history"][-1]["tau_alpha"])  # α moved: P_s ranks the set
    # after a pruning, only the rows whose ops are all alive are ranked
    layer, op = 0, archs[0].split("|")[1].split("~")[0]
    module.prune_ops([(layer, op)])
    entry = ranking.measure(trainer, module)
    assert entry["n"] == sum(a.split("|")[1].split("~")[0] != op for a in archs)


# ---------------------------------------------------------------------- the command line
def _hwnas(*args, cwd, timeout=1800):
    proc = subprocess.run([HWNAS, *args], cwd=cwd, env=hwnas_env(), capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr


SHORT = [
    "--trainer.max_epochs", "4", "--model.init_args.warmup_epochs", "1", "--trainer.enable_progress_bar", "false",
    "--model.init_args.space.init_args.channels", "4",
    "--trainer.callbacks.init_args.at_epochs", "[2]",
]  # fmt: skip


@pytest.mark.slow
def test_prpnas_digits_config_runs_end_to_end_exports_and_retrains(tmp_path):
    code, out = _hwnas("fit", "--config", str(DIGITS_PRPNAS), *SHORT, "--trainer.logger", "false", cwd=tmp_path)
    assert code == 0, out[-3000:]
    export = tmp_path / "logs" / "prpnas_nb201_digits" / "export"
    arch = json.loads((export / "architecture.json").read_text())
    space = NASBench201Space(channels=4, cells=1)
    space.from_string(arch["arch"])
    assert arch["paths"][0] == arch["arch"] and arch["pruned"]
    assert all(abs(sum(layer.values()) - 1) < 1e-5 for layer in arch["alpha"].values())
    front = json.loads((export / "pareto_set.json").read_text())
    assert front and all(0 <= p["est_acc"] <= 1 and p["latency_ms"] > 0 for p in front)
    costs = [p["latency_ms"] for p in front]
    accs = [p["est_acc"] for p in front]
    assert costs == sorted(costs) and accs == sorted(accs)  # a front: slower only if more accurate
    retrain = yaml.safe_load((export / "retrain.yaml").read_text())
    assert retrain["model"]["init_args"]["backbone"]["init_args"]["arch"] == arch["arch"]
    # NAS-Bench-201's recipe, not the supernet's optimiser: SGD Nesterov lr 0.1, wd 5e-4, cosine, batch 256
    assert (
        retrain["model"]["init_args"]["optimizer"]["init_args"]
        == NASBench201Space.retrain_recipe["optimizer"]["init_args"]
    )
    assert retrain["model"]["init_args"]["scheduler"]["init_args"]["T_max"] == retrain["trainer"]["max_epochs"] == 15
    assert retrain["data"]["init_args"]["batch_size"] == 256
    code, out = _hwnas(
        "fit", "--config", str(export / "retrain.yaml"), "--trainer.max_epochs", "1", "--trainer.logger", "false",
        "--trainer.enable_progress_bar", "false", cwd=tmp_path,
    )  # fmt: skip
    assert code == 0, out[-3000:]
    assert "val/acc=" in out


@pytest.mark.ddp
@pytest.mark.slow
def test_two_cpu_processes_take_identical_alpha_samples_and_pruning(tmp_path):
    out_dir = tmp_path / "ranks"
    code, out = _hwnas(
        "fit", "--config", str(DIGITS_PRPNAS), *SHORT, "--trainer", str(CONFIGS / "trainer" / "ddp.yaml"),
        "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.logger", "false",
        "--trainer.callbacks+=rank_supernet.DumpSupernetState", f"--trainer.callbacks.out_dir={out_dir}",
        cwd=tmp_path,
    )  # fmt: skip
    assert code == 0, out[-3000:]
    ranks = [json.loads((out_dir / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert ranks[0]["pruned"] and ranks[0]["updates"] == 4
    for key in ("alpha", "pruned", "fronts", "records", "updates"):
        assert ranks[0][key] == ranks[1][key], key
    for name, value in ranks[0]["parameter_sums"].items():  # weights still in sync after pruning re-wrapped DDP
        assert value == pytest.approx(ranks[1]["parameter_sums"][name], rel=1e-6, abs=1e-6), name


@pytest.mark.slow
def test_resume_through_the_cli_keeps_the_pruning(tmp_path):
    code, out = _hwnas(
        "fit",
        "--config",
        str(DIGITS_PRPNAS),
        *SHORT,
        "--trainer.max_epochs",
        "3",
        "--trainer.logger",
        "false",
        cwd=tmp_path,
    )
    assert code == 0, out[-3000:]
    code, out = _hwnas(
        "fit", "--config", str(DIGITS_PRPNAS), *SHORT, "--trainer.logger", "false", "--ckpt_path", "last", cwd=tmp_path
    )
    assert code == 0, out[-3000:]
    arch = json.loads((tmp_path / "logs" / "prpnas_nb201_digits" / "export" / "architecture.json").read_text())
    assert arch["pruned"]


def test_callback_state_of_an_older_version_loads_with_defaults():
    """A checkpoint written before a key existed still loads: every key but the generator has a default."""
    update, pruning = ParetoRankAlphaUpdate(seed=5), OperationPruning(seed=6)
    state = np.random.default_rng(9).bit_generator.state
    update.load_state_dict({"rng": state})
    pruning.load_state_dict({"rng": state})
    assert update.updates == 0 and update.history == [] and update._pending_optimizer_state is None
    assert pruning.records == [] and update.rng.bit_generator.state == pruning.rng.bit_generator.state == state
    update.load_state_dict({})  # nothing at all: the callback keeps its own seeded generator
    assert update.rng.bit_generator.state == state


def test_an_adam_alpha_state_of_an_older_checkpoint_starts_the_sgd_afresh():
    """Before α's default optimiser was SGD, checkpoints held Adam's state: it is dropped with a warning."""
    import types

    module = _module()
    adam = torch.optim.Adam([module.alpha], lr=0.05)
    module.alpha.grad = torch.ones_like(module.alpha)
    adam.step()
    update = ParetoRankAlphaUpdate()
    update.load_state_dict({"optimizer": adam.state_dict()})
    with pytest.warns(UserWarning, match="optimiser state is not a SGD's; α's optimiser starts afresh"):
        update.on_fit_start(types.SimpleNamespace(), module)
    assert isinstance(update.optimizer, torch.optim.SGD) and not update.optimizer.state
    sgd = ParetoRankAlphaUpdate()
    saved = torch.optim.SGD([module.alpha], lr=2.0, momentum=0.9)
    saved.step()
    sgd.load_state_dict({"optimizer": saved.state_dict()})
    sgd.on_fit_start(types.SimpleNamespace(), module)
    assert torch.equal(
        sgd.optimizer.state[module.alpha]["momentum_buffer"], saved.state[module.alpha]["momentum_buffer"]
    )
