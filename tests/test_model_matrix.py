"""Every model class of ``neuralop.models`` (and a plain nn.Module) merges exactly in dense space,
α = ±1 reproduces the experts, and merged models round-trip through save/load and the class's own
checkpoints."""

from __future__ import annotations

import copy
import importlib.util
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from conftest import Toy
from neuralop.models import CODANO, FNO, FNOGNO, GINO, TFNO, UNO, UQNO
from neuralop.models.base_model import BaseModel
from tltorch import FactorizedTensor

import neuralop_merge as nm
from neuralop_merge.factorized import factorized_modules
from neuralop_merge.weights import weights_of

HARMONICS = importlib.util.find_spec("torch_harmonics") is not None
NO_HARMONICS = "torch_harmonics is not installed (SFNO and LocalNO need it; 0.8.0 builds from source for torch 2.13)"
CODANO_KWARGS = dict(
    output_variable_codimension=1, hidden_variable_codimension=2, lifting_channels=4, projection_channels=4,
    n_layers=2, n_modes=[[4, 4], [4, 4]], n_heads=[1, 1], per_layer_scaling_factors=[[1, 1], [1, 1]],
    attention_scaling_factors=[1, 1], variable_ids=["a"],
)


@dataclass(frozen=True)
class Case:
    """A tiny model of one class, and an input its forward takes (None: compare weights only)."""

    make: Callable[[], torch.nn.Module]
    example: Callable[[], tuple[Any, ...]] | None = None
    init_kwargs: dict[str, Any] | None = None


def grid(*shape: int, dtype: torch.dtype = torch.float32) -> Callable[[], tuple[torch.Tensor]]:
    return lambda: (torch.randn(*shape, generator=torch.Generator().manual_seed(0), dtype=dtype),)


def fno(**kwargs: Any) -> FNO:
    return FNO(**{"n_modes": (4, 4), "in_channels": 1, "out_channels": 1, "hidden_channels": 4, "n_layers": 2, **kwargs})


def uno(**kwargs: Any) -> UNO:
    return UNO(in_channels=1, out_channels=1, hidden_channels=4, n_layers=2, uno_out_channels=[4, 4],
               uno_n_modes=[[4, 4], [4, 4]], uno_scalings=[[1, 1], [1, 1]], channel_mlp_skip="linear", **kwargs)


def harmonics(name: str, **kwargs: Any) -> torch.nn.Module:
    import neuralop.models

    return getattr(neuralop.models, name)(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=4,
                                          n_layers=2, **kwargs)


CASES: dict[str, Case] = {
    "fno-1d-complex": Case(lambda: fno(n_modes=(4,), complex_data=True), grid(1, 1, 16, dtype=torch.cfloat)),
    "fno-2d": Case(fno, grid(1, 1, 16, 16)),
    "fno-3d": Case(lambda: fno(n_modes=(2, 2, 2)), grid(1, 1, 6, 6, 6)),
    "fno-complexdense": Case(lambda: fno(factorization="ComplexDense"), grid(1, 1, 16, 16)),
    "tfno-default": Case(lambda: TFNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=4,
                                      n_layers=2), grid(1, 1, 16, 16)),
    "tfno-cp": Case(lambda: fno(factorization="cp", rank=0.5), grid(1, 1, 16, 16)),
    "tfno-tt": Case(lambda: fno(factorization="tt", rank=0.5), grid(1, 1, 16, 16)),
    "uno": Case(uno, grid(1, 1, 16, 16)),
    "uno-tucker": Case(lambda: uno(factorization="tucker", rank=0.5), grid(1, 1, 16, 16)),
    # CODANO keeps too few of its arguments to read them back: they are given to save_model.
    # Its layers are Tucker-factorized by default, so the dense merge is the dense-layer CODANO.
    "codano": Case(lambda: CODANO(**CODANO_KWARGS), grid(1, 1, 16, 16),
                   {**CODANO_KWARGS, "layer_kwargs": {"factorization": None}}),
    "uqno": Case(lambda: UQNO(fno()), grid(1, 1, 16, 16)),
    "gino": Case(lambda: GINO(in_channels=1, out_channels=1, gno_coord_dim=2, fno_n_modes=(4, 4),
                              fno_hidden_channels=4, fno_n_layers=1, fno_in_channels=2, gno_use_open3d=False,
                              gno_use_torch_scatter=False, in_gno_channel_mlp_hidden_layers=[4],
                              out_gno_channel_mlp_hidden_layers=[4], gno_embed_channels=4,
                              fno_lifting_channel_ratio=1, projection_channel_ratio=1)),
    "fnogno": Case(lambda: FNOGNO(in_channels=1, out_channels=1, gno_coord_dim=2, fno_n_modes=(4, 4),
                                  fno_hidden_channels=4, fno_n_layers=1, gno_use_open3d=False,
                                  gno_use_torch_scatter=False, gno_channel_mlp_hidden_layers=[4],
                                  gno_embed_channels=4)),
    "plain-module": Case(Toy, grid(2, 3)),
}
HARMONICS_CASES: dict[str, Case] = {
    "sfno": Case(lambda: harmonics("SFNO"), grid(1, 1, 8, 16)),
    "sfno-tucker": Case(lambda: harmonics("SFNO", factorization="tucker", rank=0.5), grid(1, 1, 8, 16)),
    "localno-disco": Case(lambda: harmonics("LocalNO", default_in_shape=(8, 8)), grid(1, 1, 8, 8)),
}
ALL_CASES = [pytest.param(name, case, id=name) for name, case in CASES.items()] + [
    pytest.param(name, case, id=name, marks=pytest.mark.skipif(not HARMONICS, reason=NO_HARMONICS))
    for name, case in HARMONICS_CASES.items()
]


