"""The command line: exit codes, one-line errors, nothing written on failure."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest
import torch
from conftest import tensors

import neuralop_merge as nm
from neuralop_merge.cli import COMMANDS, main
from neuralop_merge.cli.demo_cmd import DEFAULT_FAMILY
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


def save_on_plane(folder, anchor, directions, point, overwrite=False):
    """An expert at ``point``: the anchor plus ``Σ point[i] · (directions[i] − anchor)``, saved to ``folder``."""
    expert = copy.deepcopy(anchor)
    state = tensors(anchor)
    for weight, direction in zip(point, directions):
        state = {k: v + weight * (tensors(direction)[k] - tensors(anchor)[k]) if v.is_floating_point() or v.is_complex()
                 else v for k, v in state.items()}
    expert.load_state_dict(state, strict=False)
    nm.save_model(expert, folder, overwrite=overwrite)
    return folder


def test_inspect_takes_k_experts_and_reports_their_fit(tmp_path, fno_trio, capsys):
    anchor_model, first, second = fno_trio
    nm.save_model(anchor_model, tmp_path / "anchor")
    points = {"a": (0.0, 0.0), "b": (1.0, 0.0), "c": (0.0, 1.0), "d": (1.0, 1.0)}
    experts = {name: save_on_plane(tmp_path / name, anchor_model, (first, second), point) for name, point in points.items()}
    coords = [f"u={2 * u + 3},v={v - 1}" for u, v in points.values()]  # any affine units per axis
    line = ["inspect", "--anchor", str(tmp_path / "anchor")]
    for path, coord in zip(experts.values(), coords):
        line += ["--expert", str(path), "--expert-coord", coord]
    assert main([*line, "--json", str(tmp_path / "flat.json")]) == 0
    flat = json.loads((tmp_path / "flat.json").read_text())
    assert [row["normalized"] for row in flat["experts"]] == [[-1, -1], [1, -1], [-1, 1], [1, 1]]
    assert flat["fit"][-1]["name"] == "<overall>" and flat["fit"][-1]["relative_total"] < 1e-5  # exactly affine
    assert "<overall>" in capsys.readouterr().out
    save_on_plane(experts["d"], anchor_model, (first, second), (1.0, 2.0), overwrite=True)  # d leaves the plane
    assert main([*line, "--json", str(tmp_path / "bent.json")]) == 0
    bent = json.loads((tmp_path / "bent.json").read_text())["fit"][-1]
    assert bent["relative_total"] > 0.1
    # With four experts and three affine terms, each residual is ± the same vector: equal norms.
    assert bent["residual_norms"] == pytest.approx([bent["residual_norms"][0]] * 4)


@pytest.mark.parametrize(
    "extra,needle",
    [
        ([], "give --low and --high (an endpoint pair), or two or more --expert"),
        (["--low", "L", "--high", "H", "--quadratic"], "--expert-coord and --quadratic go with --expert"),
        (["--expert", "A"], "--expert needs at least two experts"),
        (["--expert", "A", "--expert", "A"], "given twice"),
        (["--expert", "A", "--expert", "B", "--expert-coord", "1"], "one --expert-coord per --expert (2), got 1"),
        (["--expert", "A", "--expert", "B", "--family", "diffreact"], "--family inspect(s) the two-expert line"),
        (["--expert", "A", "--low", "L"], "either with --expert or with --low/--high"),
    ],
)
def test_inspect_refuses_mixed_or_incomplete_expert_sets(extra, needle, capsys):
    assert main(["inspect", "--anchor", "X", *extra]) == 2
    assert needle in capsys.readouterr().err


@pytest.mark.parametrize("option,value", [("--expert-coord", "u=1,u=2"), ("--expert-coord", "u=nan"),
                                          ("--expert-coord", "1,2"), ("--expert-coord", "=1"),
                                          ("--transform", "u=cube")])
def test_inspect_refuses_malformed_coordinates(option, value, capsys):
    assert main(["inspect", "--anchor", "X", "--expert", "A", "--expert", "B", option, value]) == 2
    assert value in capsys.readouterr().err


HEAVY_MODULES = ("torch", "neuralop", "tensorly", "wandb")


@pytest.mark.parametrize(
    "args",
    [["--help"], ["list"], ["bogus"], ["merge", "--alpha", "x"], ["merge", "--help"], ["inspect", "--alphas"],
     ["finetune", "--epochs", "z"], ["merge", "fixed_alpha", "--coord", "-1e-3"], ["demo", "--help"],
     ["demo", "--scale", "huge"]],
)
def test_help_list_and_argument_errors_import_neither_torch_nor_neuraloperator(args):
    probe = (
        "import sys\nfrom neuralop_merge.cli import main\n"
        f"code = main({args!r})\n"
        f"print(code, sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    code, imported = result.stdout.splitlines()[-1].split(" ", 1)
    assert imported == "[]", result.stdout + result.stderr
    assert int(code) == (0 if args in (["--help"], ["list"], ["merge", "--help"], ["demo", "--help"]) else 2), result.stderr


def test_list_names_strategies_from_metadata_and_details_loads_them(capsys):
    assert main(["list"]) == 0
    listed = capsys.readouterr().out
    assert "fixed_alpha        neuralop-merge (neuralop_merge.strategies.fixed_alpha:FixedAlpha)" in listed
    assert "params:" not in listed
    assert main(["list", "--details"]) == 0
    assert "params: alpha" in capsys.readouterr().out


def test_top_level_help_lists_every_command_with_its_summary():
    result = run_cli("--help")
    flattened = " ".join(result.stdout.split())
    for name, (_, summary) in COMMANDS.items():
        assert f"{name} {summary}" in flattened, name
    assert DEFAULT_FAMILY in COMMANDS["demo"][1]


def test_package_names_resolve_lazily_and_rollout_stays_the_function():
    probe = (
        "import sys\nimport neuralop_merge as nm\nprint('torch' in sys.modules)\n"
        "from neuralop_merge.rollout import rollout\nprint(nm.rollout is rollout, callable(nm.merge), 'CCM' in dir(nm))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.stdout.split() == ["False", "True", "True", "True"], result.stderr


def test_unknown_package_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no_such_name"):
        nm.no_such_name  # noqa: B018
