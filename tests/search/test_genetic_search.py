"""HW-EvRSNAS's GA (Algorithm 1): the Eq. 4-5 fitness by hand, the pick against the exact optimum of the
NAS-Bench-201 table under a MACs budget, rejection sampling's draws (Fig. 5), resume, and one-sentence errors."""

import pickle

import numpy as np
import pytest

from hwnas_pl.errors import ConfigError
from hwnas_pl.evaluators.analytic import AnalyticCostModel
from hwnas_pl.evaluators.nasbench201 import NASBench201TableModel
from hwnas_pl.evaluators.tables import TableCostModel
from hwnas_pl.search.constraints import Constraint
from hwnas_pl.search.genetic import GeneticSearch
from hwnas_pl.search.minimize import minimize
from hwnas_pl.spaces import NASBench201Space

SPACE = NASBench201Space()
BUDGET = {"macs": {"<=": 30e6}}


@pytest.fixture(scope="module")
def nb201():
    acc, macs = NASBench201TableModel(SPACE), AnalyticCostModel(SPACE)
    archs = list(SPACE.enumerate())
    a, m = acc.evaluate(archs)["baseline_acc"], macs.evaluate(archs)["macs"]
    return acc, macs, a[m <= 30e6]


def test_fitness_is_phi_plus_linear_penalty(tmp_path):
    archs = SPACE.sample(3, np.random.default_rng(0))
    rows = ["arch,phi,cost"] + [f"{SPACE.to_string(a)},{p},{c}" for a, p, c in zip(archs, (2.0, 2.5, 1.0), (3, 6, 4))]
    (tmp_path / "t.csv").write_text("\n".join(rows))
    table = TableCostModel(SPACE, tmp_path / "t.csv", {"phi": "max", "cost": "min"})
    ga = GeneticSearch(SPACE, population_size=3, generations=0, tournament_size=2)
    res = minimize(SPACE, _Fixed(ga, archs), [table], {"phi": "max"}, {"cost": {"<=": 4.0}}, max_evaluations=3)
    # fitness = phi + (Omega - Psi) when over budget: 2.0, 2.5 + (4 - 6) = 0.5, 1.0
    assert res.strategy["pick"] == {"arch": SPACE.to_string(archs[0]), "fitness": 2.0, "within_budget": True}
    assert np.allclose(ga.fitness, [2.0, 0.5, 1.0])


@pytest.mark.parametrize(
    "costs, pick, fitness, within",
    [((3, 4.2, 4), 0, 2.0, True),  # 2.5 - 0.2 = 2.3 is fittest but over budget: the best within it is picked
     ((5, 4.2, 6), 1, 2.3, False)],  # none within: the fittest, marked
)  # fmt: skip
def test_pick_is_the_fittest_member_within_budget(tmp_path, costs, pick, fitness, within):
    archs = SPACE.sample(3, np.random.default_rng(0))
    rows = ["arch,phi,cost"] + [f"{SPACE.to_string(a)},{p},{c}" for a, p, c in zip(archs, (2.0, 2.5, 1.0), costs)]
    (tmp_path / "t.csv").write_text("\n".join(rows))
    table = TableCostModel(SPACE, tmp_path / "t.csv", {"phi": "max", "cost": "min"})
    ga = GeneticSearch(SPACE, population_size=3, generations=0, tournament_size=2)
    res = minimize(SPACE, _Fixed(ga, archs), [table], {"phi": "max"}, {"cost": {"<=": 4.0}}, max_evaluations=3)
    assert res.strategy["pick"] == pytest.approx(
        {"arch": SPACE.to_string(archs[pick]), "fitness": fitness, "within_budget": within}
    )


class _Fixed:
    """A factory giving the GA whose first population is ``archs`` (to check the fitness by hand)."""

    def __init__(self, ga, archs):
        self.ga, self.archs = ga, archs

    def __call__(self, space):
        self.ga._draw_feasible = lambda n, make: list(self.archs)
        return self.ga


