"""Hostile files and careless input at the command line: one stderr line, exit 2, nothing written.

Every case builds its bad input inside ``tmp_path`` and returns the command line; the
test then checks the exit status, that stderr is exactly one line naming the problem,
and that no file under ``tmp_path`` was created or changed.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import tensors, tiny_fno
from neuralop.layers.spectral_convolution import SpectralConv

import neuralop_merge as nm
from neuralop_merge.cli import main


class Call:
    """Pickles as a call ``function(*args)``, the way a crafted file asks the unpickler to run code."""

    def __init__(self, function: Callable, *args: object) -> None:
        self.function, self.args = function, args

    def __reduce__(self):
        return (self.function, self.args)


@pytest.fixture
def checkpoints(tmp_path: Path, fno_trio) -> dict[str, Path]:
    paths = {}
    for name, model in zip(("anchor", "low", "high"), fno_trio):
        paths[name] = tmp_path / name
        nm.save_model(model, paths[name])
    return paths


def merge_line(tmp: Path, ck: dict[str, Path], *extra: object, strategy: str = "fixed_alpha", **roles: Path) -> list:
    """A merge command line; ``roles`` replaces the anchor, low or high checkpoint."""
    paths = {**ck, **roles}
    alpha = [] if strategy != "fixed_alpha" or "--alpha" in extra else ["--alpha", "0.5"]
    return ["merge", strategy, "--anchor", paths["anchor"], "--low", paths["low"], "--high", paths["high"],
            *alpha, *extra, "-o", tmp / "out"]


def inspect_line(ck: dict[str, Path], *extra: object) -> list:
    return ["inspect", "--anchor", ck["anchor"], "--low", ck["low"], "--high", ck["high"], *extra]


def hostile_metadata(tmp: Path, ck: dict[str, Path], value: object, name: str = "bad") -> Path:
    """A copy of the anchor whose metadata file holds ``value`` (no provenance, so the loader reads it)."""
    folder = tmp / name
    nm.save_model(tiny_fno(0), folder)
    (folder / "model_provenance.json").unlink()
    torch.save(value, folder / "model_metadata.pkl")
    return folder


def hostile_state(tmp: Path, state: dict, name: str = "bad") -> Path:
    """An anchor folder whose state file holds ``state``, with the anchor's metadata."""
    folder = tmp / name
    nm.save_model(tiny_fno(0), folder)
    (folder / "model_provenance.json").unlink()
    torch.save(state, folder / "model_state_dict.pt")
    return folder


def with_provenance(tmp: Path, record: object, raw: bytes | None = None) -> Path:
    folder = tmp / "expert"
    nm.save_model(tiny_fno(1), folder)
    text = raw if raw is not None else json.dumps(record).encode()
    (folder / "model_provenance.json").write_bytes(text)
    return folder


def shared_references(depth: int = 25) -> list:
    nested: list = []
    for _ in range(depth):
        nested = [nested, nested]
    return nested


def deeply_nested(depth: int = 200) -> dict:
    nested: dict = {}
    for _ in range(depth):
        nested = {"x": nested}
    return nested


def frames_file(tmp: Path, frames: torch.Tensor) -> Path:
    torch.save({"frames": frames}, tmp / "frames.pt")
    return tmp / "frames.pt"


def deflate_bomb(tmp: Path) -> Path:
    """A torch zip whose one tensor entry is 64 MB of zeros, deflated to a few tens of KB."""
    plain, bomb = tmp / "plain.pt", tmp / "bomb" / "model_state_dict.pt"
    torch.save({"w": torch.zeros(16 * 2**20)}, plain)
    bomb.parent.mkdir()
    with zipfile.ZipFile(plain) as source, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as target:
        for entry in source.infolist():
            target.writestr(entry.filename, source.read(entry.filename))
    plain.unlink()
    return bomb.parent


