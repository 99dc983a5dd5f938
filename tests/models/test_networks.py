import pytest
import torch

from hwnas_pl.errors import ConfigError
from hwnas_pl.models import create_backbone, list_backbones
from hwnas_pl.modules.classifier_module import build_backbone
from hwnas_pl.nn.backbones import MLP, SmallCNN


def n_params(module):
    return sum(p.numel() for p in module.parameters())


def test_small_cnn_parameter_count_by_hand():
    # stage 1: conv 1->8 (1*8*9=72) + BN (16) + conv 8->8 (576) + BN (16); classifier 8*10+10 = 90
    net = SmallCNN(10, (1, 8, 8), width=8, stages=1, dropout=0.0)
    assert n_params(net) == 72 + 16 + 576 + 16 + 90


def test_small_cnn_pools_down_to_2x2_only():
    net = SmallCNN(5, (3, 8, 8), width=4, stages=3)
    pools = [m for m in net.features if isinstance(m, torch.nn.MaxPool2d)]
    assert len(pools) == 2  # 8 -> 4 -> 2, then no further pooling
    assert net(torch.randn(2, 3, 8, 8)).shape == (2, 5)


def test_mlp_parameter_count_by_hand():
    net = MLP(3, (1, 4, 4), hidden=(8,))
    assert n_params(net) == (16 * 8 + 8) + (8 * 3 + 3)


def test_create_backbone_own_and_timm():
    assert set(list_backbones()) >= {"small_cnn", "mlp"}
    net = create_backbone("resnet18", 7, (1, 32, 32))
    assert net(torch.randn(2, 1, 32, 32)).shape == (2, 7)


def test_build_backbone_from_dotted_path_and_factory():
    net = build_backbone("hwnas_pl.nn.backbones.MLP", 4, (1, 2, 2))
    assert isinstance(net, MLP) and net(torch.zeros(1, 1, 2, 2)).shape == (1, 4)
    net = build_backbone(lambda n, shape: MLP(n, shape, hidden=()), 2, (3,))
    assert n_params(net) == 3 * 2 + 2


@pytest.mark.parametrize(
    ("name", "match"),
    [
        (
            "no_such_net",
            r"Unknown backbone 'no_such_net'; expected one of the package's backbones "
            r"\(mlp, ppgnet, resnet_cifar, small_cnn\)",
        ),
        ("hwnas_pl.nn.backbones.Nope", r"Backbone 'hwnas_pl.nn.backbones.Nope' could not be imported"),
    ],
)
def test_unknown_backbone_names_the_valid_ones(name, match):
    with pytest.raises(ConfigError, match=match):
        build_backbone(name, 10, (1, 8, 8))


def test_bad_input_shape():
    with pytest.raises(ConfigError, match=r"expects input_shape \(channels, height, width\)"):
        SmallCNN(10, (8, 8))
