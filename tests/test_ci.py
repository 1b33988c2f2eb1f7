"""`.ci/run` runs what the README tells a newcomer to run, in the order it says."""

from __future__ import annotations

import re
import tomllib

from tests.support import ROOT


def _readme_test_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("\n## Run the tests\n") :]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None
    return block.group(1).splitlines()


def test_ci_runs_the_readme_test_commands_in_order() -> None:
    script = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    commands = _readme_test_commands()
    assert commands
    positions = [script.index(command) for command in commands]
    assert positions == sorted(positions)
    assert script.index("set -euo pipefail") < positions[0]


def test_ci_starts_from_a_fresh_venv() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    venv = script.index("python3 -m venv --clear .venv")
    assert venv < script.index(_readme_test_commands()[0])


def test_the_ci_tools_come_from_the_dev_extra() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    tools = " ".join(extras["dev"])
    for tool in ("ruff", "mypy", "import-linter"):
        assert tool in tools
    assert any(dep.startswith("mkdocs-material") for dep in extras["docs"])
