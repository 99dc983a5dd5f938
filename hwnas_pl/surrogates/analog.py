"""AnalogNAS surrogate (thesis §5.3.2): an XGBoost ranker of 1-day analog accuracy and regressors of AVM and σ.

Three gradient-boosted tree models share one input, :func:`~hwnas_pl.surrogates.feature_predictor.feature_matrix` of the
space (architecture features, op counts and :meth:`~hwnas_pl.spaces.base.SearchSpace.encoding_features`):

- ``acc_1d_score``: a ranking score of the accuracy one day after programming, trained with the pairwise hinge
  loss of Eq. 5.2, read as ``L = Σ_{y_i > y_j} max(0, m − (P(a_i) − P(a_j)))`` with margin ``m = 0.1`` ([AMBIG]:
  the thesis prints ``m − P(a_i) − P(a_j)``). Only its order means anything. ``loss: pairwise`` uses XGBoost's
  own ``rank:pairwise`` instead.
- ``acc_1d``: the 1-day accuracy in points, the score mapped through an isotonic (monotone) regression of the
  measured accuracies on the ranker's scores of the training architectures. Eq. 5.3's fitness ACC/σ needs an
  accuracy, which a rank score is not ([AMBIG]: the thesis does not say how it turns ranks into ACC); the map is
  monotone, so the order is the ranker's.
- ``avm``: accuracy variation over one month, ``acc(1 s) − acc(30 d)`` in points, squared error.
- ``sigma_1d``: standard deviation of the 1-day accuracy over drift trials, squared error.

Training data is a list of architectures with measured ``acc_1d``, ``avm`` and ``sigma_1d``: cells of the
NAS-Bench-201 analog table (``train_data: nasbench201``), or a CSV with columns ``arch,acc_1d,avm,sigma_1d``
(``history.csv`` of a search whose evaluator trained networks with :class:`~hwnas_pl.modules.AnalogModule`).

**Augmentation** (thesis §5.3.2: each architecture also trained with weight-noise std 0.1–5.0 and tile sizes 256
and 512). With ``conditions: {weight_noise: 0.15, tile_size: 512}`` the training rows carry the noise and tile
size they were measured under (CSV columns of those names, e.g. the ``augment_csv`` an
:class:`~hwnas_pl.evaluators.analog_training.AnalogTrainingEvaluator` with ``augment`` writes), the models take
them as two more inputs, and predictions are made at the given operating point. Rows without them (measurements
of a search at that point, fine-tuning) are taken at the operating point.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hwnas_pl.errors import ConfigError, UserInputError
from hwnas_pl.evaluators.base import register_cost_model
from hwnas_pl.pareto import kendall_tau
from hwnas_pl.spaces.base import SearchSpace
from hwnas_pl.surrogates.base import Surrogate, feature_matrix

#: What the surrogate learns, in the column names training files use.
TARGETS = ("acc_1d", "avm", "sigma_1d")
LOSSES = ("hinge", "pairwise")
#: the measurement conditions the augmented surrogate takes as inputs (thesis §5.3.2)
CONDITIONS = ("weight_noise", "tile_size")


def pairwise_hinge(margin: float = 0.1):
    """XGBoost objective of Eq. 5.2: ``Σ_{y_i > y_j} max(0, m − (P_i − P_j))`` over every ordered pair.

    Returns ``(gradient, hessian)`` per item, both divided by ``n - 1``. The hinge has no curvature, so the
    hessian is a stand-in: the share of other items each item forms a pair with. A leaf's Newton step is then
    the share of its pairs still inside the margin, with the sign that pushes them apart.
    """

    def objective(predt: np.ndarray, dtrain: Any) -> tuple[np.ndarray, np.ndarray]:
        y = dtrain.get_label()
        n = max(len(y) - 1, 1)
        better = y[:, None] > y[None, :]  # pairs (i, j) with y_i > y_j
        active = better & (predt[:, None] - predt[None, :] < margin)
        grad = (active.sum(axis=0) - active.sum(axis=1)).astype(np.float64) / n
        hess = (better | better.T).sum(axis=1).astype(np.float64) / n + 1e-6
        return grad, hess

    return objective


@register_cost_model("analog_surrogate")
class AnalogSurrogate(Surrogate):
    """Predicts ``acc_1d_score`` (maximise), ``avm`` and ``sigma_1d`` (minimise) of a space's architectures.

    Args:
        space: the search space.
        path: a surrogate saved with :meth:`save`, loaded when given.
        train_data: fit at construction from ``"nasbench201"`` (the analog table) or a CSV file with columns
            ``arch,acc_1d,avm,sigma_1d``.
        n_train: architectures drawn (seeded) from ``train_data`` (all of them when larger).
        loss: ``"hinge"`` (Eq. 5.2) or ``"pairwise"`` (XGBoost's ``rank:pairwise``) for the accuracy ranker.
        margin: ``m`` of Eq. 5.2.
        rounds: boosting rounds of each model.
        max_depth, learning_rate, subsample, colsample: XGBoost tree settings.
        fine_tune_rounds: rounds added by :meth:`fine_tune`.
        input_shape, num_classes: the networks whose features are computed.
        seed: seed of the tree models and of the draw from ``train_data``.
        conditions: the operating point ``{weight_noise: ..., tile_size: ...}`` (either or both) of an augmented
            surrogate (see the module docstring); ``None``: architecture inputs only.
    """

    directions = {"acc_1d_score": "max", "acc_1d": "max", "avm": "min", "sigma_1d": "min"}
    label = "Surrogate"
    targets = TARGETS

    def __init__(
        self,
        space: SearchSpace,
        path: str | None = None,
        train_data: str | None = None,
        n_train: int = 1000,
        loss: str = "hinge",
        margin: float = 0.1,
        rounds: int = 800,
        max_depth: int = 6,
        learning_rate: float = 0.05,
        subsample: float = 0.8,
        colsample: float = 0.5,
        fine_tune_rounds: int = 100,
        input_shape: Sequence[int] = (3, 32, 32),
        num_classes: int = 10,
        seed: int = 0,
        conditions: Mapping[str, float] | None = None,
    ) -> None:
        unknown = sorted(set(conditions or {}) - set(CONDITIONS))
        if unknown:
            raise ConfigError(f"Unknown surrogate condition '{unknown[0]}'; expected some of: {', '.join(CONDITIONS)}.")
        self.conditions = {c: float(conditions[c]) for c in CONDITIONS if c in (conditions or {})}
        self.targets = TARGETS + tuple(self.conditions)  # conditions travel with the measurements
        super().__init__(space)
        if loss not in LOSSES:
            raise ConfigError(f"Unknown surrogate loss '{loss}'; expected one of: {', '.join(LOSSES)}.")
        self.loss, self.margin, self.rounds, self.fine_tune_rounds = loss, margin, rounds, fine_tune_rounds
        self.tree = {"max_depth": max_depth, "eta": learning_rate, "subsample": subsample,
                     "colsample_bytree": colsample, "min_child_weight": 1.0, "seed": seed, "seed_per_iteration": True,
                     "nthread": 0}  # fmt: skip
        self.input_shape, self.num_classes, self.seed = tuple(int(s) for s in input_shape), num_classes, seed
        self.boosters: dict[str, Any] = {}
        #: isotonic map score -> 1-day accuracy, as (scores, accuracies) knots interpolated linearly
        self.calibration: tuple[np.ndarray, np.ndarray] | None = None
        if path is not None:
            self.load(path)
        elif train_data is not None:
            archs, targets = load_training_data(space, train_data, n_train, seed, tuple(self.conditions))
            self.fit(archs, targets)

    # ------------------------------------------------------------------ training
    def features(self, archs: Sequence[Any], conditions: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """The model input of ``archs``: architecture features, then the conditions (default: the operating point)."""
        X = feature_matrix(self.space, archs, self.input_shape, self.num_classes, op_counts=True, encoding=True)
        if not self.conditions:
            return X
        given = conditions or {}
        cols = [np.broadcast_to(np.asarray(given.get(c, v), dtype=np.float64), (len(archs),))
                for c, v in self.conditions.items()]  # fmt: skip
        return np.concatenate([X, np.stack(cols, axis=1)], axis=1)

    def check_targets(self, archs: Sequence[Any], targets: Mapping[str, Sequence[float]]) -> dict[str, np.ndarray]:
        """Measured targets as arrays; conditions a row does not give are the operating point's."""
        targets = {**{c: np.full(len(archs), v) for c, v in self.conditions.items()}, **targets}
        out = super().check_targets(archs, targets)
        if len(archs) < 2:
            raise ConfigError(f"The surrogate needs at least 2 architectures to rank, got {len(archs)}.")
        return out

    def _train(self, target: str, X: np.ndarray, y: np.ndarray, rounds: int, init: Any = None) -> Any:
        import xgboost as xgb

        data = xgb.DMatrix(X, label=y)
        if target != "acc_1d":
            return xgb.train({**self.tree, "objective": "reg:squarederror"}, data, rounds, xgb_model=init)
        if self.loss == "hinge":
            return xgb.train(self.tree, data, rounds, obj=pairwise_hinge(self.margin), xgb_model=init)
        data.set_group([len(y)])
        params = {**self.tree, "objective": "rank:pairwise", "lambdarank_pair_method": "mean",
                  "lambdarank_num_pair_per_sample": 8}  # fmt: skip
        return xgb.train(params, data, rounds, xgb_model=init)

    def _fit(self, archs: list[Any], targets: dict[str, np.ndarray]) -> None:
        """Train all three models on measured ``acc_1d``, ``avm``, ``sigma_1d``."""
        X = self.features(archs, targets)
        self.boosters = {t: self._train(t, X, targets[t], self.rounds) for t in TARGETS}
        self.calibration = self._calibrate(X, targets["acc_1d"])

    def _calibrate(self, X: np.ndarray, acc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Knots of the isotonic regression of measured ``acc`` on the ranker's scores of ``X``."""
        import xgboost as xgb
        from sklearn.isotonic import IsotonicRegression

        score = self.boosters["acc_1d"].predict(xgb.DMatrix(X)).astype(np.float64)
        iso = IsotonicRegression(out_of_bounds="clip").fit(score, np.asarray(acc, dtype=np.float64))
        return np.asarray(iso.X_thresholds_, dtype=np.float64), np.asarray(iso.y_thresholds_, dtype=np.float64)

    def fine_tune(self, archs: Sequence[Any], targets: Mapping[str, Sequence[float]]) -> AnalogSurrogate:
        """Add measured architectures to the training set and continue boosting ``fine_tune_rounds`` on all of it.

        Algorithm 6's surrogate update, when its Kendall tau on evaluated members is too low.
        """
        self._require_trained()
        all_archs, all_y = self.merged(archs, targets)
        X = self.features(all_archs, all_y)
        self.boosters = {t: self._train(t, X, all_y[t], self.fine_tune_rounds, self.boosters[t]) for t in TARGETS}
        self.calibration = self._calibrate(X, all_y["acc_1d"])
        self.train_archs, self.train_targets = all_archs, all_y
        return self

    def score(self, archs: Sequence[Any], targets: Mapping[str, Sequence[float]]) -> dict[str, float]:
        """Kendall tau-b of each prediction against measured ``targets`` of held-out ``archs``; RMSEs.

        ``kendall_tau_acc_1d_top10`` is the ranker's tau among the architectures whose measured 1-day accuracy is
        in the top decile of ``archs`` (at least 2), where the EA picks.
        """
        y = self.check_targets(archs, targets)
        pred = self.evaluate(archs)
        top = top_decile(y["acc_1d"])
        return {
            "kendall_tau_acc_1d": kendall_tau(pred["acc_1d_score"], y["acc_1d"]),
            "kendall_tau_acc_1d_top10": kendall_tau(pred["acc_1d_score"][top], y["acc_1d"][top]),
            "rmse_acc_1d": float(np.sqrt(np.mean((pred["acc_1d"] - y["acc_1d"]) ** 2))),
            "kendall_tau_avm": kendall_tau(pred["avm"], y["avm"]),
            "kendall_tau_sigma_1d": kendall_tau(pred["sigma_1d"], y["sigma_1d"]),
            "rmse_avm": float(np.sqrt(np.mean((pred["avm"] - y["avm"]) ** 2))),
            "rmse_sigma_1d": float(np.sqrt(np.mean((pred["sigma_1d"] - y["sigma_1d"]) ** 2))),
        }

    # ------------------------------------------------------------------ prediction
    def _require_trained(self) -> None:
        if not self.boosters:
            raise ConfigError("The analog surrogate is not trained; give train_data, a saved path, or call fit().")

    def evaluate(self, archs: Sequence[Any]) -> dict[str, np.ndarray]:
        """Predictions for ``archs``.

        Raises:
            ConfigError: when an architecture is not of the space the surrogate was trained on.
        """
        checked = []
        for a in archs:
            try:
                checked.append(self.space.validate(a))
            except ConfigError as err:
                raise ConfigError(
                    f"The analog surrogate was trained on the '{self.space.name}' space; {a!r} is not one of its "
                    f"architectures ({err})"
                ) from None
        return super().evaluate(checked)

    def _evaluate(self, archs: list[Any], out: dict[str, np.ndarray]) -> None:
        import xgboost as xgb

        self._require_trained()
        data = xgb.DMatrix(self.features(archs))
        out["acc_1d_score"] = self.boosters["acc_1d"].predict(data)
        out["acc_1d"] = np.interp(out["acc_1d_score"], *self.calibration)
        out["avm"] = self.boosters["avm"].predict(data)
        out["sigma_1d"] = self.boosters["sigma_1d"].predict(data)

    # ------------------------------------------------------------------ persistence (Surrogate.save/load)
    def is_trained(self) -> bool:
        return bool(self.boosters)

    def row_key(self, arch: Any, targets: Mapping[str, np.ndarray], i: int) -> tuple:
        """A row is an (architecture, conditions) measurement: re-measuring it replaces that row only."""
        return (arch, *(float(targets[c][i]) for c in self.conditions))

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a saved model; one saved before the calibration existed is calibrated on its training set."""
        super().load_state_dict(state)
        if self.calibration is None and self.train_archs:
            X = self.features(self.train_archs, self.train_targets)
            self.calibration = self._calibrate(X, self.train_targets["acc_1d"])

    def trained_for(self) -> dict[str, Any]:
        out = {"space": self.space.name, "input_shape": self.input_shape, "num_classes": self.num_classes}
        return out | ({"conditions": tuple(self.conditions)} if self.conditions else {})

    def _model_state(self) -> dict[str, Any]:
        """The three boosters as XGBoost's JSON, and the accuracy calibration's knots."""
        calibration = None if self.calibration is None else [k.tolist() for k in self.calibration]
        return {"boosters": {t: b.save_raw("json") for t, b in self.boosters.items()}, "calibration": calibration}

    def _load_model_state(self, state: Mapping[str, Any]) -> None:
        import xgboost as xgb

        self.boosters = {t: xgb.Booster(model_file=bytearray(raw)) for t, raw in state["boosters"].items()}
        knots = state.get("calibration")
        self.calibration = None if knots is None else tuple(np.asarray(k, dtype=np.float64) for k in knots)


def top_decile(values: np.ndarray) -> np.ndarray:
    """Indices of the ``max(2, ceil(n / 10))`` largest ``values``."""
    k = min(len(values), max(2, int(np.ceil(len(values) / 10))))
    return np.argsort(-np.asarray(values), kind="stable")[:k]


def load_training_data(
    space: SearchSpace, source: str, n: int | None = None, seed: int = 0, conditions: Sequence[str] = ()
) -> tuple[list[Any], dict[str, np.ndarray]]:
    """Architectures and their ``acc_1d``/``avm``/``sigma_1d`` from ``"nasbench201"`` or a CSV file.

    ``n`` rows are drawn without replacement with ``seed`` (all of them when ``n`` is ``None`` or larger).
    ``conditions`` (of :data:`CONDITIONS`) are read from CSV columns of those names as well.

    Raises:
        UserInputError: when the CSV is missing, lacks a column or holds a value that is not a number.
        ConfigError: when the table is asked for by another space, or an architecture is not of ``space``.
    """
    columns = (*TARGETS, *conditions)
    if source == "nasbench201":
        if conditions:
            raise ConfigError(
                "The NAS-Bench-201 analog table was measured under one noise model and tile size; an augmented "
                f"surrogate (conditions: {', '.join(conditions)}) needs a CSV with those columns."
            )
        from hwnas_pl.evaluators.nasbench201 import NASBench201AnalogModel

        model = NASBench201AnalogModel(space)
        archs = list(space.enumerate())
        targets = model.evaluate(archs)
    else:
        archs, targets = _read_csv(space, Path(source), columns)
    rng = np.random.default_rng(seed)
    if n is not None and n < len(archs):
        pick = np.sort(rng.choice(len(archs), size=n, replace=False))
        archs = [archs[i] for i in pick]
        targets = {t: np.asarray(targets[t])[pick] for t in columns}
    return archs, {t: np.asarray(targets[t], dtype=float) for t in columns}


def _read_csv(space: SearchSpace, path: Path, columns: Sequence[str] = TARGETS) -> tuple[list[Any], dict]:
    expected = ",".join(("arch", *columns))
    if not path.is_file():
        raise UserInputError(
            f"Surrogate training data '{path}' does not exist; expected 'nasbench201' or a CSV with columns {expected}."
        )
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("arch", *columns) if c not in (reader.fieldnames or [])]
        if missing:
            raise UserInputError(f"Surrogate training data '{path}' has no column '{missing[0]}'; expected {expected}.")
        archs, values = [], {t: [] for t in columns}
        for line, row in enumerate(reader, start=2):
            try:
                archs.append(space.validate(row["arch"]))
            except ConfigError as err:
                raise ConfigError(f"{path}, line {line}: not an architecture of '{space.name}' ({err})") from None
            for t in columns:
                try:
                    values[t].append(float(row[t]))
                except (TypeError, ValueError):
                    raise UserInputError(f"{path}, line {line}: {t} is {row[t]!r}; expected a number.") from None
    return archs, {t: np.asarray(v) for t, v in values.items()}