def sparse_state(tmp: Path) -> Path:
    state = tensors(tiny_fno(0))
    key = "projection.fcs.1.weight"
    state[key] = state[key].to_sparse()
    return hostile_state(tmp, state)


def dead_pid() -> int:
    import subprocess
    import sys

    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(child.stdout)


def exploit() -> Call:
    return Call(os.system, "touch pwned")


def regular_file(tmp: Path) -> Path:
    (tmp / "plain").write_text("x")
    return tmp / "plain"


def existing_output(tmp: Path) -> Path:
    nm.save_model(tiny_fno(5), tmp / "out", name="merged")
    return tmp / "out"


def passwd_like(tmp: Path) -> Path:
    (tmp / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n")
    return tmp / "passwd"


def pair_files(tmp: Path, channels: int) -> list[str]:
    pairs = {"x": torch.randn(4, channels, 16, 16), "y": torch.randn(4, channels, 16, 16)}
    torch.save(pairs, tmp / "pairs.pt")
    return ["--data", f"low={tmp / 'pairs.pt'}", "--data", f"high={tmp / 'pairs.pt'}"]


# (case id, builder(tmp, checkpoints) -> argv, text the one stderr line must contain)
CASES: list[tuple[str, Callable[[Path, dict], list], str]] = [
    ("text-file-checkpoint",
     lambda t, ck: merge_line(t, ck, anchor=(t / "notes.txt", (t / "notes.txt").write_text("hello\n" * 20))[0]),
     "notes.txt"),
    ("passwd-checkpoint", lambda t, ck: merge_line(t, ck, anchor=passwd_like(t)), "passwd"),
    ("missing-checkpoint", lambda t, ck: merge_line(t, ck, high=t / "missing"), "missing"),
    ("unsafe-global", lambda t, ck: merge_line(t, ck, anchor=hostile_metadata(t, ck, {"_name": "FNO", "x": exploit()})),
     "posix.system"),
    ("gelu-called-while-unpickling",
     lambda t, ck: merge_line(t, ck, anchor=hostile_metadata(t, ck, {"_name": "FNO", "x": Call(F.gelu, torch.ones(3))})),
     "gelu while unpickling"),
    ("module-built-while-unpickling",
     lambda t, ck: merge_line(t, ck, anchor=hostile_metadata(
         t, ck, {"_name": "FNO", "x": Call(SpectralConv, 256, 256, (64, 64))})),
     "SpectralConv"),
    ("shared-reference-metadata",
     lambda t, ck: merge_line(t, ck, anchor=hostile_metadata(t, ck, {"_name": "FNO", "n_modes": shared_references()})),
     "shared references"),
    ("deeply-nested-metadata",
     lambda t, ck: merge_line(t, ck, anchor=hostile_metadata(t, ck, {"_name": "FNO", "x": deeply_nested()})),
     "deeper than"),
    ("huge-architecture-argument",
     lambda t, ck: merge_line(t, ck, anchor=hostile_metadata(
         t, ck, {**tiny_fno(0)._init_kwargs, "n_layers": 2**40})),
     "'n_layers'"),
    ("stride-0-tensor",
     lambda t, ck: merge_line(t, ck, anchor=hostile_state(
         t, {**tensors(tiny_fno(0)), "big": torch.zeros(1).expand(2**28)})),
     "stride (0,)"),
    ("deflate-bomb", lambda t, ck: merge_line(t, ck, anchor=deflate_bomb(t)), "compressed"),
    ("sparse-weight", lambda t, ck: merge_line(t, ck, anchor=sparse_state(t)), "sparse"),
    ("malformed-provenance", lambda t, ck: merge_line(t, ck, low=with_provenance(t, None, b"{not json")),
     "model_provenance.json"),
    ("binary-provenance", lambda t, ck: merge_line(t, ck, low=with_provenance(t, None, b"\xff\xfe\x00")),
     "model_provenance.json"),
    ("deep-provenance", lambda t, ck: merge_line(t, ck, low=with_provenance(t, None, b"[" * 100_000)),
     "model_provenance.json"),
    ("provenance-not-an-object", lambda t, ck: merge_line(t, ck, low=with_provenance(t, [1, 2])), "JSON object"),
    ("provenance-wrong-type", lambda t, ck: merge_line(t, ck, low=with_provenance(t, {"versions": 3})), "'versions'"),
    ("empty-trainable", lambda t, ck: merge_line(t, ck, low=with_provenance(t, {"trainable": []})), "'trainable'"),
    ("trainable-matches-nothing",
     lambda t, ck: merge_line(t, ck, low=with_provenance(t, {"trainable": ["no.such.weight"]})), "no.such.weight"),
    ("output-under-a-regular-file", lambda t, ck: merge_line(t, ck)[:-1] + [regular_file(t) / "sub"], "plain"),
    ("output-exists", lambda t, ck: (existing_output(t), merge_line(t, ck))[1], "exists"),
    ("name-escapes-upwards", lambda t, ck: merge_line(t, ck, "--name", "../../x"), "../../x"),
    ("name-is-absolute", lambda t, ck: merge_line(t, ck, "--name", str(t / "abs")), "plain file name"),
    ("name-is-hidden", lambda t, ck: merge_line(t, ck, "--name", ".hidden"), ".hidden"),
    ("name-is-empty", lambda t, ck: merge_line(t, ck, "--name", ""), "plain file name"),
    ("alpha-overflow", lambda t, ck: merge_line(t, ck, "--alpha", "1e308"), "'alpha'"),
    ("alpha-not-a-number", lambda t, ck: merge_line(t, ck, "--alpha", "abc"), "--alpha"),
    ("alpha-nan", lambda t, ck: merge_line(t, ck, "--alpha", "nan"), "finite"),
    ("scale-overflow", lambda t, ck: merge_line(t, ck, "--scale", "1e308", strategy="task_arithmetic"), "'scale'"),
    ("coord-not-a-number",
     lambda t, ck: merge_line(t, ck, "--coord", "1", "--high-coord", "2", "-p", "low_coord=abc", strategy="ccm_coord"),
     "low_coord"),
    ("calibration-not-a-list",
     lambda t, ck: merge_line(t, ck, "--coord", "1", "--low-coord", "0", "--high-coord", "2", "-p", "calibration=5",
                              strategy="ccm_coord"),
     "calibration"),
    ("calibration-bad-pairs",
     lambda t, ck: merge_line(t, ck, "--coord", "1", "--low-coord", "0", "--high-coord", "2", "-p",
                              "calibration=[[1]]", strategy="ccm_coord"),
     "calibration"),
    ("prefix-nan-frames",
     lambda t, ck: merge_line(t, ck, "--prefix", frames_file(t, torch.full((1, 3, 1, 16, 16), float("nan"))),
                              strategy="ccm_prefix"),
     "NaN"),
    ("prefix-empty-batch",
     lambda t, ck: merge_line(t, ck, "--prefix", frames_file(t, torch.zeros(0, 3, 1, 16, 16)), strategy="ccm_prefix"),
     "empty"),
    ("prefix-huge-values",
     lambda t, ck: merge_line(t, ck, "--prefix", frames_file(t, torch.full((1, 3, 1, 16, 16), 1e30)),
                              "-p", "n_grid=5", strategy="ccm_prefix"),
     "non-finite"),
    ("prefix-wrong-channels",
     lambda t, ck: merge_line(t, ck, "--prefix", frames_file(t, torch.zeros(1, 3, 2, 16, 16)), strategy="ccm_prefix"),
     "channel"),
    ("prefix-integer-frames",
     lambda t, ck: merge_line(t, ck, "--prefix", frames_file(t, torch.zeros(1, 3, 1, 16, 16, dtype=torch.long)),
                              strategy="ccm_prefix"),
     "floating"),
    ("prefix-huge-grid",
     lambda t, ck: merge_line(t, ck, "--prefix", frames_file(t, torch.zeros(1, 3, 1, 16, 16)), "-p", "n_grid=1e9",
                              strategy="ccm_prefix"),
     "n_grid"),
    ("prefix-huge-integer-grid",
     lambda t, ck: merge_line(t, ck, "--prefix", frames_file(t, torch.zeros(1, 3, 1, 16, 16)), "-p",
                              "n_grid=1000000000", strategy="ccm_prefix"),
     "n_grid"),
    ("prefix-reversed-range",
     lambda t, ck: merge_line(t, ck, "--prefix", frames_file(t, torch.zeros(1, 3, 1, 16, 16)), "--alpha-range", "3",
                              "-3", strategy="ccm_prefix"),
     "alpha_range"),
    ("inspect-too-many-alphas", lambda t, ck: inspect_line(ck, "--alphas=0:1:1e11"), "--alphas"),
    ("inspect-too-many-integer-alphas", lambda t, ck: inspect_line(ck, "--alphas=0:1:100000000000"), "--alphas"),
    ("inspect-json-exists",
     lambda t, ck: inspect_line(ck, "--json", (t / "r.json", (t / "r.json").write_text("keep"))[0]), "r.json"),
    ("inspect-plot-under-a-file", lambda t, ck: inspect_line(ck, "--plot", regular_file(t) / "plots"), "plain"),
    ("inspect-malicious-data",
     lambda t, ck: inspect_line(ck, "--low-coord", "1", "--high-coord", "2",
                                "--data", (t / "d.pt", torch.save({"trajectories": exploit()}, t / "d.pt"))[0]),
     "posix.system"),
    ("inspect-huge-resolution", lambda t, ck: inspect_line(ck, "--family", "diffreact", "--regimes", "1",
                                                           "--resolution", "1000000000"), "--resolution"),
    ("finetune-anchor-channels",
     lambda t, ck: ["finetune", *pair_files(t, 2), "--anchor", ck["anchor"], "--regime", "low=1", "--regime",
                    "high=2", "-o", t / "out", "--no-progress"],
     "channel"),
    ("finetune-name-escapes",
     lambda t, ck: ["finetune", *pair_files(t, 1), "--anchor", ck["anchor"], "--regime", "../low=1", "--regime",
                    "high=2", "-o", t / "out", "--no-progress"],
     "../low"),
    ("demo-no-jobs", lambda t, ck: ["demo", "--jobs", "0", "--out", t / "demo", "--no-progress"], "--jobs"),
]


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*")) if not p.is_symlink()}


@pytest.mark.parametrize("builder,needle", [(b, n) for _, b, n in CASES], ids=[c for c, _, _ in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(builder, needle, tmp_path, checkpoints, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a payload that escaped would write "pwned" here
    argv = [str(a) for a in builder(tmp_path, checkpoints)]
    before = snapshot(tmp_path)
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert needle in err
    assert "weights_only" not in err and "Traceback" not in err
    assert snapshot(tmp_path) == before
    assert not (tmp_path / "pwned").exists()


def test_the_table_is_large_enough():
    assert len(CASES) >= 30


def test_usage_error_is_one_line(capsys):
    assert main(["merge", "fixed_alpha", "--alpha"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_library_user_warnings_are_hidden_from_cli_users(tmp_path, checkpoints, capsys, monkeypatch):
    import warnings

    def noisy_merge(*args, **kwargs):
        warnings.warn_explicit("noise for developers", UserWarning, "torch/serialization.py", 1, module="torch")
        raise nm.StrategyError("stop here")

    monkeypatch.setattr("neuralop_merge.merging.merge", noisy_merge)  # merge_cmd imports it when it runs
    assert main([str(a) for a in merge_line(tmp_path, checkpoints)]) == 2
    err = capsys.readouterr().err
    assert "noise for developers" not in err and "stop here" in err
