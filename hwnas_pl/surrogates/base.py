"""The one surrogate interface: a trainable evaluator (fit, fine-tune, score, save, load) over a space's features.

A :class:`Surrogate` is a :class:`~hwnas_pl.evaluators.base.CostModel` whose predictions come from a model trained
on measured architectures, so a search uses it like any evaluator. The base keeps the training set
(:attr:`Surrogate.train_archs`, :attr:`Surrogate.train_targets`), so :meth:`Surrogate.fine_tune` can add measured
architectures to it (a re-measured one replaces its old values) and persistence is one :meth:`state_dict` checked
against what the file was trained for. Subclasses implement ``_fit`` (and may override ``fine_tune``), ``_evaluate``,
``_model_state``/``_load_model_state`` and :meth:`Surrogate.trained_for`.
"""

from __future__ import annotations

import pickle
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hwnas_pl.errors import ConfigError, UserInputError
from hwnas_pl.evaluators.base import CostModel
from hwnas_pl.pareto import kendall_tau
from hwnas_pl.spaces.base import SearchSpace


def feature_matrix(
    space: SearchSpace,
    archs: Sequence[Any],
    input_shape: Sequence[int] = (3, 32, 32),
    num_classes: int = 10,
    op_counts: bool = True,
    encoding: bool = False,
) -> np.ndarray:
    """One row of model inputs per architecture (the thesis's "AF" inputs, HW-PR-NAS §3.2).

    :data:`FEATURES` of :meth:`~hwnas_pl.spaces.base.SearchSpace.features`, then op-type counts (column sums of the
    space's ``graph()`` one-hot) when ``op_counts``, then
    :meth:`~hwnas_pl.spaces.base.SearchSpace.encoding_features` when ``encoding``.
    """
    rows = [space.features(a, input_shape, num_classes) for a in archs]
    parts = [np.array([[row[f] for f in FEATURES] for row in rows], dtype=float).reshape(len(archs), len(FEATURES))]
    if op_counts:
        parts.append(np.array([space.graph(a)[1].sum(0) for a in archs], dtype=float).reshape(len(archs), -1))
    if encoding:
        parts.append(np.array([space.encoding_features(a) for a in archs], dtype=float).reshape(len(archs), -1))
    return np.concatenate(parts, axis=1)


FEATURES = ("flops", "params", "n_convs", "input_size", "depth", "first_channels", "last_channels", "downsamplings")


def check_trained_for(label: str, path: Path, saved: Mapping[str, Any], wanted: Mapping[str, Any]) -> None:
    """Raise UserInputError naming every setting in which a saved model (``saved``) differs from ``wanted``."""
    differ = {k: (saved.get(k), v) for k, v in wanted.items() if saved.get(k) != v}
    if differ:
        what = "; ".join(f"{k}: {a!r} in the file, {b!r} here" for k, (a, b) in differ.items())
        raise UserInputError(f"{label} '{path}' was trained for something else ({what}).")


