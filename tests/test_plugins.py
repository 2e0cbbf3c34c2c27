"""Third-party strategies: found through a real entry point of a separately installed
distribution, usable from Python and from the CLI; conflicts and broken plugins."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

PLUGIN = '''
from neuralop_merge import Plan, Strategy


class FirstExpert(Strategy):
    """Returns a copy of the first expert (a deliberately simple plugin)."""

    def plan(self, inputs, *, boost: float = 1.0):
        n = len(inputs.experts)
        return Plan(0.0, (boost,) + (0.0,) * (n - 1), {"boost": boost})
'''


def _install(tmp_path: Path, dist: str, entry_points: str, module_source: str, target: Path) -> None:
    """Build and pip-install a real distribution (no network, no build isolation)."""
    source = tmp_path / f"src_{dist}"
    package = dist.replace("-", "_")
    (source / package).mkdir(parents=True)
    (source / package / "__init__.py").write_text(module_source)
    (source / "pyproject.toml").write_text(textwrap.dedent(f'''
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "{dist}"
        version = "0.1"
        [tool.setuptools]
        packages = ["{package}"]
        [project.entry-points."neuralop_merge.strategies"]
        {entry_points}
    '''))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(source)],
        check=True, capture_output=True,
    )


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("plugins")
    target = tmp_path / "site"
    _install(tmp_path, "nm-first-expert", 'first_expert = "nm_first_expert:FirstExpert"', PLUGIN, target)
    _install(tmp_path, "nm-rival", 'average = "nm_rival:FirstExpert"', PLUGIN, tmp_path / "rival")
    _install(tmp_path, "nm-broken", 'broken = "nm_broken:Missing"', "raise ImportError('boom')\n", tmp_path / "broken")
    return tmp_path


def _python(code: str, *paths: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, paths))}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)


def test_plugin_strategy_is_discovered_and_merges(plugin_path):
    result = _python(
        textwrap.dedent('''
            import torch, neuralop_merge as nm
            torch.manual_seed(0)
            a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
            print(sorted(nm.available_strategies()))
            merged = nm.merge("first_expert", experts=[a, b], boost=1.0)
            print(torch.equal(merged.weight, a.weight), merged.provenance["strategy"])
        '''),
        plugin_path / "site",
    )
    assert result.returncode == 0, result.stderr
    assert "'first_expert'" in result.stdout and "True first_expert" in result.stdout


def test_plugin_strategy_works_from_the_cli(plugin_path, tmp_path):
    from conftest import tiny_fno

    import neuralop_merge as nm

    for seed in range(2):
        nm.save_model(tiny_fno(seed), tmp_path / f"e{seed}")
    env = {**os.environ, "PYTHONPATH": str(plugin_path / "site")}
    base = [sys.executable, "-m", "neuralop_merge"]
    listed = subprocess.run([*base, "list"], capture_output=True, text=True, env=env)
    assert "first_expert" in listed.stdout
    merged = subprocess.run(
        [*base, "merge", "first_expert", "--expert", str(tmp_path / "e0"), "--expert", str(tmp_path / "e1"),
         "-p", "boost=1.0", "-o", str(tmp_path / "out")],
        capture_output=True, text=True, env=env,
    )
    assert merged.returncode == 0, merged.stderr
    loaded = nm.load_model(tmp_path / "out")
    assert torch.equal(loaded.projection.fcs[1].bias, tiny_fno(0).projection.fcs[1].bias)


def test_two_distributions_claiming_one_name_is_an_error_naming_both(plugin_path):
    result = _python(
        'import neuralop_merge as nm\ntry:\n    nm.get_strategy("average")\nexcept nm.StrategyError as e:\n    print(e)',
        plugin_path / "rival",
    )
    assert "claimed by two distributions" in result.stdout
    assert "neuralop-merge" in result.stdout and "nm-rival" in result.stdout


def test_broken_plugin_warns_and_the_others_keep_working(plugin_path):
    result = _python(
        "import warnings, neuralop_merge as nm\nwarnings.simplefilter('always')\n"
        "names = nm.available_strategies()\nprint('broken' in names, 'fixed_alpha' in names)",
        plugin_path / "broken",
    )
    assert result.stdout.strip() == "False True"
    assert "'broken'" in result.stderr and "nm-broken" in result.stderr


def test_entry_points_are_scanned_once_until_refresh(monkeypatch):
    from neuralop_merge import registry

    scans = []

    def counting_entry_points(**kwargs):
        scans.append(kwargs)
        return registry_entry_points(**kwargs)

    registry_entry_points = registry.entry_points
    monkeypatch.setattr(registry, "entry_points", counting_entry_points)
    registry.refresh()
    names = registry.available_strategies()
    for name in names:
        registry.get_strategy(name)
    assert len(scans) == 1
    registry.refresh()
    registry.get_strategy("fixed_alpha")
    assert len(scans) == 2


def test_refresh_finds_a_plugin_installed_while_the_process_runs(plugin_path, monkeypatch):
    import neuralop_merge as nm

    nm.refresh_strategies()
    assert "first_expert" not in nm.available_strategies()
    monkeypatch.syspath_prepend(str(plugin_path / "site"))
    assert "first_expert" not in nm.available_strategies()  # still the cached scan
    nm.refresh_strategies()
    try:
        assert "first_expert" in nm.available_strategies()
        assert nm.get_strategy("first_expert").name == "first_expert"
    finally:
        monkeypatch.undo()
        nm.refresh_strategies()


def test_every_error_class_is_exported():
    import neuralop_merge as nm
    from neuralop_merge import errors

    defined = {name for name, value in vars(errors).items() if isinstance(value, type) and issubclass(value, Exception)}
    assert defined <= set(nm.__all__)
    assert issubclass(nm.EvaluationError, nm.NeuralopMergeError)
