"""AnalogNAS macro ResNet space (thesis §5.3.1, Fig. 5.3, Table 5.1) under a parameter budget.

A network is a stem convolution (``OC0`` output channels, ``KS0``×``KS0`` kernel, stride 1, same padding, BN,
ReLU) followed by ``M`` main blocks and a classifier (global average pool, linear). Main block ``m`` holds ``R_m``
residual blocks of width

    c_m = round(c_{m-1} · WF_m),   c_0 = OC0

(the thesis's largest network "starts from 128 output channels, ×4 every 16 blocks"). Every main block but the
first halves the resolution in its first residual block. A residual block sums ``B_m`` parallel branches of one
conv-block type and a skip (identity, or 1×1 convolution + BN when the shape changes), then applies ReLU:

- ``A``: bottleneck 1×1 → 3×3 (stride) → 1×1, inner width ``max(1, round(c_m / 4))``, Conv-BN-ReLU order;
- ``B``: basic 3×3 (stride) → 3×3, Conv-BN-ReLU order;
- ``C``/``D``: ``A``/``B`` with ReLU and BN swapped (Conv-ReLU-BN).

Ranges (Table 5.1): OC0 ∈ [8, 128] (step 4 by default), KS0 ∈ [3, 7], M ∈ [1, 5], R ∈ [1, 16], B ∈ [1, 12],
conv block ∈ {A, B, C, D}, WF ∈ [1, 4] (a grid, step 0.5 by default); R, B, block type and WF repeat per main
block. [AMBIG] choices, recorded here: the width rule above, the bottleneck's inner width (ResNet's expansion
4), even stem kernels padded one more on the right and bottom. The thesis's "add skip connections" mutation (ST,
§5.3.3) is not in Table 5.1, whose residual blocks all have skips; here it is one more gene per main block, a skip
around the whole main block (identity, or 1×1 convolution + BN when the shape changes) added to its output,
written ``ST=(0,1)`` after ``WF`` (left out when no main block has one, so Table 5.2's strings are unchanged).

**The paper's networks** (:data:`PAPER_NETWORKS`). Under this rule a real ResNet32 (He et al.: widths 16/32/64,
five basic blocks per stage, 1×1 projection skips) is ``OC0=16,KS0=3,R=(5,5,5),B=(1,1,1),CT=(B,B,B),WF=(1,2,2)``,
and its convolution and linear weights (:meth:`AnalogNASSpace.weights`, what the tiles hold) are exactly thesis
Table 5.4's 464,432. Table 5.2's own ResNet32 row (OC0 64, all WF 1) cannot be that network: fifteen basic blocks
of width 64 alone hold 1.1 M weights. No reading reproduces the other rows either; 48 were tried (width ×WF, ÷WF
as in IBM/analog-nas's ``Network``, or relative to OC0; bottleneck inner width c/4, c/2, c or ×4 expansion;
residual kernels 3 or KS0; stem kernel KS0 or 7; with and without projection skips), and none gives Table 5.4's
416,960 weights for T500 (nearest: 473,024, with inner width c/2). Row by row, under this rule (parameters, with
BatchNorm and biases; budget T_p):

=========  =====  ==========  ========  ===============================================================================
task       row    parameters  budget    verdict
=========  =====  ==========  ========  ===============================================================================
CIFAR-10   T100   12,330      100 k     within, at 12 % of the budget
CIFAR-10   T300   243,050     300 k     within (the table's M = 1 contradicts its two-entry tuples; read as M = 2)
CIFAR-10   T500   168,650     500 k     within, at 34 % (Table 5.4: 416,960 weights; here 164,800)
CIFAR-10   T1M    600,554     1 M       within
VWW        T200   211,802     200 k     6 % over
VWW        T400   1,225,872   400 k     3.1× over
KWS        T200   211,452     200 k     6 % over (KS0 = 1 is outside Table 5.1's [3, 7]: pass
                                        ``kernel_sizes0`` with 1)
KWS        T400   10,391,976  400 k     26× over (WF (3,3) multiplies to width 612)
=========  =====  ==========  ========  ===============================================================================

Sampled uniformly, widths multiply to millions of channels, so the space carries the search's parameter budget
``max_params`` (T_p of Eq. 5.3, counted for ``num_classes`` outputs and ``input_channels`` inputs): sampling,
mutation and crossover keep to it (:meth:`~hwnas_pl.spaces.base.SearchSpace.is_feasible`).

The string format is Table 5.2's: ``OC0=32,KS0=5,R=(3,3),B=(2,2),CT=(A,A),WF=(3,3)``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from hwnas_pl.errors import ConfigError
from hwnas_pl.spaces.base import EncodedSpace, OpSpec, register_search_space

CONV_BLOCKS = ("A", "B", "C", "D")
BOTTLENECKS = ("A", "C")
NODE_TYPES = ("input", "stem", *CONV_BLOCKS, "output")
MUTATION_PROBS = {"depth": 0.8, "width": 0.8, "other": 0.5}  # thesis §5.3.3

#: thesis Table 5.2's networks (and the real ResNet32 of Table 5.4) as ``name: (architecture, classes, input
#: channels, budget T_p)``; the module docstring says how each compares with its budget
PAPER_NETWORKS: dict[str, tuple[str, int, int, int | None]] = {
    "resnet32": ("OC0=16,KS0=3,R=(5,5,5),B=(1,1,1),CT=(B,B,B),WF=(1,2,2)", 10, 3, None),
    "resnet32_table5.2": ("OC0=64,KS0=7,R=(5,5,5),B=(1,1,1),CT=(B,B,B),WF=(1,1,1)", 10, 3, None),
    "cifar10_t100": ("OC0=32,KS0=3,R=(2),B=(1),CT=(C),WF=(2)", 10, 3, 100_000),
    "cifar10_t300": ("OC0=32,KS0=3,R=(3,3),B=(1,1),CT=(A,B),WF=(2,1)", 10, 3, 300_000),
    "cifar10_t500": ("OC0=64,KS0=5,R=(3),B=(3),CT=(A),WF=(2)", 10, 3, 500_000),
    "cifar10_t1m": ("OC0=32,KS0=5,R=(3,3),B=(2,2),CT=(A,A),WF=(3,3)", 10, 3, 1_000_000),
    "vww_t200": ("OC0=24,KS0=3,R=(2,2,2),B=(1,2,1),CT=(B,A,A),WF=(2,2,2)", 2, 3, 200_000),
    "vww_t400": ("OC0=68,KS0=3,R=(3,5),B=(2,1),CT=(C,C),WF=(3,2)", 2, 3, 400_000),
    "kws_t200": ("OC0=80,KS0=1,R=(1),B=(2),CT=(C),WF=(4)", 12, 1, 200_000),
    "kws_t400": ("OC0=68,KS0=1,R=(2,1),B=(1,2),CT=(B,B),WF=(3,3)", 12, 1, 400_000),
}


@dataclass(frozen=True)
class MainBlock:
    """Hyper-parameters of one main block: residual blocks ``R``, branches ``B``, conv block type, widening."""

    residual_blocks: int
    branches: int
    conv_block: str
    widening: float
    skip: bool = False  #: the ST gene: a skip around the whole main block


@dataclass(frozen=True)
class MacroArch:
    """An AnalogNAS architecture: stem channels and kernel, and its main blocks (``M = len(blocks)``)."""

    out_channels0: int
    kernel_size0: int
    blocks: tuple[MainBlock, ...]

    def table_row(self) -> dict[str, Any]:
        """Thesis Table 5.2 columns ``OC0, KS0, M, R, B, CT, WF``, and ``ST`` (0/1 per main block)."""
        return {
            "OC0": self.out_channels0,
            "KS0": self.kernel_size0,
            "M": len(self.blocks),
            "R": tuple(b.residual_blocks for b in self.blocks),
            "B": tuple(b.branches for b in self.blocks),
            "CT": tuple(b.conv_block for b in self.blocks),
            "WF": tuple(b.widening for b in self.blocks),
            "ST": tuple(int(b.skip) for b in self.blocks),
        }


def _conv_unit(c_in: int, c_out: int, kernel: int, stride: int, swapped: bool, relu: bool) -> list[nn.Module]:
    conv = nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False)
    if not relu:
        return [conv, nn.BatchNorm2d(c_out)]
    if swapped:
        return [conv, nn.ReLU(inplace=True), nn.BatchNorm2d(c_out)]
    return [conv, nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


def bottleneck_width(channels: int) -> int:
    """Inner width of a bottleneck branch of ``channels`` outputs (ResNet's expansion 4)."""
    return max(1, round(channels / 4))


class ResidualBlock(nn.Module):
    """``ReLU(Σ_b branch_b(x) + skip(x))`` with ``branches`` branches of conv block ``conv_block``."""

    def __init__(self, c_in: int, c_out: int, stride: int, conv_block: str, branches: int) -> None:
        super().__init__()
        swapped = conv_block in ("C", "D")
        self.branches = nn.ModuleList()
        for _ in range(branches):
            if conv_block in BOTTLENECKS:
                mid = bottleneck_width(c_out)
                layers = _conv_unit(c_in, mid, 1, 1, swapped, True)
                layers += _conv_unit(mid, mid, 3, stride, swapped, True)
                layers += _conv_unit(mid, c_out, 1, 1, swapped, False)
            else:
                layers = _conv_unit(c_in, c_out, 3, stride, swapped, True)
                layers += _conv_unit(c_out, c_out, 3, 1, swapped, False)
            self.branches.append(nn.Sequential(*layers))
        self.skip = _projection(c_in, c_out, stride)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.skip(x)
        for branch in self.branches:
            out = out + branch(x)
        return self.act(out)


def _projection(c_in: int, c_out: int, stride: int) -> nn.Module:
    """Identity, or a 1×1 convolution + BN when the shape changes (the skips of both levels)."""
    if stride == 1 and c_in == c_out:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))


