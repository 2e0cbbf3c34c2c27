"""Merges from checkpoint paths stream their memory-mapped inputs: same bits, no aliasing."""

from __future__ import annotations

import pytest
import torch
from conftest import Toy, tensors

import neuralop_merge as nm
from neuralop_merge import pages
from neuralop_merge.io import safe_load
from neuralop_merge.weights import fingerprint


@pytest.fixture
def tiny_chunks(monkeypatch):
    """Chunks of 256 bytes, so that every tensor of a tiny model spans several."""
    monkeypatch.setattr(pages, "CHUNK_BYTES", 256)


@pytest.mark.parametrize("strategy,params", [
    ("fixed_alpha", {"alpha": 0.3}), ("task_arithmetic", {"scale": 0.7}), ("ccm_coord", {
        "mu": 1.5, "low_coord": 1.0, "high_coord": 2.0}),
])
def test_streamed_merge_is_bit_identical_to_the_in_memory_merge(tmp_path, fno_trio, tiny_chunks, strategy, params):
    for name, model in zip("alh", fno_trio):
        nm.save_model(model, tmp_path / name)
    streamed = nm.merge(strategy, anchor=tmp_path / "a", experts=[tmp_path / "l", tmp_path / "h"], **params)
    in_memory = nm.merge(strategy, anchor=fno_trio[0], experts=list(fno_trio[1:]), **params)
    assert tensors(streamed).keys() == tensors(in_memory).keys()
    assert all(torch.equal(tensors(streamed)[k], v) for k, v in tensors(in_memory).items())
    fingerprints = [record["fingerprint"] for record in streamed.provenance["inputs"]]
    assert fingerprints == [fingerprint(model) for model in fno_trio]


def test_releasing_pages_never_changes_a_tensor(tmp_path, tiny_chunks):
    anonymous = torch.arange(1 << 20, dtype=torch.float32)
    pages.release(anonymous)  # anonymous memory: must be left alone, or it would read as zeros
    assert torch.equal(anonymous, torch.arange(1 << 20, dtype=torch.float32))
    torch.save({"w": torch.arange(1 << 20, dtype=torch.float32)}, tmp_path / "w.pt")
    mapped = safe_load(tmp_path / "w.pt", mmap=True)["w"]
    expected = mapped.clone()
    pages.release(mapped)  # a private file mapping: the pages come back from the file
    assert torch.equal(mapped, expected)


def test_the_merge_result_shares_no_buffer_with_its_inputs(toy_trio):
    merged = nm.merge("average", experts=list(toy_trio[1:]))
    merged.steps.add_(1)
    assert int(toy_trio[1].steps) == 7 and isinstance(merged, Toy)