def fine_tuned(anchor: torch.nn.Module, seed: int) -> torch.nn.Module:
    """The anchor with every floating-point tensor moved a little, as fine-tuning leaves it."""
    expert = copy.deepcopy(anchor)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in expert.parameters():
            noise = torch.randn(parameter.shape, generator=generator, dtype=parameter.real.dtype)
            parameter.add_(0.05 * noise.to(parameter.dtype))
    return expert


# UQNO's nested BaseModels make neuraloperator warn about its own state-dict metadata.
pytestmark = pytest.mark.filterwarnings("ignore:Attempting to update metadata:UserWarning")


def outputs(model: torch.nn.Module, case: Case) -> list[torch.Tensor]:
    with torch.no_grad():
        result = model.eval()(*case.example())
    return list(result) if isinstance(result, tuple) else [result]


def assert_same_function(merged: torch.nn.Module, expert: torch.nn.Module, case: Case) -> None:
    """Equal dense weights, and equal outputs where the class has a grid forward."""
    merged_view, expert_view = weights_of(merged, "merged").tensors, weights_of(expert, "expert").tensors
    assert merged_view.keys() == expert_view.keys()
    for key, value in expert_view.items():
        torch.testing.assert_close(merged_view[key], value, rtol=1e-6, atol=1e-7, msg=key)
    if case.example is not None:
        for got, want in zip(outputs(merged, case), outputs(expert, case)):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("name", "case"), ALL_CASES)
def test_every_strategy_merges_and_the_line_ends_are_the_experts(name, case):
    torch.manual_seed(0)
    anchor = case.make()
    low, high, third = (fine_tuned(anchor, seed) for seed in (1, 2, 3))
    ccm = nm.CCM(anchor, low, high, low_coord=1.0, high_coord=3.0)
    assert not ccm.inputs.anchor.factorized_keys or all(
        m.name.lower().endswith("dense") for m in factorized_modules(ccm.at(0.0)).values()
    )
    assert_same_function(ccm.at(-1.0), low, case)
    assert_same_function(ccm.at(1.0), high, case)
    runs = {"average": {}, "task_arithmetic": {"scale": 0.5}, "fixed_alpha": {"alpha": 0.3},
            "ccm_coord": {"mu": 2.5, "low_coord": 1.0, "high_coord": 3.0}}
    for strategy, params in runs.items():
        merged = nm.merge(strategy, anchor=None if strategy == "average" else anchor, experts=[low, high], **params)
        assert type(merged) is type(anchor) and "refactorization_error" not in merged.provenance, strategy
    with pytest.warns(UserWarning, match="record no anchor fingerprint") as caught:
        surface = nm.CCM.from_experts(anchor, {"a": low, "b": high, "c": third}, coords={"a": 1, "b": 3, "c": 2})
    ours = [warning for warning in caught if "anchor fingerprint" in str(warning.message)]  # neuraloperator warns too
    assert ours[0].filename == __file__  # the warning names the caller's line, not the package's
    assert isinstance(surface, nm.CCMSurface) and type(surface.from_coord(2.5)) is type(anchor)
    two_expert_surface = nm.CCMSurface(anchor, {"a": low, "b": high}, {"a": 1.0, "b": 3.0})
    assert_same_function(two_expert_surface.from_coord(3.0), high, case)


