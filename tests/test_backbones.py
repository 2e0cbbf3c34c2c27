"""Every strategy, CCM, the merge surface and the diagnostics on FNO, TFNO (Tucker, CP), UNO and a DPOT-style model."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import tiny_fno, tiny_tfno
from neuralop.models import TFNO, UNO

import neuralop_merge as nm
from neuralop_merge.backbones import DPOTLite
from neuralop_merge.diagnostics import alpha_curves, layer_report, wrong_sign_control
from neuralop_merge.metrics import prefix_error
from neuralop_merge.rollout import rollout
from neuralop_merge.surface import CCMSurface
from neuralop_merge.weights import weights_of

def tiny_uno(seed: int) -> UNO:
    torch.manual_seed(seed)
    return UNO(in_channels=1, out_channels=1, hidden_channels=8, n_layers=2, uno_out_channels=[8, 8],
               uno_n_modes=[[4, 4], [4, 4]], uno_scalings=[[1, 1], [1, 1]], channel_mlp_skip="linear")


def tiny_dpot(seed: int, mixing: str):
    torch.manual_seed(seed)
    return DPOTLite(1, 1, embed_dim=8, patch_size=4, n_layers=2, modes=2, mixing=mixing)


BACKBONES = {
    "fno": tiny_fno,
    "tfno-tucker": lambda seed: tiny_tfno(seed, "tucker"),
    "tfno-cp": lambda seed: tiny_tfno(seed, "cp"),
    "uno": tiny_uno,
    "dpot-afno": lambda seed: tiny_dpot(seed, "afno"),
    "dpot-attention": lambda seed: tiny_dpot(seed, "attention"),
}


def fine_tuned(anchor: torch.nn.Module, seed: int, scale: float = 0.05) -> torch.nn.Module:
    """A copy of the anchor with every parameter moved a little, as fine-tuning leaves it."""
    expert = copy.deepcopy(anchor)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in expert.parameters():
            noise = torch.randn(parameter.shape, generator=generator, dtype=parameter.real.dtype)
            parameter.add_(scale * noise.to(parameter.dtype) * (parameter.abs().mean() + 1e-3))
    return expert


@pytest.fixture(params=sorted(BACKBONES))
def trio(request):
    anchor = BACKBONES[request.param](0).eval()
    return request.param, anchor, fine_tuned(anchor, 1), fine_tuned(anchor, 2)


def dense(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return weights_of(model, "m").tensors


def x0() -> torch.Tensor:
    return torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))


def test_every_strategy_merges_and_runs(trio):
    name, anchor, low, high = trio
    ccm = nm.CCM(anchor, low, high, low_coord=1.0, high_coord=3.0)
    frames = rollout(ccm.at(1.5), x0(), 2)
    runs = {
        "average": {},
        "task_arithmetic": {"scale": 0.5},
        "fixed_alpha": {"alpha": 0.3},
        "ccm_coord": {"mu": 2.5, "low_coord": 1.0, "high_coord": 3.0},
        "ccm_prefix": {"frames": frames, "method": "grid", "n_grid": 5},
    }
    for strategy, params in runs.items():
        uses_anchor = strategy != "average"
        merged = nm.merge(strategy, anchor=anchor if uses_anchor else None, experts=[low, high], **params)
        with torch.no_grad():
            out = merged.eval()(x0())
        assert out.shape == (2, 1, 16, 16) and torch.isfinite(out).all(), (name, strategy)
    assert merged.provenance["alpha"] == 1.5  # ccm_prefix found the α that generated the frames
    expected = {k: 0.35 * v + 0.65 * dense(high)[k] for k, v in dense(low).items()}
    merged = dense(nm.merge("fixed_alpha", anchor=anchor, experts=[low, high], alpha=0.3))
    for key, value in expected.items():
        torch.testing.assert_close(merged[key], value, rtol=1e-5, atol=1e-6)


def test_ccm_surface_and_diagnostics(trio):
    name, anchor, low, high = trio
    ccm = nm.CCM(anchor, low, high, low_coord=1.0, high_coord=3.0)
    for alpha, expert in ((-1.0, low), (1.0, high)):
        at = dense(ccm.at(alpha))
        for key, value in dense(expert).items():
            torch.testing.assert_close(at[key], value, rtol=1e-5, atol=1e-6)
    rows = layer_report(ccm)
    overall = rows[-1]
    assert overall.name == "<overall>" and overall.numel == sum(row.numel for row in rows[:-1])
    assert 0 < overall.direction_share < 1 and -1 <= overall.cosine <= 1
    frames = rollout(ccm.at(0.0), x0(), 2)
    (curve,) = alpha_curves(ccm.at, {"r": frames}, [-1.0, 0.0]).values()
    assert curve[1][1] < 1e-5 < curve[1][0]
    (control,) = wrong_sign_control(ccm, {2.5: frames})  # c(2.5) = 0.5 on this line
    assert control.error == pytest.approx(prefix_error(ccm.at(0.5), frames), rel=1e-6)
    assert control.wrong_error == pytest.approx(prefix_error(ccm.at(-0.5), frames), rel=1e-6)

    third = fine_tuned(anchor, 3)
    surface = CCMSurface(anchor, {"a": low, "b": high, "c": third}, {"a": 1.0, "b": 3.0, "c": 2.0})
    residual = surface.fit_residuals()[-1]
    assert 0 < residual.relative_total < 1
    # μ = 4 is c = 1.5 on [1, 3]: the surface's own weights there, as the ccm_fit strategy merges them.
    fitted = nm.merge("ccm_fit", anchor=anchor, experts=[low, high, third], expert_coords=[1.0, 3.0, 2.0], target=4.0)
    for key, value in dense(fitted).items():
        torch.testing.assert_close(dense(surface.from_coord(4.0))[key], value)


@pytest.mark.parametrize("factorization", ["tucker", "cp"])
def test_tfno_merges_densely_or_refactorized_with_reported_error(factorization):
    anchor = tiny_tfno(0, factorization)
    low, high = fine_tuned(anchor, 1), fine_tuned(anchor, 2)
    as_dense = nm.merge("fixed_alpha", anchor=anchor, experts=[low, high], alpha=0.5)
    assert type(as_dense) is TFNO and as_dense.fno_blocks.convs[0].weight.name.lower().endswith("dense")
    assert "refactorization_error" not in as_dense.provenance
    refit = nm.merge("fixed_alpha", anchor=anchor, experts=[low, high], alpha=0.5, output="refactorize")
    assert refit.fno_blocks.convs[0].weight.name.lower().startswith(factorization)
    errors = refit.provenance["refactorization_error"]
    assert set(errors) == {"fno_blocks.convs.0.weight", "fno_blocks.convs.1.weight"}
    assert all(0 <= error < 0.2 for error in errors.values())
    exact, refactorized = dense(as_dense), dense(refit)
    key = "fno_blocks.convs.0.weight"
    relative = (torch.linalg.vector_norm(refactorized[key] - exact[key]) / torch.linalg.vector_norm(exact[key])).item()
    assert relative == pytest.approx(errors[key], rel=1e-3, abs=1e-6)
    if factorization == "tucker":  # the CCM object re-factorizes the same way (CP's ALS is slower)
        ccm = nm.CCM(anchor, low, high, low_coord=1.0, high_coord=2.0, output="refactorize")
        assert set(ccm.at(2.0).provenance["refactorization_error"]) == set(errors)


def test_dpot_backbone_shapes_and_validation():
    model = DPOTLite(2, 2, embed_dim=8, patch_size=4, modes=2)
    assert model(torch.randn(3, 2, 32, 16)).shape == (3, 2, 32, 16)
    with pytest.raises(ValueError, match="multiple of patch_size"):
        model(torch.randn(1, 2, 30, 16))
    with pytest.raises(ValueError, match="mixing"):
        DPOTLite(mixing="mlp")
