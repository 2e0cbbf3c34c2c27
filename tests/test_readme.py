"""The README's quickstart really runs."""

from __future__ import annotations

import re
from pathlib import Path

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