@pytest.mark.parametrize(("name", "case"), ALL_CASES)
def test_merged_model_round_trips_through_checkpoints(name, case, tmp_path):
    torch.manual_seed(0)
    anchor = case.make()
    merged = nm.CCM(anchor, fine_tuned(anchor, 1), fine_tuned(anchor, 2), low_coord=1.0, high_coord=3.0).at(0.5)
    nm.save_model(merged, tmp_path, name="merged", init_kwargs=case.init_kwargs)
    # No template: the provenance records the architecture. A class outside neuraloperator is
    # named by the caller, never imported because a file says so.
    model_class = type(merged) if isinstance(merged, Toy) else None
    again = nm.load_model(tmp_path, name="merged", model_class=model_class)
    assert type(again) is type(merged) and nm.fingerprint(again) == nm.fingerprint(merged)
    assert_same_function(again, merged, case)
    if isinstance(merged, BaseModel):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            own = type(merged).from_checkpoint(tmp_path, "merged")
        assert nm.fingerprint(own) == nm.fingerprint(merged)


# UNO, CODANO and plain modules have no save_checkpoint.
NOT_OWN_CHECKPOINTS = {"uno", "uno-tucker", "codano", "plain-module"}


@pytest.mark.parametrize(("name", "case"), [p for p in ALL_CASES if p.values[0] not in NOT_OWN_CHECKPOINTS])
def test_load_model_reads_the_class_own_save_checkpoint(name, case, tmp_path):
    torch.manual_seed(0)
    model = case.make()
    model.save_checkpoint(tmp_path, "own")
    loaded = nm.load_model(tmp_path)
    assert type(loaded) is type(model) and nm.fingerprint(loaded) == nm.fingerprint(model)


def test_uqno_with_another_residual_model_loads_with_a_template(tmp_path):
    # neuraloperator pickles the residual model into the metadata file, which is never unpickled:
    # without a template the error says what to pass; with one, the checkpoint loads exactly.
    torch.manual_seed(0)
    model = UQNO(fno(), residual_model=FNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=6, n_layers=1))
    model.save_checkpoint(tmp_path, "own")
    with pytest.raises(nm.CheckpointError, match="residual model differs from its base model.*pass template=UQNO"):
        nm.load_model(tmp_path)
    template = UQNO(fno(), residual_model=FNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=6, n_layers=1))
    loaded = nm.load_model(tmp_path, template=template)
    assert nm.fingerprint(loaded) == nm.fingerprint(model)


def test_a_plain_module_class_is_not_imported_from_a_file(tmp_path):
    nm.save_model(Toy(), tmp_path)
    with pytest.raises(nm.CheckpointError, match="conftest.Toy, which is not a neuraloperator model; pass model_class="):
        nm.load_model(tmp_path)


class OpaqueFactorizedLayer(torch.nn.Module):
    """A Tucker-factorized layer that fixes its contraction at construction, without neuraloperator's
    ``get_contract_fun``: no dense weight can be swapped in."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = FactorizedTensor.new((3, 3, 2), rank=0.5, factorization="tucker")
        self.weight.normal_(0, 0.5)
        self._contract = tucker_contraction

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._contract(x, self.weight)


def tucker_contraction(x: torch.Tensor, weight: FactorizedTensor) -> torch.Tensor:
    return x @ weight.to_tensor().sum(-1)


def test_a_layer_without_a_dense_form_is_refactorized_with_a_warning():
    torch.manual_seed(0)
    anchor = OpaqueFactorizedLayer()
    low, high = fine_tuned(anchor, 1), fine_tuned(anchor, 2)
    with pytest.warns(UserWarning, match="re-factorizing the merged weights instead") as caught:
        merged = nm.merge("fixed_alpha", anchor=anchor, experts=[low, high], alpha=0.5)
    assert caught[0].filename == __file__
    assert merged.weight.name == "Tucker" and set(merged.provenance["refactorization_error"]) == {"weight"}
