"""TFNO: merges happen on the dense reconstruction, never on the factors."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_tfno

import neuralop_merge as nm

CONV = "fno_blocks.convs.0.weight"


def dense(model, key: str = CONV) -> torch.Tensor:
    module = model.get_submodule(key)
    return module.to_tensor().detach()


@pytest.mark.parametrize("factorization", ["tucker", "cp"])
def test_dense_output_equals_the_combination_of_reconstructed_weights(factorization):
    anchor, low, high = (tiny_tfno(seed, factorization) for seed in range(3))
    merged = nm.merge("fixed_alpha", anchor=anchor, experts=[low, high], alpha=0.4)
    assert type(merged) is type(anchor)
    assert merged.fno_blocks.convs[0].weight.name == "Dense"
    expected = 0.3 * dense(low) + 0.7 * dense(high)
    torch.testing.assert_close(dense(merged), expected, rtol=1e-5, atol=1e-6)
    # Interpolating the factors is a different (wrong) model: make sure we did not.
    factor_mix = type(low.fno_blocks.convs[0].weight)(
        **_mixed_factors(low.fno_blocks.convs[0].weight, high.fno_blocks.convs[0].weight, 0.3, 0.7)
    ).to_tensor()
    assert not torch.allclose(factor_mix, expected, rtol=1e-3, atol=1e-4)


def _mixed_factors(a, b, wa: float, wb: float) -> dict:
    params = {name: wa * pa.detach() + wb * pb.detach() for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters())}
    factors = [params.pop(f"factors.factor_{i}") for i in range(len(a.factors))]
    return {**params, "factors": factors}


def test_dense_output_runs_like_the_dense_reconstruction():
    anchor, low, high = (tiny_tfno(seed) for seed in range(3))
    merged = nm.merge("fixed_alpha", anchor=anchor, experts=[low, high], alpha=-1.0)
    x = torch.randn(2, 1, 16, 16)
    torch.testing.assert_close(merged(x), low(x), rtol=1e-4, atol=1e-5)


def test_refactorized_output_keeps_format_and_reports_the_error():
    anchor, low, high = (tiny_tfno(seed) for seed in range(3))
    merged = nm.merge("fixed_alpha", anchor=anchor, experts=[low, high], alpha=0.5, output="refactorize")
    weight = merged.fno_blocks.convs[0].weight
    assert weight.name == "Tucker" and weight.rank == low.fno_blocks.convs[0].weight.rank
    errors = merged.provenance["refactorization_error"]
    assert set(errors) == {CONV, "fno_blocks.convs.1.weight"}
    target = 0.25 * dense(low) + 0.75 * dense(high)
    measured = (torch.linalg.vector_norm(dense(merged) - target) / torch.linalg.vector_norm(target)).item()
    assert errors[CONV] == pytest.approx(measured, rel=1e-3, abs=1e-6)


def test_refactorizing_an_endpoint_is_nearly_lossless():
    anchor, low, high = (tiny_tfno(seed) for seed in range(3))
    merged = nm.merge("fixed_alpha", anchor=anchor, experts=[low, high], alpha=1.0, output="refactorize")
    assert max(merged.provenance["refactorization_error"].values()) < 1e-4