class MainBlockSkip(nn.Module):
    """``body(x) + skip(x)``: a main block's residual blocks with the ST skip around them."""

    def __init__(self, body: Sequence[nn.Module], c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*body)
        self.skip = _projection(c_in, c_out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.skip(x)


def _stem(c_in: int, c_out: int, kernel: int) -> nn.Module:
    """KS0×KS0 convolution keeping the resolution (an even kernel pads one more on the right/bottom), BN, ReLU."""
    before, after = (kernel - 1) // 2, kernel // 2
    pad = [nn.ZeroPad2d((before, after, before, after))] if before != after else []
    conv = nn.Conv2d(c_in, c_out, kernel, 1, before if not pad else 0, bias=False)
    return nn.Sequential(*pad, conv, nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


def _head(c_in: int, num_classes: int) -> nn.Module:
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes))


def _format(values: Sequence[Any]) -> str:
    return "(" + ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values) + ")"


STRING_PATTERN = re.compile(
    r"^OC0=(?P<OC0>[^,]+),KS0=(?P<KS0>[^,]+),R=\((?P<R>[^)]*)\),B=\((?P<B>[^)]*)\),"
    r"CT=\((?P<CT>[^)]*)\),WF=\((?P<WF>[^)]*)\)(?:,ST=\((?P<ST>[^)]*)\))?$"
)
GENES = 5  #: encoding positions per main block: R, B, CT, WF, ST


