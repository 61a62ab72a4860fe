"""The package's installers agree with pyproject.toml and with each other."""

import re
from pathlib import Path

import pytest

import hyperspy_hebt

ROOT = Path(__file__).resolve().parents[1]


def _check_installed_commands():
    text = (ROOT / ".ci" / "check_installed").read_text()
    return [line for line in text.split("# commands:\n", 1)[1].splitlines() if line.strip()]


def _recipe():
    return (ROOT / "recipe" / "meta.yaml").read_text()


def test_recipe_tests_are_the_wheel_checks():
    recipe = _recipe()
    commands = re.findall(r"^    - (.+)$", recipe.split("  commands:\n", 1)[1].split("\n\n")[0],
                          re.MULTILINE)
    assert commands == _check_installed_commands()


def test_recipe_names_the_version_and_dependencies_of_pyproject():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    recipe = _recipe()
    assert f'{{% set version = "{hyperspy_hebt.__version__}" %}}' in recipe
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    conda_names = {"dask": "dask-core", "matplotlib": "matplotlib-base"}
    run = recipe.split("  run:\n", 1)[1].split("\n\n")[0]
    for requirement in project["dependencies"]:
        name = re.match(r"[A-Za-z0-9_.-]+", requirement).group(0)
        bounds = requirement[len(name):].split("]")[-1].replace(" ", "")
        line = f"    - {conda_names.get(name, name)} {bounds}".rstrip()
        assert line in run.splitlines(), f"recipe's run requirements lack {line!r}"


def test_citation_file_names_the_method_papers():
    citation = (ROOT / "CITATION.cff").read_text()
    assert "cff-version: 1.2.0" in citation
    assert f"version: {hyperspy_hebt.__version__}" in citation
    for needle in ("10.1016/j.ultramic.2020.113166", "A bimodal tomographic reconstruction",
                   "Universal elastic scattering cross sections",
                   "Cross sections for ionization of K, L and M shells"):
        assert needle in citation
