"""Hardware-cost predictors: XGBoost or MLP regressors from a space's architecture features (thesis §2.x, Fig 2.10).

The thesis compares a LUT, an analytical model and two predictors (MLP, XGBoost) trained on measured latencies,
and finds the predictors best. Here a predictor learns ``metric`` (e.g. ``latency_ms``) from
:meth:`~hwnas_pl.spaces.base.SearchSpace.features` of measured architectures, reports RMSE and Kendall tau-b on
held-out ones, and then serves as a cost model.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hwnas_pl.errors import ConfigError, UserInputError
from hwnas_pl.evaluators.base import CostModel, register_cost_model
from hwnas_pl.pareto import kendall_tau
from hwnas_pl.spaces.base import SearchSpace

FEATURES = ("flops", "params", "n_convs", "input_size", "depth", "first_channels", "last_channels", "downsamplings")
MODELS = ("xgboost", "mlp")


def feature_matrix(
    space: SearchSpace,
    archs: Sequence[Any],
    input_shape: Sequence[int] = (3, 32, 32),
    num_classes: int = 10,
    op_counts: bool = True,
    encoding: bool = False,
) -> np.ndarray:
    """One row of model inputs per architecture.

    :data:`FEATURES`, then op-type counts (column sums of the space's ``graph()`` one-hot) when ``op_counts``, then
    :meth:`~hwnas_pl.spaces.base.SearchSpace.encoding_features` when ``encoding``.
    """
    rows = [space.features(a, input_shape, num_classes) for a in archs]
    parts = [np.array([[row[f] for f in FEATURES] for row in rows], dtype=float).reshape(len(archs), len(FEATURES))]
    if op_counts:
        parts.append(np.array([space.graph(a)[1].sum(0) for a in archs], dtype=float).reshape(len(archs), -1))
    if encoding:
        parts.append(np.array([space.encoding_features(a) for a in archs], dtype=float).reshape(len(archs), -1))
    return np.concatenate(parts, axis=1)


def check_trained_for(label: str, path: Path, saved: Mapping[str, Any], wanted: Mapping[str, Any]) -> None:
    """Raise UserInputError naming every setting in which a saved model (``saved``) differs from ``wanted``."""
    differ = {k: (saved.get(k), v) for k, v in wanted.items() if saved.get(k) != v}
    if differ:
        what = "; ".join(f"{k}: {a!r} in the file, {b!r} here" for k, (a, b) in differ.items())
        raise UserInputError(f"{label} '{path}' was trained for something else ({what}).")


@register_cost_model("predictor")
class FeaturePredictor(CostModel):
    """A regressor of one hardware metric from architecture features.

    Args:
        space: the search space.
        metric: name of the predicted metric (minimised).
        model: ``"xgboost"`` (gradient-boosted trees) or ``"mlp"`` (scikit-learn MLP on standardised features).
        path: a predictor saved with :meth:`save`, loaded when given.
        input_shape: input of the networks whose features are computed.
        num_classes: classifier outputs.
        seed: seed of the regressor.
        op_counts: append how often each op type occurs (column sums of the space's ``graph()`` one-hot) to the
            architecture features; the features alone barely tell a pooling cell from a skip cell.
    """

    def __init__(
        self,
        space: SearchSpace,
        metric: str = "latency_ms",
        model: str = "xgboost",
        path: str | None = None,
        input_shape: Sequence[int] = (3, 32, 32),
        num_classes: int = 10,
        seed: int = 0,
        op_counts: bool = True,
    ) -> None:
        super().__init__(space)
        self.op_counts = op_counts
        if model not in MODELS:
            raise ConfigError(f"Unknown predictor model '{model}'; expected one of: {', '.join(MODELS)}.")
        self.metric, self.model, self.seed = metric, model, seed
        self.input_shape, self.num_classes = tuple(int(s) for s in input_shape), num_classes
        self.directions = {metric: "min"}
        self.estimator: Any = None
        if path is not None:
            self.load(path)

    def feature_matrix(self, archs: Sequence[Any]) -> np.ndarray:
        """Rows of :data:`FEATURES` for ``archs``, followed by the op-type counts when ``op_counts``."""
        return feature_matrix(self.space, archs, self.input_shape, self.num_classes, op_counts=self.op_counts)

    def _new_estimator(self) -> Any:
        if self.model == "xgboost":
            from xgboost import XGBRegressor

            return XGBRegressor(
                n_estimators=400, max_depth=5, learning_rate=0.05, subsample=0.9, random_state=self.seed
            )
        from sklearn.compose import TransformedTargetRegressor
        from sklearn.neural_network import MLPRegressor
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        mlp = MLPRegressor(hidden_layer_sizes=(64, 64), max_iter=2000, early_stopping=True, random_state=self.seed)
        return TransformedTargetRegressor(make_pipeline(StandardScaler(), mlp), transformer=StandardScaler())

    def fit(self, archs: Sequence[Any], targets: Sequence[float]) -> FeaturePredictor:
        """Train on measured ``targets`` of ``archs``."""
        y = np.asarray(targets, dtype=float)
        if y.shape != (len(archs),) or not np.isfinite(y).all():
            raise ConfigError(f"fit() needs one finite target per architecture, got {y.shape} for {len(archs)}.")
        self.estimator = self._new_estimator().fit(self.feature_matrix(archs), y)
        return self

    def score(self, archs: Sequence[Any], targets: Sequence[float]) -> dict[str, float]:
        """RMSE and Kendall tau-b of the predictions against ``targets`` (held-out architectures)."""
        y = np.asarray(targets, dtype=float)
        pred = self.evaluate(archs)[self.metric]
        return {"rmse": float(np.sqrt(np.mean((pred - y) ** 2))), "kendall_tau": kendall_tau(pred, y)}

    def save(self, path: str | Path) -> Path:
        """Pickle the trained predictor with what it was trained for."""
        if self.estimator is None:
            raise ConfigError("Only a trained predictor can be saved; call fit() first.")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"space": self.space.name, "metric": self.metric, "model": self.model, "op_counts": self.op_counts}
        path.write_bytes(pickle.dumps({**meta, "input_shape": self.input_shape, "estimator": self.estimator}))
        return path

    def load(self, path: str | Path) -> None:
        """Load a predictor written by :meth:`save` (a pickle: load only files you trust)."""
        path = Path(path)
        if not path.is_file():
            raise UserInputError(
                f"Predictor '{path}' does not exist; expected a file written by FeaturePredictor.save."
            )
        data = pickle.loads(path.read_bytes())
        wanted = {
            "space": self.space.name,
            "metric": self.metric,
            "input_shape": self.input_shape,
            "op_counts": self.op_counts,
        }
        check_trained_for("Predictor", path, data, wanted)
        self.model, self.estimator = data["model"], data["estimator"]

    def _evaluate(self, archs: list[Any], out: dict[str, np.ndarray]) -> None:
        if self.estimator is None:
            raise ConfigError(
                f"The {self.model} predictor of {self.metric} is not trained; call fit() or give a saved one's path."
            )
        out[self.metric] = np.asarray(self.estimator.predict(self.feature_matrix(archs)), dtype=float)
