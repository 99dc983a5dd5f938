import pytest

from hwnas_pl.errors import ConfigError
from hwnas_pl.registry import Registry


def test_register_create_drops_none_kwargs():
    reg = Registry("widget")

    @reg.register("box")
    def box(size=1, color="red"):
        return (size, color)

    assert reg.create("box", size=None, color="blue") == (1, "blue")
    assert "box" in reg and reg.names() == ["box"]


def test_overwrite_warns_and_replaces():
    reg = Registry("widget")
    reg.register("a")(lambda: 1)
    with pytest.warns(UserWarning, match="Overwriting widget 'a'"):
        reg.register("a")(lambda: 2)
    assert reg.create("a") == 2


def test_unknown_name_lists_known_ones():
    reg = Registry("widget")
    reg.register("alpha")(lambda: 1)
    reg.register("beta")(lambda: 2)
    with pytest.raises(ConfigError, match=r"Unknown widget 'gamma'; expected one of: alpha, beta\."):
        reg.get("gamma")
