"""The PRP-NAS export: the searched architectures, the estimated Pareto set and a retraining config."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import yaml
from typing_extensions import override

from hwnas_pl.callbacks.prpnas_sampling import DIRECTIONS, evaluate_sample, supernet_of
from hwnas_pl.distributed import write_on_rank_zero
from hwnas_pl.io import write_atomic
from hwnas_pl.modules.supernet_module import SupernetModule
from hwnas_pl.pareto import pareto_ranks


class SupernetExport(L.Callback):
    """Write the searched architectures, the Pareto set and a retraining config when training ends (thesis §3.3).

    Files in ``output_dir`` (default ``<trainer.default_root_dir>/export``):

    - ``architecture.json``: the argmax(α) architecture, α per layer (normalised), and every path whose ops all
      have α within ``threshold`` of their layer's largest (at most ``max_paths``; the thesis keeps several paths
      where α values are close).
    - ``pareto_set.json``: the non-dominated sub-networks of a fresh sample of ``num_samples`` (plus the argmax
      path), each as ``{arch, est_acc, <cost metric>}`` in the space's string format.
    - ``retrain.yaml``: ``hwnas fit --config retrain.yaml`` trains the argmax architecture from scratch with the
      task's module (:class:`~hwnas_pl.modules.ClassifierModule` for classification) on the same data, with the
      space's ``retrain_recipe`` when it has one (NAS-Bench-201's: SGD Nesterov lr 0.1, cosine, wd 5e-4, batch
      256) and the supernet's optimiser otherwise.

    The ranking-quality measure (Kendall tau against a reference, every epoch) is
    :class:`~hwnas_pl.callbacks.SupernetRanking`'s ``ranking.json``.

    Args:
        output_dir: where to write.
        num_samples: sub-networks sampled for the Pareto set and the ranking (capped at the alive space's size).
        num_batches: held-out batches per accuracy estimate.
        threshold: α (normalised) within this of the layer's largest keeps an op in the exported paths.
        max_paths: most paths written to ``architecture.json``.
        retrain_epochs: ``trainer.max_epochs`` in ``retrain.yaml``.
        seed: seed of the sampler.
    """

    def __init__(
        self,
        output_dir: str | None = None,
        num_samples: int = 100,
        num_batches: int = 4,
        threshold: float = 0.05,
        max_paths: int = 64,
        retrain_epochs: int = 200,
        seed: int = 3,
    ) -> None:
        self.output_dir = output_dir
        self.num_samples, self.num_batches = num_samples, num_batches
        self.threshold, self.max_paths = threshold, max_paths
        self.retrain_epochs = retrain_epochs
        self.seed = seed
        self.results: dict[str, Any] = {}

    @override
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.export(trainer, supernet_of(pl_module, "SupernetExport"))

    def export(self, trainer: L.Trainer, module: SupernetModule) -> Path:
        """Evaluate and write the files; returns the output folder."""
        out = Path(self.output_dir) if self.output_dir else Path(trainer.default_root_dir) / "export"
        rng = np.random.default_rng(self.seed)
        paths, objectives = evaluate_sample(module, self.num_samples, rng, self.num_batches)
        best = module.argmax_path()
        if not (paths == best).all(axis=1).any():
            paths = np.vstack([paths, best])
            acc = module.estimate_accuracy(best[None], module.heldout_batches(self.num_batches))
            objectives = np.vstack([objectives, [acc[0], module.costs(best[None])[0]]])
        ranks = pareto_ranks(objectives, DIRECTIONS)
        metric = module.cost_metric
        architecture = self._architecture(module, best, objectives[(paths == best).all(axis=1)][0])
        pareto_set = [
            {"arch": module.arch_string(paths[i]), "est_acc": float(objectives[i, 0]), metric: float(objectives[i, 1])}
            for i in np.flatnonzero(ranks == 1)[np.argsort(objectives[ranks == 1, 1])]
        ]
        self.results = {"architecture": architecture, "pareto_set": pareto_set}

        def write() -> None:
            out.mkdir(parents=True, exist_ok=True)
            write_atomic(out / "architecture.json", json.dumps(architecture, indent=1))
            write_atomic(out / "pareto_set.json", json.dumps(pareto_set, indent=1))
            write_atomic(out / "retrain.yaml", self._retrain_config(trainer, module, architecture["arch"], out))
            summary = {"export/pareto_size": len(pareto_set), "export/argmax_est_acc": architecture["est_acc"]}
            for logger in trainer.loggers:
                logger.log_metrics(summary, step=trainer.global_step)

        write_on_rank_zero(trainer, write)
        return out

    def _architecture(self, module: SupernetModule, best: np.ndarray, objectives: np.ndarray) -> dict[str, Any]:
        probs = module.alpha_probs().detach().cpu().numpy()
        alive = module.alive_indices()
        near = [
            [i for i in ops if probs[layer, i] >= probs[layer].max() - self.threshold]
            for layer, ops in enumerate(alive)
        ]
        ordered = [[int(best[layer]), *(i for i in ops if i != best[layer])] for layer, ops in enumerate(near)]
        paths = list(itertools.islice(itertools.product(*ordered), self.max_paths))  # the argmax path first
        return {
            "arch": module.arch_string(best),
            "est_acc": float(objectives[0]),
            module.cost_metric: float(objectives[1]),
            "alpha": {
                f"{layer}": {module.supernet.choices[layer][i]: round(float(probs[layer, i]), 6) for i in ops}
                for layer, ops in enumerate(alive)
            },
            "threshold": self.threshold,
            "paths": [module.arch_string(p) for p in paths],
            "pruned": [[layer, op] for layer, op in module.pruned],
        }

    def _retrain_config(self, trainer: L.Trainer, module: SupernetModule, arch: str, out: Path) -> str:
        datamodule = trainer.datamodule
        data = None
        if datamodule is not None:
            data = {"class_path": f"{type(datamodule).__module__}.{type(datamodule).__qualname__}"}
            hparams = dict(getattr(datamodule, "hparams", {}))
            data["init_args"] = {k: v for k, v in hparams.items() if not k.startswith("_")}
        backbone = {"class_path": "hwnas_pl.spaces.ArchNetwork",
                    "init_args": {"space": module.space.config(), "arch": arch}}  # fmt: skip
        model = module.task.retrain_model(backbone)  # the task's own module: classifier, segmentation, regression
        recipe = getattr(module.space, "retrain_recipe", None)
        if recipe is not None:  # the space's own recipe (NAS-Bench-201's), its cosine over retrain_epochs
            model["init_args"]["optimizer"] = recipe["optimizer"]
            scheduler = {**recipe["scheduler"], "init_args": {**recipe["scheduler"]["init_args"]}}
            if "T_max" in scheduler["init_args"]:
                scheduler["init_args"]["T_max"] = self.retrain_epochs
            model["init_args"]["scheduler"] = scheduler
            if data is not None and "batch_size" in data["init_args"]:
                data["init_args"]["batch_size"] = recipe["batch_size"]
        elif isinstance(module.hparams.get("optimizer"), dict):
            model["init_args"]["optimizer"] = module.hparams["optimizer"]
        config = {
            "seed_everything": 42,
            "trainer": {
                "default_root_dir": str(out / "retrain"),
                "max_epochs": self.retrain_epochs,
                "callbacks": [
                    {
                        "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                        "init_args": {"dirpath": str(out / "retrain" / "checkpoints"), "filename": "last"},
                    }
                ],
            },
            "model": model,
        }
        if data is not None:
            config["data"] = data
        header = (
            f"# Retrain the PRP-NAS argmax architecture from scratch:\n#   hwnas fit --config {out / 'retrain.yaml'}\n"
        )
        return header + yaml.safe_dump(config, sort_keys=False)
