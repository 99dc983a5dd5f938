"""Search spaces: NAS-Bench-201 specifics, plus conformance checks run on every registered space."""

import numpy as np
import pytest
import torch

from hwnas_pl.errors import ConfigError
from hwnas_pl.spaces import NASBench201Space, SearchSpace, create_search_space, list_search_spaces

BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
RESNET = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|none~2|"


@pytest.fixture(scope="module")
def nb201():
    return NASBench201Space()


def test_string_format_both_ways(nb201):
    arch = nb201.from_string(BEST)
    assert arch == ("nor_conv_3x3", "nor_conv_3x3", "nor_conv_3x3", "skip_connect", "nor_conv_3x3", "nor_conv_3x3")
    assert nb201.to_string(arch) == BEST


@pytest.mark.parametrize(("text", "anb"), [(BEST, (2, 2, 0, 2, 2, 2)), (RESNET, (2, 1, 0, 2, 1, 1))])
def test_analog_nasbench_tuple_both_ways(nb201, text, anb):
    # NASLib edge order (0-1, 0-2, 0-3, 1-2, 1-3, 2-3): the skip on 0->3 is third, not fourth as in the string
    assert nb201.to_anb_tuple(text) == anb
    assert nb201.to_string(nb201.from_anb_tuple(anb)) == text


def test_mappings_are_bijections_over_the_whole_space(nb201):
    archs = list(nb201.enumerate())
    assert len(archs) == nb201.size() == 15625 == len(set(archs))
    assert len({nb201.to_anb_tuple(a) for a in archs}) == 15625
    assert len({nb201.to_string(a) for a in archs}) == 15625
    for i in (0, 1, 777, 15624):
        assert nb201.index(nb201.from_index(i)) == i


