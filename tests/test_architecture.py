"""Activations as torch pickles them, and architecture records: what loads, and what is refused."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_fno
from torch import nn

import neuralop_merge as nm
from neuralop_merge.architecture import architecture_record, rebuild_arguments


class _GetattrPayload:
    """Pickles as ``getattr(torch._C._VariableFunctionsClass, name)``, as torch stores ``torch.tanh``."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __reduce__(self):
        return getattr, (torch._C._VariableFunctionsClass, self.name)


@pytest.mark.parametrize("activation", [torch.tanh, torch.sigmoid, torch.relu, nn.GELU(), F.mish, nn.SiLU()],
                         ids=["torch.tanh", "torch.sigmoid", "torch.relu", "nn.GELU()", "F.mish", "nn.SiLU()"])
def test_neuraloperator_checkpoints_with_any_stock_activation_load(activation, tmp_path):
    model = tiny_fno(0, non_linearity=activation)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save_checkpoint(tmp_path, "m")
    loaded = nm.load_model(tmp_path)
    assert nm.fingerprint(loaded) == nm.fingerprint(model)
    x = torch.randn(1, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(x), model.eval()(x))


def test_getattr_reaches_only_the_listed_activations(tmp_path):
    nm.save_model(tiny_fno(0), tmp_path, name="m")
    torch.save({"_name": "FNO", "non_linearity": _GetattrPayload("from_file")}, tmp_path / "m_metadata.pkl")
    (tmp_path / "m_provenance.json").unlink()  # else the provenance's sha256 refuses the forged file first
    with pytest.raises(nm.UnsafeCheckpointError, match="m_metadata.pkl"):
        nm.load_model(tmp_path)


def test_a_record_names_only_neuraloperator_classes_and_allowed_functions():
    record = architecture_record(tiny_fno(0, non_linearity=F.mish))
    assert record["class"] == "neuralop.models.fno.FNO"
    assert record["kwargs"]["non_linearity"] == {"callable": "torch.nn.functional.mish"}
    assert record["kwargs"]["n_modes"] == {"tuple": [4, 4]}
    model_class, args, kwargs = rebuild_arguments(json.loads(json.dumps(record)), "file")
    assert kwargs["non_linearity"] is F.mish and kwargs["n_modes"] == (4, 4)
    for forged, refused in (({"class": "os.system", "args": [], "kwargs": {}}, "not a neuraloperator model"),
                            ({**record, "kwargs": {"x": {"callable": "os.system"}}}, "is not allowed"),
                            ({"class": 3}, "malformed architecture record")):
        with pytest.raises(nm.CheckpointError, match=refused):
            rebuild_arguments(forged, "file")


def doubled(x: torch.Tensor) -> torch.Tensor:
    """An activation of the user's own: not on the allow-list."""
    return 2 * x


def test_a_model_with_an_unlisted_function_has_no_record_and_is_refused(tmp_path):
    model = tiny_fno(0, non_linearity=doubled)
    assert architecture_record(model) is None
    nm.save_model(model, tmp_path)
    assert json.loads(next(tmp_path.glob("*_provenance.json")).read_text())["architecture"] is None
    with pytest.raises(nm.UnsafeCheckpointError, match="test_architecture.doubled"):
        nm.load_model(tmp_path)
