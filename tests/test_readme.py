"""The README's quickstart and command-line block really run."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from neuralop.models import FNO

import neuralop_merge as nm
from neuralop_merge import families

README = Path(__file__).resolve().parents[1] / "README.md"


def quickstart_code() -> str:
    section = README.read_text().split("## Quickstart", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_quickstart_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(quickstart_code(), "README.md quickstart", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "['average', 'ccm_coord', 'ccm_fit', 'ccm_plane', 'ccm_prefix', 'fixed_alpha', 'task_arithmetic']"
    assert float(printed[1]) == 2.0
    assert abs(float(printed[2]) - 2.0) <= 0.15  # one spacing of the 41-point alpha grid
    assert (tmp_path / "merged" / "ccm_state_dict.pt").is_file()


def command_line_block() -> str:
    section = README.read_text().split("## Command line", 1)[1]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_command_line_block_runs_in_order_as_written(tmp_path):
    """Every command of the block, in one shell, against an anchor and observed frames made here.

    ``neuralop-merge`` on the PATH is this checkout's command line, as ``pip install .`` makes it.
    """
    torch.manual_seed(0)
    anchor = FNO(n_modes=(8, 8), in_channels=2, out_channels=2, hidden_channels=8, n_layers=2)
    nm.save_model(anchor, tmp_path / "ckpt", name="anchor")
    frames = families.get("diffreact").dataset([1e-3], 2, 32, 4, seed=5).trajectories
    torch.save(frames, tmp_path / "observed_frames.pt")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "neuralop-merge"
    script.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m neuralop_merge \"$@\"\n")
    script.chmod(0o755)
    environment = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
                   "PYTHONPATH": str(README.parent)}
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", command_line_block()], cwd=tmp_path,
                            env=environment, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for name in ("fixed", "ccm", "prefix", "average"):
        assert (tmp_path / "merged" / f"{name}_state_dict.pt").is_file()
    ccm = nm.load_model(tmp_path / "merged" / "ccm")
    assert ccm.provenance["params"]["low_coord"] == 5e-4 and ccm.provenance["params"]["high_coord"] == 2e-3
    assert "<overall>" in result.stdout


def test_every_results_table_in_the_readme_is_what_its_command_prints():
    """Each ``python -m neuralop_merge.study.table FOLDER...`` the README names is followed by that command's table."""
    from neuralop_merge.study.table import readme_table

    root, text = README.parent, README.read_text()
    commands = re.findall(r"`python -m neuralop_merge\.study\.table ((?:examples/results/[\w/]+ ?)+)`", text)
    assert len(commands) >= 2
    for folders in commands:
        table = readme_table([root / folder for folder in folders.split()])
        following = text.split(f"study.table {folders}`", 1)[1]
        assert table in following.split("\n\n- ", 1)[0], folders


def test_every_per_seed_table_in_the_readme_is_what_its_command_prints():
    from neuralop_merge.study.table import per_seed_table

    root, text = README.parent, README.read_text()
    folders = re.findall(r"`python -m neuralop_merge\.study\.table --per-seed (examples/results/[\w/]+)`", text)
    assert folders
    for folder in folders:
        table = per_seed_table(root / folder)
        assert table.count("\n") + 1 == 2 + 2 * len(list((root / folder / "records").glob("seed_*.json.gz")))  # both sides of each seed
        following = text.split(f"--per-seed {folder}`", 1)[1]
        assert table in "\n".join(line.strip() for line in following.splitlines()), folder  # the README indents it


def test_a_per_seed_table_of_a_folder_without_records_is_one_line_with_status_2(tmp_path, capsys):
    from neuralop_merge.study.table import main

    (tmp_path / "results.json").write_text('{"selected_ccm": "ccm_prefix"}')
    assert main(["--per-seed", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds no seed records" in err and str(tmp_path) in err


def test_the_results_index_names_every_committed_results_folder_and_only_those():
    results = README.parent / "examples" / "results"
    named = set(re.findall(r"`([\w-]+)/`", (results / "README.md").read_text()))
    folders = {path.name for path in results.iterdir() if path.is_dir() and not path.name.startswith("ablations")}
    assert folders <= named, f"examples/results/README.md does not say what {sorted(folders - named)} hold"
    missing = named - {"ablations"} - folders
    assert not missing, f"examples/results/README.md names folders that are not there: {sorted(missing)}"


def test_every_committed_benchmark_result_names_the_command_that_wrote_it_and_the_readme_cites_it():
    results = README.parent / "benchmarks" / "results"
    text = README.read_text()
    for path in sorted(results.glob("*.json")):
        relative = path.relative_to(README.parent).as_posix()
        command = json.loads(path.read_text()).get("command", "")
        assert command.startswith("python benchmarks/") and command.endswith(f"--json {relative}"), path.name
        assert relative in text, f"the README does not cite {relative}"