@register_search_space("analognas")
class AnalogNASSpace(EncodedSpace):
    """The AnalogNAS ResNet-like macro space with a parameter budget.

    Args:
        max_params: parameter budget T_p (``None``: unconstrained; sampling may then build huge networks).
        num_classes: outputs the budget is counted for.
        input_channels: input channels the budget is counted for.
        out_channels0: choices of the stem's output channels.
        kernel_sizes0: choices of the stem's kernel size.
        max_main_blocks: largest M.
        max_residual_blocks: largest R.
        max_branches: largest B.
        widening_factors: choices of the widening factor.
        max_value_prob: probability that a mutation raising a widening factor, R or M to its highest value is kept
            (thesis §5.4: "when searching for T200 and T100, the probability of increasing the widening factor or
            depth to their highest values was lessened to 0.2"); ``None``: 0.2 when ``max_params`` is at most
            200,000, else 1.

    Example:
        >>> space = AnalogNASSpace()
        >>> arch = space.from_string("OC0=32,KS0=5,R=(3,3),B=(2,2),CT=(A,A),WF=(3,3)")
        >>> space.params(arch), space.depth(arch), space.is_feasible(arch)
        (600554, 20, True)
    """

    name = "analognas"

    def __init__(
        self,
        max_params: int | None = 1_000_000,
        num_classes: int = 10,
        input_channels: int = 3,
        out_channels0: Sequence[int] = tuple(range(8, 129, 4)),
        kernel_sizes0: Sequence[int] = (3, 4, 5, 6, 7),
        max_main_blocks: int = 5,
        max_residual_blocks: int = 16,
        max_branches: int = 12,
        widening_factors: Sequence[float] = (1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0),
        max_value_prob: float | None = None,
    ) -> None:
        for label, value in (
            ("max_main_blocks", max_main_blocks),
            ("max_residual_blocks", max_residual_blocks),
            ("max_branches", max_branches),
            ("num_classes", num_classes),
            ("input_channels", input_channels),
        ):
            if int(value) < 1:
                raise ConfigError(f"AnalogNASSpace {label} must be at least 1, got {value}.")
        for label, values in (("out_channels0", out_channels0), ("kernel_sizes0", kernel_sizes0)):
            if not values or any(int(v) != v or v < 1 for v in values):
                raise ConfigError(f"AnalogNASSpace {label} must list positive integers, got {values}.")
        if not widening_factors or any(w <= 0 for w in widening_factors):
            raise ConfigError(f"AnalogNASSpace widening_factors must be positive numbers, got {widening_factors}.")
        if max_params is not None and max_params < 1:
            raise ConfigError(f"AnalogNASSpace max_params must be positive or null, got {max_params}.")
        if max_value_prob is not None and not 0.0 <= max_value_prob <= 1.0:
            raise ConfigError(f"AnalogNASSpace max_value_prob must lie in [0, 1] or be null, got {max_value_prob}.")
        self.max_value_prob = max_value_prob
        self.max_params = None if max_params is None else int(max_params)
        self.num_classes, self.input_channels = int(num_classes), int(input_channels)
        self.out_channels0 = tuple(sorted(int(c) for c in out_channels0))
        self.kernel_sizes0 = tuple(sorted(int(k) for k in kernel_sizes0))
        self.max_main_blocks = int(max_main_blocks)
        self.max_residual_blocks = int(max_residual_blocks)
        self.max_branches = int(max_branches)
        self.widening_factors = tuple(sorted(float(w) for w in widening_factors))

    # ------------------------------------------------------------------ encoding
    @property
    def cardinalities(self) -> tuple[int, ...]:
        """``(OC0, KS0, M)`` then ``(R, B, CT, WF, ST)`` for each of the ``max_main_blocks`` slots.

        Slots past ``M`` are ignored by :meth:`decode` and written as 0 by :meth:`encode`.
        """
        per_block = (self.max_residual_blocks, self.max_branches, len(CONV_BLOCKS), len(self.widening_factors), 2)
        head = (len(self.out_channels0), len(self.kernel_sizes0), self.max_main_blocks)
        return head + per_block * self.max_main_blocks

    def size(self) -> int:
        """Distinct architectures before the parameter budget: |OC0|·|KS0|·Σ_M (|R|·|B|·|CT|·|WF|·|ST|)^M."""
        per_block = self.max_residual_blocks * self.max_branches * len(CONV_BLOCKS) * len(self.widening_factors) * 2
        blocks = sum(per_block**m for m in range(1, self.max_main_blocks + 1))
        return len(self.out_channels0) * len(self.kernel_sizes0) * blocks

    def enumerate(self):
        raise ConfigError(f"The AnalogNAS space has {self.size():.3g} architectures; it cannot be enumerated.")

    def index(self, arch: Any) -> int:
        raise ConfigError("The AnalogNAS space has no enumeration order; use encode() or to_string() as the key.")

    def from_index(self, index: int):
        raise ConfigError("The AnalogNAS space has no enumeration order; use decode() or from_string().")

    def _hypercube(self, arch: MacroArch) -> dict[int, int]:
        """The encoding's length, ``3 + 5M``, is the hypercube's dimension: a replacement keeps ``M``."""
        return {2: len(arch.blocks) - 1}

    def _decode(self, vector: np.ndarray) -> MacroArch:
        m = int(vector[2]) + 1
        blocks = []
        for i in range(m):
            r, b, ct, wf, st = (int(x) for x in vector[3 + GENES * i : 3 + GENES * (i + 1)])
            blocks.append(MainBlock(r + 1, b + 1, CONV_BLOCKS[ct], self.widening_factors[wf], bool(st)))
        return MacroArch(self.out_channels0[int(vector[0])], self.kernel_sizes0[int(vector[1])], tuple(blocks))

    def _encode(self, arch: MacroArch) -> np.ndarray:
        v = np.zeros(self.n_vars, dtype=np.int64)
        v[0] = self.out_channels0.index(arch.out_channels0)
        v[1] = self.kernel_sizes0.index(arch.kernel_size0)
        v[2] = len(arch.blocks) - 1
        for i, block in enumerate(arch.blocks):
            v[3 + GENES * i : 3 + GENES * (i + 1)] = (
                block.residual_blocks - 1,
                block.branches - 1,
                CONV_BLOCKS.index(block.conv_block),
                self.widening_factors.index(block.widening),
                int(block.skip),
            )
        return v

    def _validate(self, arch: Any) -> MacroArch:
        if isinstance(arch, Mapping):
            arch = self._from_mapping(arch)
        if not isinstance(arch, MacroArch):
            raise ConfigError(
                f"An AnalogNAS architecture is a MacroArch, a string like '{self._example()}' or a mapping with "
                f"keys OC0, KS0, R, B, CT, WF; got {arch!r}."
            )
        self._check_choice("OC0", arch.out_channels0, self.out_channels0)
        self._check_choice("KS0", arch.kernel_size0, self.kernel_sizes0)
        if not 1 <= len(arch.blocks) <= self.max_main_blocks:
            raise ConfigError(f"AnalogNAS M must lie in 1..{self.max_main_blocks}, got {len(arch.blocks)} main blocks.")
        for i, block in enumerate(arch.blocks, start=1):
            self._check_choice(f"R of main block {i}", block.residual_blocks, range(1, self.max_residual_blocks + 1))
            self._check_choice(f"B of main block {i}", block.branches, range(1, self.max_branches + 1))
            self._check_choice(f"CT of main block {i}", block.conv_block, CONV_BLOCKS)
            self._check_choice(f"WF of main block {i}", block.widening, self.widening_factors)
            self._check_choice(f"ST of main block {i}", block.skip, (False, True))
        return arch

    @staticmethod
    def _check_choice(label: str, value: Any, choices: Sequence[Any]) -> None:
        if value not in choices:
            shown = (
                f"{choices[0]}..{choices[-1]}"
                if isinstance(choices, range)
                else _format(choices)[1:-1].replace(",", ", ")
            )
            raise ConfigError(f"AnalogNAS {label} is {value!r}; expected one of: {shown}.")

    def _from_mapping(self, row: Mapping[str, Any]) -> MacroArch:
        missing = [k for k in ("OC0", "KS0", "R", "B", "CT", "WF") if k not in row]
        if missing:
            raise ConfigError(f"An AnalogNAS architecture mapping lacks {', '.join(missing)}; got keys {sorted(row)}.")
        r, b, ct, wf = (row[k] if isinstance(row[k], (list, tuple)) else (row[k],) for k in ("R", "B", "CT", "WF"))
        if not len(r) == len(b) == len(ct) == len(wf):
            raise ConfigError(
                f"AnalogNAS R, B, CT and WF need one entry per main block; got lengths {len(r)}, {len(b)}, {len(ct)}, "
                f"{len(wf)}."
            )
        st = row.get("ST")
        st = (0,) * len(r) if st is None else st if isinstance(st, (list, tuple)) else (st,)
        if len(st) != len(r):
            raise ConfigError(f"AnalogNAS ST needs one entry (0 or 1) per main block; got {len(st)} for {len(r)}.")
        if any(str(x).strip() not in ("0", "1", "False", "True") for x in st):
            raise ConfigError(f"AnalogNAS ST entries are 0 or 1; got {tuple(st)}.")
        if "M" in row and int(row["M"]) != len(r):
            raise ConfigError(f"AnalogNAS M is {row['M']} but R, B, CT and WF have {len(r)} entries.")
        try:
            blocks = tuple(
                MainBlock(int(ri), int(bi), str(ci).strip(), float(wi), str(si).strip() in ("1", "True"))
                for ri, bi, ci, wi, si in zip(r, b, ct, wf, st)
            )
            return MacroArch(int(row["OC0"]), int(row["KS0"]), blocks)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"AnalogNAS architecture {dict(row)} has a value of the wrong type: {err}.") from None

    def _example(self) -> str:
        return "OC0=32,KS0=5,R=(3,3),B=(2,2),CT=(A,A),WF=(3,3)"

    def _to_string(self, arch: MacroArch) -> str:
        row = arch.table_row()
        skips = f",ST={_format(row['ST'])}" if any(row["ST"]) else ""
        return (
            f"OC0={row['OC0']},KS0={row['KS0']},R={_format(row['R'])},B={_format(row['B'])},"
            f"CT={_format(row['CT'])},WF={_format(row['WF'])}{skips}"
        )

    def _from_string(self, text: str) -> MacroArch:
        match = STRING_PATTERN.match(re.sub(r"\s+", "", text))
        if match is None:
            raise ConfigError(f"Malformed AnalogNAS architecture string {text!r}; expected e.g. '{self._example()}'.")
        row = {k: match[k] for k in ("OC0", "KS0")}
        for key in ("R", "B", "CT", "WF", "ST"):
            if match[key] is not None:
                row[key] = [x for x in match[key].split(",") if x]
        return self._validate(row)

    # ------------------------------------------------------------------ structure
    def widths(self, arch: Any) -> list[int]:
        """Output channels of each main block: ``c_m = round(c_{m-1} · WF_m)``, ``c_0 = OC0``."""
        arch = self.validate(arch)
        widths, c = [], arch.out_channels0
        for block in arch.blocks:
            c = max(1, round(c * block.widening))
            widths.append(c)
        return widths

    def _residual_blocks(self, arch: MacroArch) -> list[tuple[int, int, int, str, int]]:
        """``(c_in, c_out, stride, conv_block, branches)`` of every residual block in order."""
        out, c_in = [], arch.out_channels0
        for m, (block, c_out) in enumerate(zip(arch.blocks, self.widths(arch))):
            for r in range(block.residual_blocks):
                stride = 2 if m > 0 and r == 0 else 1
                out.append((c_in, c_out, stride, block.conv_block, block.branches))
                c_in = c_out
        return out

    def _main_blocks(self, arch: MacroArch) -> list[tuple[int, int, int, bool, list]]:
        """``(c_in, c_out, stride, ST, residual blocks)`` of every main block (residual blocks as listed above)."""
        out, c_in, rest = [], arch.out_channels0, self._residual_blocks(arch)
        for m, (block, c_out) in enumerate(zip(arch.blocks, self.widths(arch))):
            out.append((c_in, c_out, 2 if m > 0 else 1, block.skip, rest[: block.residual_blocks]))
            rest, c_in = rest[block.residual_blocks :], c_out
        return out

    def tokens(self, arch: Any) -> list[str]:
        """``stem_k{KS0}``, then ``{CT}_b{B}`` per residual block (``/2`` where it down-samples), then ``head``."""
        arch = self.validate(arch)
        body = [f"{ct}_b{b}" + ("/2" if s == 2 else "") for _, _, s, ct, b in self._residual_blocks(arch)]
        return [f"stem_k{arch.kernel_size0}", *body, "head"]

    def graph(self, arch: Any) -> tuple[np.ndarray, np.ndarray]:
        """A chain input → stem → residual blocks → output; one-hot over :data:`NODE_TYPES`."""
        blocks = self._residual_blocks(self.validate(arch))
        n = len(blocks) + 3
        onehot = np.zeros((n, len(NODE_TYPES)), dtype=np.float32)
        onehot[0, 0] = onehot[1, 1] = onehot[-1, -1] = 1
        for i, (*_, ct, _) in enumerate(blocks):
            onehot[i + 2, NODE_TYPES.index(ct)] = 1
        return np.eye(n, k=1, dtype=np.float32), onehot

    def depth(self, arch: Any) -> int:
        """Stem + 3 convolutions per bottleneck (A, C) or 2 per basic (B, D) residual block + classifier."""
        blocks = self._residual_blocks(self.validate(arch))
        return 1 + sum(3 if ct in BOTTLENECKS else 2 for *_, ct, _ in blocks) + 1

    # ------------------------------------------------------------------ budget
    def _params_of_vectors(self, vectors: np.ndarray) -> np.ndarray:
        """Exact trainable parameters of the networks of many encodings at once (convs, BN affine, linear)."""
        v = np.asarray(vectors, dtype=np.int64)
        oc0 = np.asarray(self.out_channels0, dtype=np.float64)[v[:, 0]]
        ks0 = np.asarray(self.kernel_sizes0, dtype=np.float64)[v[:, 1]]
        n_main = v[:, 2] + 1
        wf = np.asarray(self.widening_factors)
        total = self.input_channels * oc0 * ks0**2 + 2 * oc0
        c_prev = oc0
        for m in range(self.max_main_blocks):
            active = m < n_main
            r, b, ct, w, st = (v[:, 3 + GENES * m + k] for k in range(GENES))
            r, b = r + 1, b + 1
            c = np.maximum(1.0, np.rint(c_prev * wf[w]))
            bottleneck = (ct == CONV_BLOCKS.index("A")) | (ct == CONV_BLOCKS.index("C"))
            mid = np.maximum(1.0, np.rint(c / 4))

            def branch(c_in, c=c, mid=mid, bottleneck=bottleneck):
                basic = 9 * c_in * c + 9 * c * c + 4 * c
                bottle = c_in * mid + 9 * mid * mid + mid * c + 4 * mid + 2 * c
                return np.where(bottleneck, bottle, basic)

            projection = np.where((m > 0) | (c_prev != c), c_prev * c + 2 * c, 0)
            first = b * branch(c_prev) + projection
            rest = (r - 1) * b * branch(c)
            total = total + np.where(active, first + rest + np.where(st == 1, projection, 0), 0)
            c_prev = np.where(active, c, c_prev)
        return total + c_prev * self.num_classes + self.num_classes

    def params(self, arch: Any) -> int:
        """Trainable parameters of :meth:`build` ``(arch, num_classes, (input_channels, H, W))``, in closed form."""
        return int(self._params_of_vectors(self.encode(arch)[None])[0])

    def weights(self, arch: Any) -> int:
        """Convolution and linear weights of :meth:`build` (no BatchNorm, no biases): what analog tiles hold.

        Thesis Table 5.4's "Weights" column. Counted on the meta device, so no memory is allocated.
        """
        with torch.device("meta"):
            net = self.build(arch, self.num_classes, (self.input_channels, 32, 32))
        return sum(m.weight.numel() for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))

    def constraint(self) -> str | None:
        if self.max_params is None:
            return None
        return f"at most {self.max_params:,} parameters for {self.num_classes} classes"

    def _feasible(self, vectors: np.ndarray) -> np.ndarray:
        if self.max_params is None:
            return np.ones(len(vectors), dtype=bool)
        return self._params_of_vectors(vectors) <= self.max_params

    # ------------------------------------------------------------------ mutation (thesis §5.3.3)
    def mutate(self, arch: Any, rng: np.random.Generator, prob: float | None = None) -> MacroArch:
        """AnalogNAS mutations: depth (±M, ±R, conv block type), width (WF, ±B, OC0) and other (KS0).

        Each class applies with its thesis probability (0.8, 0.8, 0.5; all ``prob`` when given), one mutation
        drawn uniformly within the class; at least one applies. A mutant that raises a widening factor, R or M to
        its highest value is kept with probability :attr:`max_value_prob` (the T100/T200 rule). Up to 100 mutants
        are drawn until one differs from ``arch`` and keeps to the budget; ``arch`` comes back unchanged when none
        does.
        """
        arch = self.validate(arch)
        probs = MUTATION_PROBS if prob is None else dict.fromkeys(MUTATION_PROBS, prob)
        keep_max = self.effective_max_value_prob()
        for _ in range(100):
            chosen = [k for k, p in probs.items() if rng.random() < p]
            if not chosen:
                chosen = [list(probs)[rng.integers(len(probs))]]
            child = arch
            for kind in chosen:
                child = self._mutate_once(child, kind, rng)
            if child == arch or not self._feasible(self._encode(child)[None])[0]:
                continue
            if keep_max < 1.0 and self.reaches_max(arch, child) and rng.random() >= keep_max:
                continue
            return child
        return arch

    def effective_max_value_prob(self) -> float:
        """:attr:`max_value_prob`, or its default: 0.2 under a budget of at most 200,000 parameters, else 1."""
        if self.max_value_prob is not None:
            return float(self.max_value_prob)
        return 0.2 if self.max_params is not None and self.max_params <= 200_000 else 1.0

    def reaches_max(self, parent: MacroArch, child: MacroArch) -> bool:
        """Whether ``child`` raises M, or a main block's R or widening factor, to its highest value."""
        if len(child.blocks) == self.max_main_blocks > len(parent.blocks):
            return True
        top_r, top_wf = self.max_residual_blocks, self.widening_factors[-1]
        for i, block in enumerate(child.blocks):
            before = parent.blocks[i] if i < len(parent.blocks) else None
            if block.residual_blocks == top_r and (before is None or before.residual_blocks < top_r):
                return True
            if block.widening == top_wf and (before is None or before.widening < top_wf):
                return True
        return False

    def _mutate_once(self, arch: MacroArch, kind: str, rng: np.random.Generator) -> MacroArch:
        blocks = list(arch.blocks)
        i = int(rng.integers(len(blocks)))
        block = blocks[i]

        def step(value: int, high: int) -> int:
            if high == 1:
                return value
            new = value + (1 if rng.random() < 0.5 else -1)
            return value - 1 if new > high else (value + 1 if new < 1 else new)

        def other(value: Any, choices: Sequence[Any]) -> Any:
            rest = [c for c in choices if c != value]
            return rest[int(rng.integers(len(rest)))] if rest else value

        oc0, ks0 = arch.out_channels0, arch.kernel_size0
        op = int(rng.integers(3 if kind != "other" else 2))
        if kind == "depth" and op == 0:  # add or remove a main block
            m = step(len(blocks), self.max_main_blocks)
            if m > len(blocks):
                blocks.append(self._decode(self._draw(1, rng, "uniform")[0]).blocks[0])
            else:
                blocks = blocks[:m]
        elif kind == "depth" and op == 1:
            blocks[i] = replace(block, residual_blocks=step(block.residual_blocks, self.max_residual_blocks))
        elif kind == "depth":
            blocks[i] = replace(block, conv_block=other(block.conv_block, CONV_BLOCKS))
        elif kind == "width" and op == 0:
            blocks[i] = replace(block, widening=other(block.widening, self.widening_factors))
        elif kind == "width" and op == 1:
            blocks[i] = replace(block, branches=step(block.branches, self.max_branches))
        elif kind == "width":
            oc0 = other(oc0, self.out_channels0)
        elif op == 0:
            ks0 = other(ks0, self.kernel_sizes0)
        else:  # ST: add a skip around main block i ([AMBIG] removes it when it has one, so the move is reversible)
            blocks[i] = replace(block, skip=not block.skip)
        return MacroArch(oc0, ks0, tuple(blocks))

    # ------------------------------------------------------------------ networks
    def latency_ops(self, arch: Any, num_classes: int, input_shape: Sequence[int]) -> list[OpSpec]:
        """Stem, every residual block (branches, skip and sum as one op), each ST projection, and the classifier."""
        arch = self.validate(arch)
        c_in, h, w = (int(s) for s in input_shape)
        oc0, k0 = arch.out_channels0, arch.kernel_size0
        ops = [OpSpec(f"stem:k{k0}:{c_in}-{oc0}@{c_in}x{h}x{w}", lambda: _stem(c_in, oc0, k0), (c_in, h, w))]
        for mi, mo, ms, skip, residual in self._main_blocks(arch):
            if skip and (ms != 1 or mi != mo):
                factory = lambda mi=mi, mo=mo, ms=ms: _projection(mi, mo, ms)  # noqa: E731
                ops.append(OpSpec(f"skip:{mi}-{mo}s{ms}@{mi}x{h}x{w}", factory, (mi, h, w)))
            for ci, co, s, ct, b in residual:
                factory = lambda ci=ci, co=co, s=s, ct=ct, b=b: ResidualBlock(ci, co, s, ct, b)  # noqa: E731
                ops.append(OpSpec(f"res:{ct}x{b}:{ci}-{co}s{s}@{ci}x{h}x{w}", factory, (ci, h, w)))
                h, w = (h - 1) // s + 1, (w - 1) // s + 1
        c_last = self.widths(arch)[-1]
        head = lambda: _head(c_last, num_classes)  # noqa: E731
        ops.append(OpSpec(f"head:{c_last}-{num_classes}@{c_last}x{h}x{w}", head, (c_last, h, w)))
        return ops

    def build(self, arch: Any, num_classes: int = 10, input_shape: Sequence[int] = (3, 32, 32)) -> nn.Module:
        arch = self.validate(arch)
        layers = [_stem(int(input_shape[0]), arch.out_channels0, arch.kernel_size0)]
        for mi, mo, ms, skip, residual in self._main_blocks(arch):
            blocks = [ResidualBlock(*r) for r in residual]
            layers += [MainBlockSkip(blocks, mi, mo, ms)] if skip else blocks
        layers.append(_head(self.widths(arch)[-1], num_classes))
        return nn.Sequential(*layers)
