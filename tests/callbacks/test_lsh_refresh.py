"""LSH clusters refreshed during SA-training (Algorithm 1: per epoch; §3.2: per iteration): the hyperplanes each
training step hashes with, the layer's own at validation and after training, and the same draws after a resume."""

import lightning.pytorch as pl
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from hwnas_pl.callbacks import LSHRefresh
from hwnas_pl.errors import ConfigError
from hwnas_pl.nn.reuse import ReuseLinear, projections, to_reuse


class Tiny(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net, _ = to_reuse(nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2)), seed=5,
                               default={"input_dim": 4, "hash_size": 3})  # fmt: skip
        self.seen: list[tuple[str, int, int, list[torch.Tensor]]] = []

    def _record(self, stage):
        planes = [m.planes.clone() for m in self.net if isinstance(m, ReuseLinear)]
        self.seen.append((stage, self.current_epoch, self.global_step, planes))

    def training_step(self, batch, _):
        self._record("train")
        return nn.functional.cross_entropy(self.net(batch[0]), batch[1])

    def validation_step(self, batch, _):
        self._record("val")

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _fit(tmp_path, every, epochs, resume=None):
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(12, 8), torch.randint(0, 2, (12,)))
    model = Tiny()
    trainer = pl.Trainer(max_epochs=epochs, callbacks=[LSHRefresh(every)], default_root_dir=tmp_path, logger=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)  # fmt: skip
    trainer.fit(model, DataLoader(data, batch_size=4), DataLoader(data, batch_size=12), ckpt_path=resume)
    return model, trainer


def _own(model):
    return [projections(m.input_dim, m.hash_size, m.seed) for m in model.net if isinstance(m, ReuseLinear)]


@pytest.mark.parametrize("every", ["epoch", "step"])
def test_hyperplanes_are_redrawn_for_training_and_the_layers_own_elsewhere(tmp_path, every):
    model, _ = _fit(tmp_path, every, epochs=2)
    own = _own(model)
    seeds = [m.seed for m in model.net if isinstance(m, ReuseLinear)]
    assert seeds == [6, 8]  # seed + index in named_modules (the Sequential itself is 0)
    train = [s for s in model.seen if s[0] == "train"]
    assert len(train) == 6 and all(s[0] == "val" for s in model.seen if s not in train)
    for stage, epoch, step, planes in model.seen:
        k = epoch if every == "epoch" else step
        expected = own if stage == "val" else [projections(4, 3, s + 1_000_003 * (k + 1)) for s in (6, 8)]
        assert all(torch.equal(p, e) for p, e in zip(planes, expected))
    distinct = {tuple(s[3][0].flatten().tolist()) for s in train}
    assert len(distinct) == (2 if every == "epoch" else 6)
    assert all(torch.equal(m.planes, o) for m, o in zip((m for m in model.net if isinstance(m, ReuseLinear)), own))


def test_a_resumed_run_draws_what_the_uninterrupted_one_drew(tmp_path):
    whole, _ = _fit(tmp_path / "whole", "step", epochs=2)
    _, first = _fit(tmp_path / "part", "step", epochs=1)
    resumed, _ = _fit(tmp_path / "part", "step", epochs=2, resume=first.checkpoint_callback.best_model_path)
    late = [s for s in whole.seen if s[0] == "train" and s[1] == 1]
    again = [s for s in resumed.seen if s[0] == "train"]
    assert [s[2] for s in again] == [s[2] for s in late] == [3, 4, 5]
    assert all(torch.equal(a, b) for x, y in zip(again, late) for a, b in zip(x[3], y[3]))


def test_bad_settings_and_a_model_without_reuse_layers_say_so():
    with pytest.raises(ConfigError, match="LSHRefresh every must be one of epoch, step, got 'batch'"):
        LSHRefresh("batch")
    with pytest.raises(ConfigError, match="LSHRefresh found no reuse layer in the model; add a ReuseTransform"):
        LSHRefresh().setup(None, pl.LightningModule(), "fit")