def test_penalty_ga_finds_the_top_of_the_feasible_table(nb201):
    acc, macs, feasible = nb201
    res = minimize(SPACE, GeneticSearch(SPACE, 50, 20), [acc, macs], {"baseline_acc": "max"}, BUDGET,
                   max_evaluations=5000, seed=0, verify=macs)  # fmt: skip
    pick = res.strategy["pick"]
    # the pick is the best feasible member here, so the front adds nothing to verify
    measured = {k: float(v[0]) for k, v in macs.evaluate([pick["arch"]]).items()}
    assert res.verified == [{"role": "pick", "arch": pick["arch"], **measured, "on_true_front": True}]
    value = acc.evaluate([pick["arch"]])["baseline_acc"][0]
    assert macs.evaluate([pick["arch"]])["macs"][0] <= 30e6
    assert value == pytest.approx(pick["fitness"]) and (feasible < value).mean() >= 0.99  # top 1 % of 15,625
    assert res.strategy["samples_drawn"] == 50 + 20 * 49 and res.strategy["initial_samples"] == 50
    assert [b["generation"] for b in res.strategy["best_per_generation"]] == list(range(21))
    assert np.all(np.diff([b["fitness"] for b in res.strategy["best_per_generation"]]) >= 0)  # elitism


def test_rejection_sampling_only_evaluates_feasible_members_and_counts_its_draws(nb201):
    acc, macs, _ = nb201
    tight = {"macs": {"<=": 10e6}}
    res = minimize(SPACE, GeneticSearch(SPACE, 50, 3, constraint_handling="rejection", feasibility=macs),
                   [acc, macs], {"baseline_acc": "max"}, tight, max_evaluations=5000, seed=1)  # fmt: skip
    assert all(row["feasible"] for row in res.history)
    assert res.strategy["initial_samples"] > 50 and res.strategy["samples_drawn"] > res.strategy["initial_samples"]
    # every draw within the budget: exactly the population is drawn (draws past the last one needed not counted)
    ga = GeneticSearch(SPACE, 50, 0, constraint_handling="rejection", feasibility=macs)
    ga.setup(1, 0, constraints=[Constraint("macs", "<=", 1e12)])
    ga.ask()
    assert ga.samples_drawn == 50
    # one draw in k within the budget: about 50 k draws
    fraction = (macs.evaluate(SPACE.sample(3000, np.random.default_rng(9)))["macs"] <= 10e6).mean()
    assert 0.6 < res.strategy["initial_samples"] * fraction / 50 < 1.6
    with pytest.raises(ConfigError, match="Rejection sampling drew .* found only 0 of 50 within macs <= 1"):
        minimize(SPACE, GeneticSearch(SPACE, 50, 1, constraint_handling="rejection", feasibility=macs,
                                      max_samples=500), [acc, macs], {"baseline_acc": "max"},
                 {"macs": {"<=": 1.0}}, max_evaluations=100)  # fmt: skip


def test_resumed_ga_asks_what_an_uninterrupted_one_asks(nb201):
    acc = nb201[0]

    def run(ga, gens):
        for _ in range(gens):
            archs = ga.ask()
            ga.tell(archs, -acc.evaluate(archs)["baseline_acc"][:, None])
        return ga

    straight = run(_setup(GeneticSearch(SPACE, 10, 6)), 5)
    half = run(_setup(GeneticSearch(SPACE, 10, 6)), 2)
    resumed = GeneticSearch(SPACE, 10, 6)
    resumed.load_state_dict(pickle.loads(pickle.dumps(half.state_dict())))
    run(resumed, 3)
    assert straight.ask() == resumed.ask() and straight.summary() == resumed.summary()


def _setup(ga):
    ga.setup(1, seed=3)
    return ga


def test_bad_settings_are_one_sentence():
    with pytest.raises(ConfigError, match="maximises one fitness; the search has 2 objectives"):
        GeneticSearch(SPACE).setup(2, 0)
    with pytest.raises(ConfigError, match="'rejection' needs a feasibility cost model"):
        GeneticSearch(SPACE, constraint_handling="rejection")
    with pytest.raises(ConfigError, match="constraint_handling must be one of penalty, rejection"):
        GeneticSearch(SPACE, constraint_handling="death")
