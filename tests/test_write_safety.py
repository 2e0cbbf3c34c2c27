"""Writes that race, crash or escape, and reads of hostile files, at the API level."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import tensors, tiny_fno

import neuralop_merge as nm
from neuralop_merge import atomic
from neuralop_merge.errors import CheckpointError, NeuralopMergeError, NonFiniteError, OutputExistsError
from neuralop_merge.io import safe_load
from neuralop_merge.strategies.base import MergeInputs, Plan, Strategy


def finishes(function: Callable[[], object], seconds: float) -> dict:
    """Run ``function`` in a daemon thread; fail if it is still running after ``seconds`` (a hang guard)."""
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["value"] = function()
        except BaseException as error:  # handed to the test, which asserts on it
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    return outcome


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_of_concurrent_writers_exactly_one_wins(tmp_path):
    models = [tiny_fno(seed) for seed in range(4)]
    for round_number in range(8):
        folder = tmp_path / f"round{round_number}"
        barrier = threading.Barrier(len(models))
        results: dict[int, object] = {}

        def write(index: int) -> None:
            barrier.wait()
            try:
                results[index] = nm.save_model(models[index], folder, name="m")
            except OutputExistsError as error:
                results[index] = error

        threads = [threading.Thread(target=write, args=(i,)) for i in range(len(models))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        winners = [i for i, r in results.items() if isinstance(r, Path)]
        assert len(winners) == 1
        assert all("exists" in str(r) and "m_" in str(r) for r in results.values() if not isinstance(r, Path))
        loaded = nm.load_model(folder)  # the three files are the winner's, consistent with each other
        assert all(torch.equal(tensors(loaded)[k], v) for k, v in tensors(models[winners[0]]).items())
        assert leftovers(folder) == []


def test_two_concurrent_cli_merges_one_succeeds_the_other_exits_2(tmp_path, fno_trio):
    for name, model in zip(("anchor", "low", "high"), fno_trio):
        nm.save_model(model, tmp_path / name)
    command = [sys.executable, "-m", "neuralop_merge", "merge", "fixed_alpha", "--anchor", str(tmp_path / "anchor"),
               "--low", str(tmp_path / "low"), "--high", str(tmp_path / "high"), "-o", str(tmp_path / "out")]
    processes = [subprocess.Popen([*command, "--alpha", alpha], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for alpha in ("0.1", "0.9")]
    outcomes = sorted((p.wait(), p.stderr.read()) for p in processes)
    for process in processes:
        process.stdout.close()
        process.stderr.close()
    (ok, _), (refused, message) = outcomes
    assert (ok, refused) == (0, 2)
    assert message.count("\n") == 1 and "merged_" in message and "exists" in message
    assert nm.load_model(tmp_path / "out").provenance["alpha"] in (0.1, 0.9)


def test_state_and_provenance_from_different_writes_are_refused(tmp_path):
    nm.save_model(tiny_fno(0), tmp_path, name="m")
    old_provenance = (tmp_path / "m_provenance.json").read_bytes()
    nm.save_model(tiny_fno(1), tmp_path, name="m", overwrite=True)
    (tmp_path / "m_provenance.json").write_bytes(old_provenance)
    with pytest.raises(CheckpointError, match="m_state_dict.pt does not match m_provenance.json") as caught:
        nm.load_model(tmp_path)
    assert "\n" not in str(caught.value)


def test_a_crash_between_the_renames_leaves_a_checkpoint_that_is_refused(tmp_path, monkeypatch):
    nm.save_model(tiny_fno(0), tmp_path, name="m")
    real_replace, calls = os.replace, []

    def replace_then_die(source, target):
        calls.append(target)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the process is killed after the first rename
        real_replace(source, target)

    monkeypatch.setattr(atomic.os, "replace", replace_then_die)
    with pytest.raises(KeyboardInterrupt):
        nm.save_model(tiny_fno(1), tmp_path, name="m", overwrite=True)
    monkeypatch.undo()
    assert leftovers(tmp_path) == []
    with pytest.raises(CheckpointError, match="sha256 differs"):
        nm.load_model(tmp_path)


def test_temporary_files_of_dead_writers_are_removed(tmp_path):
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead, alive = tmp_path / f".m_state_dict.pt.{int(child.stdout)}-0a.tmp", tmp_path / f".m_state_dict.pt.{os.getpid()}-0b.tmp"
    dead.write_bytes(b"x" * 100)
    alive.write_bytes(b"y")
    nm.save_model(tiny_fno(0), tmp_path, name="m")
    assert not dead.exists() and alive.exists()


def test_the_folder_is_fsynced_after_the_commit(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr(atomic, "fsync_folder", synced.append)
    nm.save_model(tiny_fno(0), tmp_path / "f", name="m")
    assert synced == [tmp_path / "f"]


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_output_files_respect_the_umask(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        nm.save_model(tiny_fno(0), tmp_path, name="m")
    finally:
        os.umask(previous)
    assert {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()} == {
        "m_state_dict.pt": mode, "m_metadata.pkl": mode, "m_provenance.json": mode,
    }


def test_a_symlink_at_the_output_is_never_followed(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "m_state_dict.pt").symlink_to(outside)
    with pytest.raises(OutputExistsError):
        nm.save_model(tiny_fno(0), folder, name="m")
    nm.save_model(tiny_fno(0), folder, name="m", overwrite=True)
    assert outside.read_text() == "precious" and not (folder / "m_state_dict.pt").is_symlink()


@pytest.mark.parametrize("name", ["../x", "/abs/x", "", ".hidden", "a/b", "nul\0byte"])
def test_names_cannot_leave_the_folder(tmp_path, name):
    with pytest.raises(CheckpointError, match="plain file name"):
        nm.save_model(tiny_fno(0), tmp_path / "out", name=name)
    assert not (tmp_path / "out").exists()


def test_shared_reference_metadata_is_refused_in_seconds(tmp_path):
    nested: list = []
    for _ in range(40):  # 2**40 nodes as a tree, 1.7 KB on disk
        nested = [nested, nested]
    nm.save_model(tiny_fno(0), tmp_path, name="m")
    (tmp_path / "m_provenance.json").unlink()
    torch.save({**tiny_fno(0)._init_kwargs, "n_modes": nested}, tmp_path / "m_metadata.pkl")
    outcome = finishes(lambda: nm.load_model(tmp_path), seconds=60)
    assert isinstance(outcome.get("error"), CheckpointError)


def test_expansion_is_accepted_when_the_caller_opts_in(tmp_path):
    torch.save({"w": torch.ones(1).expand(2**24)}, tmp_path / "s.pt")
    with pytest.raises(CheckpointError, match="allow_expansion"):
        safe_load(tmp_path / "s.pt")
    assert safe_load(tmp_path / "s.pt", allow_expansion=True)["w"].shape == (2**24,)


def test_genuine_activation_and_layer_globals_still_load(tmp_path):
    model = tiny_fno(0)
    nm.save_model(model, tmp_path, name="m")
    loaded = nm.load_model(tmp_path)
    assert loaded._init_kwargs["non_linearity"] is model._init_kwargs["non_linearity"]
    x = torch.randn(1, 1, 16, 16)
    assert torch.equal(loaded(x), model(x))


def _pickle_span(path: Path) -> range:
    """Byte offsets of the pickle entry inside a torch zip file (or the whole file)."""
    if not zipfile.is_zipfile(path):
        return range(path.stat().st_size)
    with zipfile.ZipFile(path) as archive:
        entry = next(e for e in archive.infolist() if e.filename.endswith("data.pkl"))
    start = entry.header_offset + 30 + len(entry.filename.encode()) + len(entry.extra)
    return range(start, start + entry.compress_size)


def test_byte_flips_only_ever_raise_neuralop_merge_errors(tmp_path):
    source = tmp_path / "source"
    nm.save_model(tiny_fno(0, hidden_channels=4, n_modes=(2, 2), n_layers=1), source, name="m")
    (source / "m_provenance.json").unlink()  # else every flip is caught by the sha256 check alone
    originals = {name: (source / name).read_bytes() for name in ("m_state_dict.pt", "m_metadata.pkl")}
    spans = {name: _pickle_span(source / name) for name in originals}
    rng = random.Random(20261125)
    escaped: list[str] = []

    def fuzz() -> None:
        for trial in range(300):
            name = rng.choice(sorted(originals))
            data = bytearray(originals[name])
            for _ in range(rng.randint(1, 3)):
                # Half the flips land in the pickle, where the parser is; the rest anywhere.
                offset = rng.choice(spans[name]) if rng.random() < 0.5 else rng.randrange(len(data))
                data[offset] ^= 1 << rng.randrange(8)
            folder = tmp_path / f"trial{trial}"
            folder.mkdir()
            for other, content in originals.items():
                (folder / other).write_bytes(bytes(data) if other == name else content)
            try:
                nm.load_model(folder)
            except NeuralopMergeError:
                pass
            except Exception as error:  # collected: the assertion names every escape
                escaped.append(f"trial {trial} ({name}): {type(error).__name__}: {error}")

    outcome = finishes(fuzz, seconds=300)
    assert "error" not in outcome, outcome.get("error")
    assert escaped == []


class _Lopsided(Strategy):
    """Adds the second expert with a coefficient no float32 can hold."""

    name = "lopsided"

    def plan(self, inputs: MergeInputs) -> Plan:
        return Plan(0.0, (1.0, 1e39))


def test_an_overflowing_coefficient_is_a_non_finite_error_naming_the_tensor(fno_trio):
    with pytest.raises(NonFiniteError, match="tensor '.*' of the lopsided merge result overflows torch"):
        nm.merge(_Lopsided(), experts=list(fno_trio[1:]))


def test_a_trainable_pattern_matching_nothing_is_refused(fno_trio):
    anchor, low, high = fno_trio
    low.provenance = {"trainable": ["projection.fcs.1.weight", "typo.weight"]}
    high.provenance = {"trainable": ["projection.fcs.1.weight"]}
    with pytest.raises(nm.IncompatibleModelsError, match="'typo.weight'.*matches no tensor"):
        nm.merge("fixed_alpha", anchor=anchor, experts=[low, high], alpha=0.5)


def test_activations_pickled_the_way_torch_does_resolve_lazily(tmp_path, monkeypatch):
    """``torch.tanh`` is pickled as ``getattr(torch._C._VariableFunctionsClass, "tanh")`` and
    ``nn.GELU()`` as ``GELU.__new__(GELU)`` plus its state: with those globals allow-listed,
    both load, and only once the content passed the checks."""
    from neuralop_merge import io

    extra = (getattr, torch._C._VariableFunctionsClass, torch.nn.GELU)
    monkeypatch.setattr(io, "SAFE_GLOBALS", io.SAFE_GLOBALS + extra)
    torch.save({"tanh": torch.tanh, "gelu": torch.nn.GELU(approximate="tanh")}, tmp_path / "acts.pt")
    loaded = safe_load(tmp_path / "acts.pt")
    assert loaded["tanh"] is torch.tanh
    assert isinstance(loaded["gelu"], torch.nn.GELU) and loaded["gelu"].approximate == "tanh"
    x = torch.randn(5)
    assert torch.equal(loaded["gelu"](x), torch.nn.GELU(approximate="tanh")(x))
    torch.save({"ones": torch.ones}, tmp_path / "ones.pt")  # getattr to a function outside the list
    with pytest.raises(nm.UnsafeCheckpointError, match="getattr"):
        safe_load(tmp_path / "ones.pt")
