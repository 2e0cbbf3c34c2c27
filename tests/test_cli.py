"""The command line: exit codes, one-line errors, nothing written on failure."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from conftest import tensors

import neuralop_merge as nm
from neuralop_merge.cli import main
from neuralop_merge.diagnostics import layer_report
from neuralop_merge.rollout import rollout


@pytest.fixture
def checkpoints(tmp_path, fno_trio):
    paths = {}
    for name, model in zip(("anchor", "low", "high"), fno_trio):
        paths[name] = tmp_path / name
        nm.save_model(model, paths[name])
    return paths


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "neuralop_merge", *map(str, args)], capture_output=True, text=True)


def test_list_shows_the_builtin_strategies(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("average", "task_arithmetic", "fixed_alpha", "ccm_coord", "ccm_prefix"):
        assert name in out


@pytest.mark.parametrize("command", [[], ["merge"], ["inspect"], ["list"]])
def test_help_everywhere(command, capsys):
    assert main([*command, "--help"]) == 0
    assert capsys.readouterr().out.startswith(f"usage: neuralop-merge{''.join(' ' + c for c in command)}")


def test_merge_with_alpha_writes_a_loadable_checkpoint(tmp_path, checkpoints, fno_trio):
    out = tmp_path / "out"
    code = main(["merge", "fixed_alpha", "--anchor", str(checkpoints["anchor"]), "--low", str(checkpoints["low"]),
                 "--high", str(checkpoints["high"]), "--alpha", "0.5", "-o", str(out)])
    assert code == 0
    merged = nm.load_model(out / "merged_state_dict.pt")
    expected = nm.merge("fixed_alpha", anchor=fno_trio[0], experts=list(fno_trio[1:]), alpha=0.5)
    assert all(torch.equal(tensors(merged)[k], v) for k, v in tensors(expected).items())
    assert merged.provenance["strategy"] == "fixed_alpha"


def test_merge_with_coord_and_with_prefix(tmp_path, checkpoints, fno_trio):
    common = ["--anchor", checkpoints["anchor"], "--low", checkpoints["low"], "--high", checkpoints["high"]]
    assert main(["merge", "ccm_coord", *map(str, common), "--coord", "3", "--low-coord", "1", "--high-coord", "2",
                 "-o", str(tmp_path / "c")]) == 0
    assert nm.load_model(tmp_path / "c").provenance["alpha"] == pytest.approx(3.0)
    ccm = nm.CCM(*fno_trio, low_coord=1.0, high_coord=2.0)
    torch.manual_seed(0)
    torch.save({"frames": rollout(ccm.at(1.5), torch.randn(1, 1, 16, 16), 2)}, tmp_path / "prefix.pt")
    assert main(["merge", "ccm_prefix", *map(str, common), "--prefix", str(tmp_path / "prefix.pt"),
                 "-p", "n_grid=9", "-p", "method=\"grid\"", "-o", str(tmp_path / "p")]) == 0
    assert nm.load_model(tmp_path / "p").provenance["alpha"] == pytest.approx(1.5)


def test_user_error_is_one_line_exit_2_and_writes_nothing(tmp_path, checkpoints):
    out = tmp_path / "out"
    result = run_cli("merge", "fixed_alpha", "--anchor", checkpoints["anchor"], "--low", checkpoints["low"],
                     "--high", tmp_path / "missing", "--alpha", "0.5", "-o", out)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "missing" in result.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    "args,needle",
    [
        (["merge", "nope", "--expert", "a", "--expert", "b", "-o", "x"], "unknown merge strategy 'nope'"),
        (["merge", "fixed_alpha", "--low", "l", "-o", "x"], "--low and --high go together"),
        (["merge", "average", "--expert", "a", "-p", "novalue", "-o", "x"], "not KEY=VALUE"),
    ],
)
def test_bad_arguments_exit_2(args, needle, capsys):
    assert main(args) == 2
    assert needle in capsys.readouterr().err


def test_existing_output_is_refused_unless_overwrite(tmp_path, checkpoints, capsys):
    args = ["merge", "fixed_alpha", "--anchor", str(checkpoints["anchor"]), "--low", str(checkpoints["low"]),
            "--high", str(checkpoints["high"]), "--alpha", "0.1", "-o", str(tmp_path / "o")]
    assert main(args) == 0
    before = (tmp_path / "o" / "merged_state_dict.pt").read_bytes()
    assert main([*args[:-4], "--alpha", "0.9", "-o", str(tmp_path / "o")]) == 2
    assert "exists" in capsys.readouterr().err
    assert (tmp_path / "o" / "merged_state_dict.pt").read_bytes() == before
    assert main([*args[:-4], "--alpha", "0.9", "-o", str(tmp_path / "o"), "--overwrite"]) == 0


def test_inspect_reports_per_layer_norms(tmp_path, checkpoints, fno_trio, capsys):
    assert main(["inspect", "--anchor", str(checkpoints["anchor"]), "--low", str(checkpoints["low"]),
                 "--high", str(checkpoints["high"]), "--low-coord", "1", "--high-coord", "2",
                 "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "fno_blocks.convs.0.weight" in out and "<overall>" in out
    written = json.loads((tmp_path / "r.json").read_text())
    expected = layer_report(nm.CCM(*fno_trio, low_coord=1.0, high_coord=2.0))
    assert [row["name"] for row in written] == [row.name for row in expected]
    for row, stats in zip(written, expected):
        assert row["numel"] == stats.numel
        assert row["shared_norm"] == pytest.approx(stats.shared_norm, rel=1e-6)
        assert row["direction_norm"] == pytest.approx(stats.direction_norm, rel=1e-6)
