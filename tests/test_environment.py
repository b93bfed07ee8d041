"""The environment variables: one table, read in one place, and README's table is that table."""

import ast
import dataclasses
import re
from pathlib import Path

import pytest

from stylizer.config import Limits, environment
from stylizer.config.environment import VARIABLES
from stylizer.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
# A variable's name as the code spells it.
NAME = re.compile(r"\b(?:STYLIZER|GRADIO|HF|TORCH|SPACES?)_[A-Z_]+\b")


def readme_rows() -> list[tuple[str, str, str]]:
    text = (ROOT / "README.md").read_text()
    table = text[text.index("| variable | default | meaning |") :].split("\n\n", 1)[0].splitlines()[2:]
    return [tuple(cell.strip() for cell in row.strip("|").split("|")) for row in table]


def test_readmes_table_is_the_table_of_variables():
    rows = readme_rows()
    assert [(f"`{v.name}`", v.default, v.meaning) for v in VARIABLES.values()] == rows


def test_every_variable_the_code_names_is_in_the_table_and_none_is_read_but_through_it():
    named, readers = set(), []
    for path in [*(ROOT / "stylizer").rglob("*.py"), ROOT / "app.py"]:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and NAME.fullmatch(node.value):
                named.add(node.value)
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv") and path.name != "environment.py":
                readers.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    # The app only writes GRADIO_ANALYTICS_ENABLED (off unless set): it is Gradio's, not a setting of ours.
    assert named and named - {"GRADIO_ANALYTICS_ENABLED"} <= set(VARIABLES), sorted(named - set(VARIABLES))
    # The one other use: app.py turns Gradio's analytics off before Gradio is imported (a write, not a read).
    assert readers == ["app.py:20"]


def test_a_variable_outside_the_table_cannot_be_read():
    with pytest.raises(KeyError, match="not in"):
        environment.read("STYLIZER_NO_SUCH_THING")


def test_the_caps_read_their_variables_and_their_defaults_are_the_tables():
    for cap in dataclasses.fields(Limits):
        variable = VARIABLES[cap.metadata["env"]]
        assert float(variable.default) == cap.default, variable.name
    limits = Limits.from_env({"STYLIZER_MAX_SIZE": "512", "STYLIZER_MAX_UPLOAD_MB": "2.5"})
    assert (limits.max_size, limits.max_upload_mb) == (512, 2.5)
    with pytest.raises(ConfigError, match="STYLIZER_MAX_STEPS must be a positive number"):
        Limits.from_env({"STYLIZER_MAX_STEPS": "-3"})


@pytest.mark.parametrize("raw, expected", [("", True), ("1", True), ("0", False)])
def test_switches_are_one_or_zero(raw, expected):
    assert environment.switch("STYLIZER_MCP", True, {"STYLIZER_MCP": raw}) is expected


def test_a_switch_set_to_anything_else_is_one_clear_error():
    with pytest.raises(ConfigError, match=r"STYLIZER_SHARE='yes': use 1 \(on\) or 0 \(off\)"):
        environment.switch("STYLIZER_SHARE", False, {"STYLIZER_SHARE": "yes"})
