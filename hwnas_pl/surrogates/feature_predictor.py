"""Hardware-cost predictors: XGBoost or MLP regressors from a space's architecture features (thesis §2.x, Fig 2.10).

The thesis compares a LUT, an analytical model and two predictors (MLP, XGBoost) trained on measured latencies,
and finds the predictors best. Here a predictor learns ``metric`` (e.g. ``latency_ms``) from
:meth:`~hwnas_pl.spaces.base.SearchSpace.features` of measured architectures, reports RMSE and Kendall tau-b on
held-out ones, and then serves as a cost model (a :class:`~hwnas_pl.surrogates.base.Surrogate`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hwnas_pl.errors import ConfigError
from hwnas_pl.evaluators.base import register_cost_model
from hwnas_pl.pareto import kendall_tau
from hwnas_pl.spaces.base import SearchSpace
from hwnas_pl.surrogates.base import FEATURES, Surrogate, check_trained_for, feature_matrix

__all__ = ["FEATURES", "MODELS", "FeaturePredictor", "check_trained_for", "feature_matrix"]

MODELS = ("xgboost", "mlp")


@register_cost_model("predictor")
class FeaturePredictor(Surrogate):
    """A regressor of one hardware metric from architecture features (a :class:`Surrogate`).

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

    label = "Predictor"

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
        self.metric = metric
        self.targets = (metric,)
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

    def _as_targets(self, archs: Sequence[Any], targets: Sequence[float] | Mapping[str, Any]) -> dict[str, Any]:
        if isinstance(targets, Mapping):
            return dict(targets)
        y = np.asarray(targets, dtype=float)
        if y.shape != (len(archs),) or not np.isfinite(y).all():
            raise ConfigError(f"fit() needs one finite target per architecture, got {y.shape} for {len(archs)}.")
        return {self.metric: y}

    def fit(self, archs: Sequence[Any], targets: Sequence[float] | Mapping[str, Any]) -> FeaturePredictor:
        """Train on measured ``targets`` of ``archs`` (values, or ``{metric: values}``)."""
        return super().fit(archs, self._as_targets(archs, targets))

    def fine_tune(self, archs: Sequence[Any], targets: Sequence[float] | Mapping[str, Any]) -> FeaturePredictor:
        """Add measured architectures and retrain on the whole set."""
        return super().fine_tune(archs, self._as_targets(archs, targets))

    def _fit(self, archs: list[Any], targets: dict[str, np.ndarray]) -> None:
        self.estimator = self._new_estimator().fit(self.feature_matrix(archs), targets[self.metric])

    def is_trained(self) -> bool:
        return self.estimator is not None

    def score(self, archs: Sequence[Any], targets: Sequence[float]) -> dict[str, float]:
        """RMSE and Kendall tau-b of the predictions against ``targets`` (held-out architectures)."""
        y = np.asarray(targets, dtype=float)
        pred = self.evaluate(archs)[self.metric]
        return {"rmse": float(np.sqrt(np.mean((pred - y) ** 2))), "kendall_tau": kendall_tau(pred, y)}

    def trained_for(self) -> dict[str, Any]:
        return {"space": self.space.name, "metric": self.metric, "input_shape": self.input_shape,
                "op_counts": self.op_counts}  # fmt: skip

    def _model_state(self) -> dict[str, Any]:
        return {"model": self.model, "estimator": self.estimator}

    def _load_model_state(self, state: Mapping[str, Any]) -> None:
        self.model, self.estimator = state["model"], state["estimator"]

    def _evaluate(self, archs: list[Any], out: dict[str, np.ndarray]) -> None:
        if self.estimator is None:
            raise ConfigError(
                f"The {self.model} predictor of {self.metric} is not trained; call fit() or give a saved one's path."
            )
        out[self.metric] = np.asarray(self.estimator.predict(self.feature_matrix(archs)), dtype=float)
