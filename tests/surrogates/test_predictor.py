import numpy as np
import pytest

from hwnas_pl.errors import ConfigError, UserInputError
from hwnas_pl.evaluators.analytic import AnalyticCostModel
from hwnas_pl.spaces import NASBench201Space
from hwnas_pl.surrogates.feature_predictor import FeaturePredictor


@pytest.fixture(scope="module")
def data():
    space = NASBench201Space()
    archs = space.sample(300, np.random.default_rng(0), "lhs")
    # a latency-like target: a cost per MAC plus a per-conv overhead, as on a real device
    c = AnalyticCostModel(space).evaluate(archs)
    n_convs = np.array([space.features(a)["n_convs"] for a in archs])
    return space, archs, 1e-8 * c["macs"] + 0.02 * n_convs


@pytest.mark.parametrize("model", ["xgboost", "mlp"])
def test_predictor_learns_and_ranks_held_out_architectures(data, model, tmp_path):
    space, archs, y = data
    predictor = FeaturePredictor(space, "latency_ms", model).fit(archs[:240], y[:240])
    scores = predictor.score(archs[240:], y[240:])
    assert scores["kendall_tau"] >= 0.9 and scores["rmse"] < 0.1 * y.std()
    path = predictor.save(tmp_path / "p.pkl")
    again = FeaturePredictor(space, "latency_ms", path=str(path))
    assert np.allclose(again.evaluate(archs[240:])["latency_ms"], predictor.evaluate(archs[240:])["latency_ms"])


def test_predictor_errors(data, tmp_path):
    space, archs, y = data
    with pytest.raises(ConfigError, match="is not trained; call fit"):
        FeaturePredictor(space).evaluate(archs[:2])
    with pytest.raises(ConfigError, match="Unknown predictor model 'lightgbm'"):
        FeaturePredictor(space, model="lightgbm")
    path = FeaturePredictor(space, "energy_mj").fit(archs[:50], y[:50]).save(tmp_path / "e.pkl")
    with pytest.raises(UserInputError, match="was trained for something else \\(metric: 'energy_mj' in the file"):
        FeaturePredictor(space, "latency_ms", path=str(path))
    with pytest.raises(ConfigError, match="one finite target per architecture"):
        FeaturePredictor(space).fit(archs[:3], [1.0, np.nan, 2.0])