class Surrogate(CostModel):
    """Base class of the trainable evaluators (see the module docstring).

    Args:
        space: the search space.
    """

    #: how messages name it ("Predictor", "Surrogate")
    label: str = "Surrogate"
    #: the measured quantities it learns, in the column names training files use
    targets: tuple[str, ...] = ()

    def __init__(self, space: SearchSpace) -> None:
        super().__init__(space)
        self.train_archs: list[Any] = []
        self.train_targets: dict[str, np.ndarray] = {t: np.zeros(0) for t in self.targets}

    # ------------------------------------------------------------------ TO BE OVERWRITTEN
    def _fit(self, archs: list[Any], targets: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def _model_state(self) -> dict[str, Any]:
        raise NotImplementedError

    def _load_model_state(self, state: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def trained_for(self) -> dict[str, Any]:
        """The settings a saved model must have been trained with to be loaded here (space, inputs, ...)."""
        return {"space": self.space.name}

    def is_trained(self) -> bool:
        return bool(self.train_archs)

    # ------------------------------------------------------------------ training
    def check_targets(self, archs: Sequence[Any], targets: Mapping[str, Sequence[float]]) -> dict[str, np.ndarray]:
        """``targets`` as float arrays, one finite value per architecture for each of :attr:`targets`.

        Raises:
            ConfigError: naming the missing or malformed target.
        """
        missing = [t for t in self.targets if t not in targets]
        if missing:
            raise ConfigError(f"{self.label} targets lack '{missing[0]}'; expected {', '.join(self.targets)}.")
        out = {t: np.asarray(targets[t], dtype=float) for t in self.targets}
        for t, y in out.items():
            if y.shape != (len(archs),) or not np.isfinite(y).all():
                raise ConfigError(f"{self.label} target '{t}' needs one finite value per architecture ({len(archs)}).")
        return out

    def fit(self, archs: Sequence[Any], targets: Mapping[str, Sequence[float]]) -> Surrogate:
        """Train on measured ``targets`` of ``archs`` (the training set is replaced)."""
        archs = [self.space.validate(a) for a in archs]
        y = self.check_targets(archs, targets)
        self._fit(archs, y)
        self.train_archs, self.train_targets = archs, y
        return self

    def row_key(self, arch: Any, targets: Mapping[str, np.ndarray], i: int) -> Hashable:
        """What identifies training row ``i`` (of ``arch``, with ``targets``): a re-measurement replaces its row."""
        return arch

    def merged(self, archs: Sequence[Any], targets: Mapping[str, Sequence[float]]) -> tuple[list[Any], dict]:
        """The training set with ``archs`` added (a re-measured :meth:`row_key` replaces its old values)."""
        archs = [self.space.validate(a) for a in archs]
        y = self.check_targets(archs, targets)
        known = {self.row_key(a, self.train_targets, i): i for i, a in enumerate(self.train_archs)}
        all_archs = list(self.train_archs)
        all_y = {t: np.asarray(self.train_targets[t], dtype=float).copy() for t in self.targets}
        for k, a in enumerate(archs):
            key = self.row_key(a, y, k)
            if key in known:
                for t in self.targets:
                    all_y[t][known[key]] = y[t][k]
            else:
                all_archs.append(a)
                for t in self.targets:
                    all_y[t] = np.append(all_y[t], y[t][k])
        return all_archs, all_y

    def fine_tune(self, archs: Sequence[Any], targets: Mapping[str, Sequence[float]]) -> Surrogate:
        """Add measured architectures to the training set and train on all of it (default: fit again)."""
        all_archs, all_y = self.merged(archs, targets)
        self._fit(all_archs, all_y)
        self.train_archs, self.train_targets = all_archs, all_y
        return self

    def score(self, archs: Sequence[Any], targets: Mapping[str, Sequence[float]]) -> dict[str, float]:
        """Kendall tau-b and RMSE of each prediction against measured ``targets`` of held-out ``archs``.

        Default: every target ``t`` predicted under the metric of the same name.
        """
        y = self.check_targets(archs, targets)
        pred = self.evaluate(archs)
        out: dict[str, float] = {}
        for t in self.targets:
            out[f"kendall_tau_{t}"] = kendall_tau(pred[t], y[t])
            out[f"rmse_{t}"] = float(np.sqrt(np.mean((pred[t] - y[t]) ** 2)))
        return out

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        """The trained model with what it was trained on and for."""
        if not self.is_trained():
            raise ConfigError(f"Only a trained {self.label.lower()} can be saved; call fit() first.")
        return {
            **self.trained_for(),
            **self._model_state(),
            "train_archs": [self.space.to_string(a) for a in self.train_archs],
            "train_targets": self.train_targets,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` (predictions are identical to the saved model's)."""
        self._load_model_state(state)
        self.train_archs = [self.space.validate(a) for a in state.get("train_archs", [])]
        self.train_targets = dict(state.get("train_targets", {t: np.zeros(0) for t in self.targets}))

    def save(self, path: str | Path) -> Path:
        """Pickle :meth:`state_dict`."""
        state = self.state_dict()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(state))
        return path

    def load(self, path: str | Path) -> None:
        """Load a model written by :meth:`save` (a pickle: load only files you trust).

        Raises:
            UserInputError: when the file is missing or was trained for another space or input.
        """
        path = Path(path)
        if not path.is_file():
            raise UserInputError(
                f"{self.label} '{path}' does not exist; expected a file written by {type(self).__name__}.save."
            )
        state = pickle.loads(path.read_bytes())
        check_trained_for(self.label, path, state, self.trained_for())
        self.load_state_dict(state)
