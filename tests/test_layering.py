"""Guards: the core imports neither Lightning nor aihwkit; heavy libraries stay off the paths that do not need them."""

import subprocess
import sys

import pytest

#: plain PyTorch/NumPy: spaces, cost models, pareto, search, PRP-NAS maths, loss terms and transforms, surrogates
CORE = [
    "hwnas_pl.spaces",
    "hwnas_pl.evaluators.base",
    "hwnas_pl.nn.counting",
    "hwnas_pl.evaluators.lut",
    "hwnas_pl.evaluators.latency",
    "hwnas_pl.surrogates.feature_predictor",
    "hwnas_pl.evaluators.nasbench201",
    "hwnas_pl.pareto",
    "hwnas_pl.prpnas",
    "hwnas_pl.search.minimize",
    "hwnas_pl.search.runner",
    "hwnas_pl.search.callbacks",
    "hwnas_pl.search.strategies",
    "hwnas_pl.search.constraints",
    "hwnas_pl.search.analognas_evolution",
    "hwnas_pl.surrogates",
    "hwnas_pl.nn",
    "hwnas_pl.nn.reuse",
    "hwnas_pl.nn.similarity_regularization",
    "hwnas_pl.models",
    "hwnas_pl.distributed",
    "hwnas_pl.rng",
    "hwnas_pl.evaluators",
]


def _imported(statement: str) -> set[str]:
    code = f"{statement}; import sys; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    return set(out.stdout.split())


@pytest.mark.parametrize("module", CORE)
def test_core_imports_neither_lightning_nor_aihwkit(module):
    loaded = _imported(f"import {module}")
    assert not loaded & {"lightning", "pytorch_lightning", "aihwkit"}, (
        f"{module} pulled in {loaded & {'lightning', 'aihwkit'}}"
    )


def test_the_package_and_the_search_pay_for_no_heavy_library():
    loaded = _imported("import hwnas_pl, hwnas_pl.search.runner")
    assert not loaded & {"lightning", "aihwkit", "botorch", "monai", "xgboost", "wandb", "timm"}


def test_hwnas_help_imports_no_aihwkit_botorch_or_monai():
    code = (
        "import sys\nfrom hwnas_pl.cli import cli_main\ntry:\n    cli_main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    loaded = set(out.stdout.split()[-1000:])
    assert "hwnas" in out.stdout and not loaded & {"aihwkit", "botorch", "monai"}