def test_flops_and_params_match_the_published_extremes(nb201):
    # NAS-Bench-201 (CIFAR-10): 7.78 to 220.11 MFLOPs (multiply-adds), 0.073 to 1.531 M parameters
    smallest = nb201.features("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    largest = nb201.features(("nor_conv_3x3",) * 6)
    assert smallest["flops"] / 2e6 == pytest.approx(7.78, abs=0.005)
    assert largest["flops"] / 2e6 == pytest.approx(220.11, abs=0.01)
    assert smallest["params"] / 1e6 == pytest.approx(0.0733, abs=1e-4)
    assert largest["params"] / 1e6 == pytest.approx(1.5315, abs=1e-4)
    assert (largest["first_channels"], largest["last_channels"], largest["downsamplings"]) == (16, 64, 2)
    # 15 cells x 6 convs + stem + 2 reductions x 3 convs
    assert largest["n_convs"] == 15 * 6 + 1 + 2 * 3


def test_depth_counts_convs_on_the_longest_path(nb201):
    assert nb201.cell_depth(BEST) == 3  # 0->1->2->3 through three 3x3 convs
    assert nb201.cell_depth(RESNET) == 0  # node 3 only takes the skip from node 0; node 2 is a dead end
    assert nb201.cell_depth("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|") == -1


def test_graph_encoding(nb201):
    adjacency, onehot = nb201.graph(BEST)
    assert adjacency.shape == (8, 8) and onehot.shape == (8, 7)
    assert onehot.sum(1).tolist() == [1] * 8
    # input feeds the 3 ops leaving node 0; the 3 ops entering node 3 feed the output
    assert adjacency[0].sum() == 3 and adjacency[:, 7].sum() == 3
    # op (0->1) feeds the ops leaving node 1: (1->2) and (1->3)
    assert adjacency[1].nonzero()[0].tolist() == [3, 5]


def test_lhs_covers_every_choice_evenly(nb201):
    sample = nb201.sample(50, np.random.default_rng(0), method="lhs")
    vectors = np.stack([nb201.encode(a) for a in sample])
    for col in vectors.T:
        assert np.bincount(col, minlength=5).tolist() == [10] * 5


def test_sampling_is_seeded(nb201):
    a = nb201.sample(20, np.random.default_rng(3))
    assert a == nb201.sample(20, np.random.default_rng(3)) and a != nb201.sample(20, np.random.default_rng(4))


def test_mutate_and_crossover(nb201):
    rng = np.random.default_rng(0)
    parent = nb201.from_string(BEST)
    for _ in range(20):
        assert (nb201.encode(nb201.mutate(parent, rng)) != nb201.encode(parent)).sum() >= 1
    a, b = ("none",) * 6, ("skip_connect",) * 6
    c, d = nb201.crossover(a, b, rng)
    assert all({x, y} == {"none", "skip_connect"} for x, y in zip(c, d))


@pytest.mark.parametrize(
    ("arch", "match"),
    [
        (("conv_5x5",) + ("none",) * 5, "Unknown NAS-Bench-201 op 'conv_5x5'; expected one of: none, skip_connect"),
        (("none",) * 5, "is a sequence of 6 op names"),
        ("|none~0|+|none~0|+|none~0|none~1|none~2|", "node 2 has 1 inputs; expected 2"),
        ("|none~0|+|none~0|none~3|+|none~0|none~1|none~2|", "'none~3' is not 'op~input' with input < 2"),
    ],
)
def test_bad_architectures(nb201, arch, match):
    with pytest.raises(ConfigError, match=match):
        nb201.encode(arch)


def test_bad_vectors_and_tuples(nb201):
    with pytest.raises(ConfigError, match="encodes an architecture as 6 integers, got shape \\(5,\\)"):
        nb201.decode([0] * 5)
    with pytest.raises(ConfigError, match="position 2 must lie in 0..4, got 7"):
        nb201.decode([0, 0, 7, 0, 0, 0])
    with pytest.raises(ConfigError, match="An analog-nasbench key is 6 op ids"):
        nb201.from_anb_tuple((0, 0, 0))


# ---------------------------------------------------------------- conformance over the registry
@pytest.mark.parametrize("name", list_search_spaces())
def test_space_conformance(name):
    space = create_search_space(name)
    rng = np.random.default_rng(0)
    for arch in space.sample(3, rng) + space.sample(3, rng, method="lhs"):
        vec = space.encode(arch)
        assert vec.shape == (space.n_vars,) and space.decode(vec) == arch
        assert space.from_string(space.to_string(arch)) == arch
        assert len(space.tokens(arch)) > 0
        net = space.build(arch, num_classes=7, input_shape=(3, 16, 16))
        out = net(torch.randn(2, 3, 16, 16))
        assert out.shape == (2, 7) and torch.isfinite(out).all(), "Output included NaNs"
        feats = space.features(arch, input_shape=(3, 16, 16), num_classes=7)
        assert all(np.isfinite(v) for v in feats.values()) and feats["params"] > 0


# ---------------------------------------------------------------- MBConv
def test_mbconv_skip_only_where_the_shape_is_kept():
    from hwnas_pl.spaces import MBConvSpace

    space = MBConvSpace("cifar")
    # first layer of each of the 6 stages changes channels or stride: 6 choices; the other 15 also allow skip
    assert space.cardinalities.count(6) == 6 and space.cardinalities.count(7) == 15
    assert space.size() == 6**6 * 7**15
    with pytest.raises(ConfigError, match="Unknown choice 'skip' for MBConv layer 0; expected one of: mb_k3_e3"):
        space.encode(("skip",) + ("mb_k3_e3",) * 20)


def test_mbconv_counts_by_op_equal_the_network():
    from hwnas_pl.nn.counting import count_network
    from hwnas_pl.spaces import MBConvSpace

    for skeleton, shape in (("cifar", (3, 32, 32)), ("imagenet", (3, 224, 224))):
        space = MBConvSpace(skeleton)
        arch = space.sample(1, np.random.default_rng(1))[0]
        by_op, whole = space.count(arch, 1000, shape), count_network(space.build(arch, 1000, shape), shape)
        assert (by_op.macs, by_op.params) == (whole.macs, whole.params)
    # a single MBConv k3 e6 16->24, stride 1 on 8x8: expand 16*96, depthwise 96*9, project 96*24 per position
    from hwnas_pl.spaces.mbconv import MBConv

    assert count_network(MBConv(16, 24, 3, 6, 1), (16, 8, 8)).macs == 64 * (16 * 96 + 96 * 9 + 96 * 24)


# ---------------------------------------------------------------- AnalogNAS macro space
T1M = "OC0=32,KS0=5,R=(3,3),B=(2,2),CT=(A,A),WF=(3,3)"  # thesis Table 5.2, CIFAR-10 T1M


@pytest.fixture(scope="module")
def analog():
    from hwnas_pl.spaces import AnalogNASSpace

    return AnalogNASSpace()


def n_params(net):
    return sum(p.numel() for p in net.parameters())


def test_analognas_table_row_string_and_mapping(analog):
    arch = analog.from_string(T1M)
    assert analog.to_string(arch) == T1M
    row = arch.table_row()
    assert row == {"OC0": 32, "KS0": 5, "M": 2, "R": (3, 3), "B": (2, 2), "CT": ("A", "A"), "WF": (3.0, 3.0),
                   "ST": (0, 0)}  # fmt: skip
    assert analog.validate(row) == arch  # a YAML mapping in Table 5.2's columns is an architecture too
    assert analog.from_string(" OC0=32, KS0=5, R=(3, 3), B=(2,2), CT=(A,A), WF=(3,3)") == arch
    assert analog.widths(arch) == [96, 288]  # c_m = round(c_{m-1} * WF_m)
    assert analog.depth(arch) == 1 + 6 * 3 + 1  # stem, six bottleneck blocks of 3 convs, classifier
    assert analog.tokens(arch) == ["stem_k5", *["A_b2"] * 3, "A_b2/2", "A_b2", "A_b2", "head"]


def test_analognas_params_hand_computed(analog):
    # stem 3*8*3*3 + BN 2*8 = 232; basic block 8->8: two 3x3 convs 2*9*8*8 + two BNs 4*8 = 1184; fc 8*10 + 10
    assert analog.params("OC0=8,KS0=3,R=(1),B=(1),CT=(B),WF=(1)") == 232 + 1184 + 90
    # WF 2: block 8->16: 9*8*16 + 9*16*16 + 4*16 = 3520, skip 1x1 8*16 + BN 32 = 160, fc 16*10 + 10
    arch = analog.from_string("OC0=8,KS0=3,R=(1),B=(1),CT=(B),WF=(2)")
    assert analog.params(arch) == 232 + 3520 + 160 + 170 == n_params(analog.build(arch))
    # two bottleneck branches 16->16 (inner 4): 2*(16*4 + 9*4*4 + 4*16 + 4*4 + 2*16) = 2*320, no skip
    assert analog.params("OC0=16,KS0=3,R=(1),B=(2),CT=(C),WF=(1)") == (3 * 16 * 9 + 32) + 640 + 170


def test_analognas_st_gene_is_a_skip_around_the_main_block(analog):
    """ST (thesis §5.3.3 "add skip connections"): main block output + identity or 1x1 conv + BN of its input."""
    plain = "OC0=8,KS0=3,R=(1,1),B=(1,1),CT=(B,B),WF=(1,2)"
    skipped = plain + ",ST=(1,1)"
    arch = analog.from_string(skipped)
    assert analog.to_string(arch) == skipped and analog.to_string(plain) == plain  # ST=0 everywhere is omitted
    assert [b.skip for b in arch.blocks] == [True, True] and arch.table_row()["ST"] == (1, 1)
    # block 1 (8->8, stride 1): identity skip, no parameters; block 2 (8->16, stride 2): 1x1 8*16 + BN 2*16 = 160
    assert analog.params(arch) == analog.params(plain) + 160 == n_params(analog.build(arch))
    net, x = analog.build(arch).eval(), torch.randn(2, 3, 8, 8)
    main = net[1]  # the first main block: its residual block with the skip around it
    assert torch.allclose(main(x_mid := net[0](x)), main.body(x_mid) + x_mid)
    assert net(x).shape == (2, 10) and len(analog.encode(arch)) == analog.n_vars == 3 + 5 * 5
    assert analog.decode(analog.encode(arch)) == arch
    assert analog.validate({"OC0": 8, "KS0": 3, "R": [1], "B": [1], "CT": ["B"], "WF": [1], "ST": [1]}).blocks[0].skip
    with pytest.raises(ConfigError, match="ST needs one entry \\(0 or 1\\) per main block; got 1 for 2"):
        analog.validate({"OC0": 8, "KS0": 3, "R": [1, 1], "B": [1, 1], "CT": ["B", "B"], "WF": [1, 1], "ST": [1]})
    with pytest.raises(ConfigError, match="ST entries are 0 or 1; got \\('2',\\)"):
        analog.from_string("OC0=8,KS0=3,R=(1),B=(1),CT=(B),WF=(1),ST=(2)")


# parameters of thesis Table 5.2's rows under the documented width rule (each equals its built network below)
PAPER_PARAMS = {
    "resnet32": 466_906, "resnet32_table5.2": 1_128_394, "cifar10_t100": 12_330, "cifar10_t300": 243_050,
    "cifar10_t500": 168_650, "cifar10_t1m": 600_554, "vww_t200": 211_802, "vww_t400": 1_225_872,
    "kws_t200": 211_452, "kws_t400": 10_391_976,
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(PAPER_PARAMS))
def test_analognas_paper_networks_build_with_their_documented_sizes(name):
    from hwnas_pl.spaces import AnalogNASSpace
    from hwnas_pl.spaces.analognas import PAPER_NETWORKS

    arch, classes, channels, _ = PAPER_NETWORKS[name]
    # KWS rows have KS0 = 1, outside Table 5.1's [3, 7]: a space that lists 1 accepts them
    space = AnalogNASSpace(max_params=None, num_classes=classes, input_channels=channels, kernel_sizes0=(1, 3, 5, 7))
    net = space.build(arch, classes, (channels, 32, 32))
    assert space.params(arch) == PAPER_PARAMS[name] == n_params(net)
    assert net(torch.zeros(2, channels, 32, 32)).shape == (2, classes)


def test_analognas_resnet32_holds_table_5_4s_weights():
    from hwnas_pl.spaces import AnalogNASSpace
    from hwnas_pl.spaces.analognas import PAPER_NETWORKS

    space = AnalogNASSpace(max_params=None)
    arch = space.from_string(PAPER_NETWORKS["resnet32"][0])
    assert space.widths(arch) == [16, 32, 64] and space.depth(arch) == 32  # He et al.'s ResNet32
    # conv + linear weights: stem 432, stage convs 10*2304 + (4608 + 9*9216) + (18432 + 9*36864), 1x1 skips
    # 16*32 + 32*64, classifier 640 = 464,432, thesis Table 5.4's "Weights" of ResNet32
    assert space.weights(arch) == 432 + 23_040 + 87_552 + 350_208 + 512 + 2048 + 640 == 464_432
    # the parameters add BatchNorm's two per channel (1,232 channels) and the classifier's 10 biases
    assert space.params(arch) == 464_432 + 2 * 1232 + 10
    with pytest.raises(ConfigError, match=r"KS0 is 1; expected one of: 3, 4, 5, 6, 7"):
        space.validate(PAPER_NETWORKS["kws_t200"][0])


def test_analognas_closed_form_params_equal_the_built_networks():
    from hwnas_pl.spaces import AnalogNASSpace

    space = AnalogNASSpace(max_params=300_000, num_classes=7, input_channels=1)
    for arch in space.sample(25, np.random.default_rng(3)):
        assert space.params(arch) == n_params(space.build(arch, 7, (1, 8, 8))), space.to_string(arch)


def test_analognas_counts_by_op_equal_the_network(analog):
    from hwnas_pl.nn.counting import count_network

    arch = analog.from_string("OC0=16,KS0=4,R=(2,1,1),B=(1,2,1),CT=(B,A,D),WF=(1.5,2,1)")
    by_op, whole = analog.count(arch, 10, (3, 32, 32)), count_network(analog.build(arch), (3, 32, 32))
    assert (by_op.macs, by_op.params) == (whole.macs, whole.params) and by_op.params == analog.params(arch)
    assert analog.features(arch)["downsamplings"] == 2  # main blocks 2 and 3 halve the resolution
    out = analog.build(arch)(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)


def test_analognas_sampling_and_variation_keep_the_budget(analog):
    rng = np.random.default_rng(0)
    archs = analog.sample(300, rng) + analog.sample(300, rng, method="lhs")
    params = np.array([analog.params(a) for a in archs])
    assert params.max() <= 1_000_000 and len({analog.to_string(a) for a in archs}) > 550
    assert {len(a.blocks) for a in archs} >= {1, 2, 3}
    kinds = set()
    for a in archs[:200]:
        child = analog.mutate(a, rng)
        assert child != a and analog.is_feasible(child)
        kinds |= {k for k, v in child.table_row().items() if v != a.table_row()[k]}
        c1, c2 = analog.crossover(a, archs[-1], rng)
        assert analog.is_feasible(c1) and analog.is_feasible(c2)
    assert kinds == {"OC0", "KS0", "M", "R", "B", "CT", "WF", "ST"}  # every mutation of thesis §5.3.3 happens
    assert not analog.is_feasible("OC0=128,KS0=7,R=(16),B=(12),CT=(B),WF=(4)")


def test_analognas_sample_like_keeps_the_hypercube_dimension(analog):
    """A violator's replacement (thesis §5.3.3) has its M (encoding length 3 + 5M); the rest is redrawn by LHS."""
    rng = np.random.default_rng(1)
    for arch in ("OC0=32,KS0=5,R=(3,3),B=(2,2),CT=(A,A),WF=(3,3)", "OC0=16,KS0=3,R=(2),B=(1),CT=(B),WF=(2)"):
        m = len(analog.from_string(arch).blocks)
        draws = analog.sample_like(arch, 40, rng)
        assert {len(a.blocks) for a in draws} == {m} and all(analog.is_feasible(a) for a in draws)
        assert len({a.out_channels0 for a in draws}) > 10  # the other genes are drawn, not copied
    nb201 = NASBench201Space()  # one hypercube: the whole space
    assert len(set(nb201.sample_like(nb201.from_index(0), 50, rng))) > 45


def test_analognas_t100_rule_lessens_mutations_to_the_highest_values():
    """Thesis §5.4: under T100/T200, raising WF or depth to its highest value is kept with probability 0.2."""
    from hwnas_pl.spaces import AnalogNASSpace

    assert AnalogNASSpace(max_params=200_000).effective_max_value_prob() == 0.2
    assert AnalogNASSpace(max_params=1_000_000).effective_max_value_prob() == 1.0
    assert AnalogNASSpace(max_params=100_000, max_value_prob=0.5).effective_max_value_prob() == 0.5
    parent = "OC0=8,KS0=3,R=(15,1),B=(1,1),CT=(B,B),WF=(3.5,1)"  # one step from R = 16 and from WF = 4

    def share_at_max(prob):
        space = AnalogNASSpace(max_params=None, max_value_prob=prob)
        a, rng = space.from_string(parent), np.random.default_rng(0)
        return np.mean([space.reaches_max(a, space.mutate(a, rng)) for _ in range(1000)])

    free, never, fifth = share_at_max(1.0), share_at_max(0.0), share_at_max(0.2)
    assert never == 0.0 and free > 0.08
    assert 0.1 * free < fifth < 0.4 * free  # about a fifth as often (binomial noise on 1000 draws)
    space = AnalogNASSpace(max_params=None)
    a = space.from_string(parent)
    assert space.reaches_max(a, space.from_string("OC0=8,KS0=3,R=(16,1),B=(1,1),CT=(B,B),WF=(3.5,1)"))
    assert space.reaches_max(a, space.from_string("OC0=8,KS0=3,R=(15,1),B=(1,1),CT=(B,B),WF=(3.5,4)"))
    assert not space.reaches_max(a, space.from_string("OC0=8,KS0=3,R=(14,1),B=(1,1),CT=(B,B),WF=(3.5,1)"))
    with pytest.raises(ConfigError, match="max_value_prob must lie in \\[0, 1\\] or be null, got 2"):
        AnalogNASSpace(max_value_prob=2)


@pytest.mark.parametrize(
    ("arch", "match"),
    [
        ("OC0=32,KS0=5,R=(3,3),B=(2),CT=(A,A),WF=(3,3)", "need one entry per main block; got lengths 2, 1, 2, 2"),
        ("OC0=32,KS0=5,R=(3),B=(2),CT=(E),WF=(3)", "CT of main block 1 is 'E'; expected one of: A, B, C, D"),
        ("OC0=32,KS0=5,R=(3),B=(2),CT=(A),WF=(5)", "WF of main block 1 is 5.0; expected one of: 1, 1.5, 2"),
        ("OC0=30,KS0=5,R=(3),B=(2),CT=(A),WF=(3)", "OC0 is 30; expected one of: 8, 12, 16"),
        ("OC0=32,KS0=5,R=(17),B=(2),CT=(A),WF=(3)", r"R of main block 1 is 17; expected one of: 1\.\.16"),
        ("OC0=32,KS0=5,R=(1,1,1,1,1,1),B=(1,1,1,1,1,1),CT=(A,A,A,A,A,A),WF=(1,1,1,1,1,1)", "M must lie in 1..5"),
        ("OC0=32;KS0=5", "Malformed AnalogNAS architecture string"),
        ({"OC0": 32, "KS0": 5, "R": [1]}, "lacks B, CT, WF"),
    ],
)
def test_analognas_bad_architectures(analog, arch, match):
    with pytest.raises(ConfigError, match=match):
        analog.validate(arch)


def test_analognas_impossible_budget_and_enumeration():
    from hwnas_pl.spaces import AnalogNASSpace

    space = AnalogNASSpace(max_params=100)
    with pytest.raises(ConfigError, match=r"Only 0 of \d+ architectures drawn from analognas meet its constraint"):
        space.sample(1, np.random.default_rng(0), max_draws=1000)
    with pytest.raises(ConfigError, match="cannot be enumerated"):
        next(iter(space.enumerate()))


class ChainSpace(SearchSpace):
    """A variable-size space: a chain of 1-4 ops, no fixed-length encoding (what an operator DAG needs)."""

    name = "chain"
    OPS = ("conv3", "conv1", "pool")

    def _validate(self, arch):
        arch = tuple(arch)
        if not 1 <= len(arch) <= 4 or any(op not in self.OPS for op in arch):
            raise ConfigError(f"chain: expected 1-4 ops of {self.OPS}, got {arch}.")
        return arch

    def _to_string(self, arch):
        return "-".join(arch)

    def _from_string(self, text):
        return self._validate(text.split("-"))

    def _sample(self, n, rng, method):
        return [tuple(rng.choice(self.OPS, size=int(rng.integers(1, 5))).tolist()) for _ in range(n)]

    def _mutate(self, arch, rng, prob):
        ops = list(arch)
        ops[int(rng.integers(len(ops)))] = str(rng.choice(self.OPS))
        return tuple(ops) if len(ops) > 1 and rng.random() < 0.5 else (*ops, str(rng.choice(self.OPS)))[:4]

    def _crossover(self, a, b, rng):
        return a[: len(a) // 2 + 1] + b[len(b) // 2 + 1 :][:3], b

    def tokens(self, arch):
        return list(arch)

    def graph(self, arch):
        n = len(arch)
        adjacency = np.eye(n, k=1)
        onehot = np.zeros((n, len(self.OPS)))
        onehot[np.arange(n), [self.OPS.index(op) for op in arch]] = 1
        return adjacency, onehot

    def depth(self, arch):
        return sum(op != "pool" for op in arch)

    def build(self, arch, num_classes, input_shape):
        layers = [torch.nn.Conv2d(input_shape[0], 8, 1)]
        for op in arch:
            layers.append({"conv3": torch.nn.Conv2d(8, 8, 3, padding=1), "conv1": torch.nn.Conv2d(8, 8, 1),
                           "pool": torch.nn.AvgPool2d(3, 1, 1)}[op])  # fmt: skip
        return torch.nn.Sequential(*layers, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 10))


def test_a_variable_size_space_searches_without_an_encoding():
    from hwnas_pl.evaluators.analytic import AnalyticCostModel
    from hwnas_pl.search.minimize import minimize
    from hwnas_pl.search.strategies import NSGA2Search, RandomSearch

    space = ChainSpace()
    archs = space.sample(5, np.random.default_rng(0))
    assert {len(a) for a in archs} > {1} and all(space.from_string(space.to_string(a)) == a for a in archs)
    assert space.size() is None and space.encoding_features(("conv3", "conv3", "pool")).tolist() == [2.0, 0.0, 1.0]
    # a search over it: the analytic cost counts each chain's convolutions exactly (8 channels, 32x32, 1 sample)
    result = minimize(space, RandomSearch(space, 10), [AnalyticCostModel(space)], {"macs": "min", "params": "max"},
                      max_evaluations=20)  # fmt: skip
    one = AnalyticCostModel(space).evaluate([("conv3",)])["macs"][0]
    assert one == 32 * 32 * (3 * 8 + 8 * 8 * 9) + 8 * 10 and result.n_evaluations == 20
    with pytest.raises(ConfigError, match="NSGA2Search works on fixed-length integer vectors, but the chain space"):
        minimize(space, NSGA2Search(space, 10), [AnalyticCostModel(space)], max_evaluations=10)
    with pytest.raises(ConfigError, match="The chain space cannot be enumerated"):
        list(space.enumerate())


# ---------------------------------------------------------------- FBNet (HW-NAS-Bench's)
def test_fbnet_skeleton_is_hw_nas_benchs():
    from hwnas_pl.spaces import FBNetSpace

    space = FBNetSpace("cifar")
    assert space.size() == 9**22 and space.cardinalities == (9,) * 22
    # stage firsts: 16->16 s1, 16->24 s1, 24->32 s2, 32->64 s2, 64->112 s1, 112->184 s2, 184->352 s1
    firsts = [space.layers[i] for i in (0, 1, 5, 9, 13, 17, 21)]
    assert firsts == [(16, 16, 1), (16, 24, 1), (24, 32, 2), (32, 64, 2), (64, 112, 1), (112, 184, 2), (184, 352, 1)]
    assert space.resolutions(32)[::4] == [32, 32, 16, 8, 8, 4] and space.resolutions(32)[-1] == 4
    assert FBNetSpace("imagenet").resolutions(224)[-1] == 7 and FBNetSpace("imagenet").header == 1984
    arch = ("skip",) * 22
    # an all-skip network: stem, the 6 projecting 1x1 skips (layer 0 is an identity), header conv, classifier
    assert space.depth(arch) == 1 + 6 + 1 + 1
    with pytest.raises(ConfigError, match="Unknown choice 'k7_e6' for FBNet layer 3; expected one of: k3_e1"):
        space.encode(("skip",) * 3 + ("k7_e6",) + ("skip",) * 18)


def test_fbnet_grouped_block_by_hand():
    from hwnas_pl.nn.counting import count_network
    from hwnas_pl.spaces.fbnet import ChannelShuffle, fbnet_block

    block = fbnet_block("k3_e1_g2", 16, 24, 1)
    # 1x1 16->16 in 2 groups 128, BN 32, depthwise 3x3 144, BN 32, 1x1 16->24 in 2 groups 192, BN 48
    assert sum(p.numel() for p in block.parameters()) == 128 + 32 + 144 + 32 + 192 + 48
    assert count_network(block, (16, 8, 8)).macs == 64 * (128 + 144 + 192)
    x = torch.arange(4.0).view(1, 4, 1, 1)
    assert ChannelShuffle(2)(x).flatten().tolist() == [0.0, 2.0, 1.0, 3.0]
    assert not block.residual and fbnet_block("k5_e6", 24, 24, 1).residual
    skip = fbnet_block("skip", 24, 32, 2)  # a projecting skip: 1x1 conv 24->32 stride 2, BN, ReLU
    assert sum(p.numel() for p in skip.parameters()) == 24 * 32 + 64 and skip(torch.randn(1, 24, 8, 8)).shape[-1] == 4


def test_fbnet_counts_by_op_equal_the_network():
    from hwnas_pl.nn.counting import count_network
    from hwnas_pl.spaces import FBNetSpace

    for skeleton, shape, classes in (("cifar", (3, 32, 32), 100), ("imagenet", (3, 224, 224), 1000)):
        space = FBNetSpace(skeleton)
        arch = space.sample(1, np.random.default_rng(3))[0]
        by_op, whole = space.count(arch, classes, shape), count_network(space.build(arch, classes, shape), shape)
        assert (by_op.macs, by_op.params) == (whole.macs, whole.params)
    out = FBNetSpace("cifar").build(arch, 100, (3, 32, 32))(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 100)
