"""Checkpoint I/O: neuraloperator's layout, no pickled code executed, atomic writes."""

from __future__ import annotations

import json
import os

import pytest
import torch
from conftest import Toy, tensors, tiny_fno
from neuralop.models import FNO

import neuralop_merge as nm
from neuralop_merge.errors import CheckpointError, UnsafeCheckpointError
from neuralop_merge.provenance import Provenance


def test_round_trip_keeps_weights_class_and_provenance(tmp_path, fno_trio):
    anchor, low, high = fno_trio
    merged = nm.merge("fixed_alpha", anchor=anchor, experts=[low, high], alpha=0.3)
    path = nm.save_model(merged, tmp_path, name="merged", provenance={"note": "test"})
    assert path == tmp_path / "merged_state_dict.pt"
    loaded = nm.load_model(tmp_path)
    assert type(loaded) is FNO
    assert all(torch.equal(tensors(loaded)[k], v) for k, v in tensors(merged).items())
    assert loaded.provenance["note"] == "test" and loaded.provenance["alpha"] == 0.3
    assert loaded.provenance["versions"]["neuraloperator"].startswith("2.")
    record = json.loads((tmp_path / "merged_provenance.json").read_text())
    assert [i["role"] for i in record["inputs"]] == ["anchor", "expert[0]", "expert[1]"]


def test_saved_checkpoint_loads_with_neuraloperators_own_loader(tmp_path):
    model = tiny_fno(3)
    nm.save_model(model, tmp_path, name="m")
    x = torch.randn(1, 1, 16, 16)
    assert torch.equal(FNO.from_checkpoint(tmp_path, "m")(x), model(x))


def test_reads_checkpoints_written_by_neuraloperator(tmp_path):
    model = tiny_fno(4)
    model.save_checkpoint(tmp_path, "native")
    loaded = nm.load_model(tmp_path / "native_state_dict.pt")
    x = torch.randn(1, 1, 16, 16)
    assert torch.equal(loaded(x), model(x))


def test_merge_accepts_checkpoint_paths(tmp_path, fno_trio):
    for name, model in zip("alh", fno_trio):
        nm.save_model(model, tmp_path / name)
    from_paths = nm.merge("fixed_alpha", anchor=tmp_path / "a", experts=[tmp_path / "l", tmp_path / "h"], alpha=0.5)
    from_models = nm.merge("fixed_alpha", anchor=fno_trio[0], experts=list(fno_trio[1:]), alpha=0.5)
    assert all(torch.equal(tensors(from_paths)[k], v) for k, v in tensors(from_models).items())
    files = [i.get("file_sha256") for i in from_paths.provenance["inputs"]]
    assert all(isinstance(f, str) and len(f) == 64 for f in files)


class _Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_side_effect(tmp_path):
    marker = tmp_path / "pwned"
    exploit = _Exploit()
    exploit.marker = marker
    evil = tmp_path / "evil_state_dict.pt"
    state = tensors(tiny_fno(0))
    state["_metadata"] = {"_name": "FNO", "payload": exploit}
    torch.save(state, evil)
    with pytest.raises(UnsafeCheckpointError, match="evil_state_dict.pt"):
        nm.load_model(evil)
    assert not marker.exists()


def test_malicious_metadata_file_is_refused(tmp_path):
    model = tiny_fno(0)
    nm.save_model(model, tmp_path, name="m")
    exploit = _Exploit()
    exploit.marker = tmp_path / "pwned"
    (tmp_path / "m_provenance.json").unlink()  # else the changed file's sha256 is refused first
    with open(tmp_path / "m_metadata.pkl", "wb") as handle:
        torch.save({"_name": "FNO", "x": exploit}, handle)
    with pytest.raises(UnsafeCheckpointError, match="m_metadata.pkl"):
        nm.load_model(tmp_path)
    assert not (tmp_path / "pwned").exists()


def test_plain_module_state_dict_needs_a_template(tmp_path):
    torch.manual_seed(0)
    source, template = Toy(), Toy()
    torch.save(source.state_dict(), tmp_path / "toy.pt")
    with pytest.raises(CheckpointError, match="template"):
        nm.load_model(tmp_path / "toy.pt")
    loaded = nm.load_model(tmp_path / "toy.pt", template=template)
    assert torch.equal(loaded.linear.weight, source.linear.weight)
    assert not torch.equal(template.linear.weight, source.linear.weight)


def test_truncated_or_missing_files_give_one_clear_error(tmp_path):
    nm.save_model(tiny_fno(0), tmp_path, name="m")
    state = tmp_path / "m_state_dict.pt"
    state.write_bytes(state.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="m_state_dict.pt"):
        nm.load_model(state)
    with pytest.raises(CheckpointError, match="not found"):
        nm.load_model(tmp_path / "nope_state_dict.pt")


def test_existing_output_is_not_overwritten_unless_asked(tmp_path):
    nm.save_model(tiny_fno(0), tmp_path, name="m")
    before = (tmp_path / "m_state_dict.pt").read_bytes()
    with pytest.raises(FileExistsError, match="m_state_dict.pt"):
        nm.save_model(tiny_fno(1), tmp_path, name="m")
    assert (tmp_path / "m_state_dict.pt").read_bytes() == before
    nm.save_model(tiny_fno(1), tmp_path, name="m", overwrite=True)
    assert (tmp_path / "m_state_dict.pt").read_bytes() != before


def test_failed_write_leaves_nothing_behind(tmp_path):
    with pytest.raises(RuntimeError, match="disk full"):
        nm.save_model(_FailingStateDict(tiny_fno(0)), tmp_path, name="m")
    assert list(tmp_path.iterdir()) == []


class _FailingStateDict(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def state_dict(self, *args, **kwargs):
        raise RuntimeError("disk full")


def test_provenance_record_round_trips_the_json_on_disk(tmp_path):
    anchor, low, high = tiny_fno(0), tiny_fno(1), tiny_fno(2)
    merged = nm.merge("fixed_alpha", anchor=anchor, experts=[low, high], alpha=0.25)
    nm.save_model(merged, tmp_path, name="m", provenance={"note": "kept as is"})
    on_disk = json.loads((tmp_path / "m_provenance.json").read_text())
    record = Provenance.from_dict(on_disk)
    assert record.to_dict() == on_disk
    assert (record.kind, record.strategy, record.alpha) == ("merge", "fixed_alpha", 0.25)
    assert record.coefficients == {"anchor": 0.0, "experts": [0.375, 0.625]}
    assert record.extra == {"note": "kept as is"}
    assert set(record.checkpoint) == {"state_sha256", "metadata_sha256"} and record.versions["torch"]
    assert nm.load_model(tmp_path, name="m").provenance == on_disk


def test_provenance_with_a_wrongly_typed_known_key_is_refused_naming_it():
    with pytest.raises(nm.CheckpointError, match="'alpha' must be int or float, got str"):
        Provenance.from_dict({"alpha": "0.5"}, "p.json")
