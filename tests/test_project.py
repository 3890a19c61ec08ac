"""The project's promises about itself: one test command, pinned torch, conda and pip listing the same packages."""

import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def _names(reqs):
    return {re.split(r"[<>=!\[; ]", r.strip(), maxsplit=1)[0].lower().replace("_", "-") for r in reqs}


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in ci and "make test" in readme and "make lab" in readme


def test_torch_is_pinned():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(re.fullmatch(r"torch==2\.13\.0", d.split("#")[0].strip()) for d in deps)


def test_environment_yml_lists_the_same_packages():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = _names(project["dependencies"]) | _names(project["optional-dependencies"]["test"])
    env = (ROOT / "environment.yml").read_text()
    listed = _names(re.findall(r"^\s*-\s+([A-Za-z0-9_.\-\[\]]+(?:[<>=!]=?[^\s#]+)?)", env, flags=re.M))
    missing = wanted - listed - {"python", "pip"}
    assert not missing, f"environment.yml lacks {sorted(missing)}"
