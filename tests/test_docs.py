"""What the documents say of the code is hand-written; these tests hold it to the code as it
ships: the README's recipe table (a recipe's model, width and accuracy floor) and its list of
benchmark scripts, and the BENCHMARKS.md section each recipe's header points to (which must
survive a rename)."""

import re
from pathlib import Path

import pytest

from cnnlab import build_model, builtin_recipes, count_parameters, load_recipe

PROJECT = Path(__file__).resolve().parents[1]
README = PROJECT / "README.md"
RECIPES = PROJECT / "cnnlab" / "recipes"
ROW = re.compile(r"^\| `(?P<recipe>[^`]+)` \| `(?P<model>[^`]+)`[^|]*\((?P<params>[\d,]+)\) \|"
                 r"(?P<what>[^|]+)\|$")


def _table_rows() -> dict[str, re.Match]:
    lines = README.read_text(encoding="utf-8").splitlines()
    header = lines.index("| recipe | model | what it reproduces |")
    rows = {}
    for line in lines[header + 2:]:
        if not line.startswith("|"):
            break
        match = ROW.match(line)
        assert match, f"README recipe table: a row not in the form `recipe` | `model` (N): {line}"
        rows[match["recipe"]] = match
    return rows


def test_the_readme_lists_every_builtin_recipe_and_no_other():
    assert sorted(_table_rows()) == sorted(builtin_recipes())


@pytest.mark.parametrize("name", builtin_recipes())
def test_the_readme_row_names_the_recipes_model_its_parameters_and_its_floor(name):
    row = _table_rows()[name]
    recipe = load_recipe(name)
    assert row["model"] == recipe.model.name
    model = build_model(recipe.model.name, **recipe.model.args)
    assert int(row["params"].replace(",", "")) == count_parameters(model)
    floor = re.search(r"≥(\d+(?:\.\d+)?)%", row["what"])
    if floor:
        assert float(floor[1]) == recipe.spec.min_test_acc


@pytest.mark.parametrize("name", builtin_recipes())
def test_the_benchmarks_section_a_recipe_points_to_is_there(name):
    header = (RECIPES / f"{name}.toml").read_text(encoding="utf-8")
    pointer = re.search(r'^# Measured: BENCHMARKS\.md, section "([^"]+)"', header, re.MULTILINE)
    assert pointer, f"{name}.toml: its header says where it was measured"
    headings = [line for line in (PROJECT / "BENCHMARKS.md").read_text(encoding="utf-8")
                .splitlines() if line.startswith("#")]
    assert any(pointer[1] in heading for heading in headings), (
        f"{name}.toml points to a BENCHMARKS.md section {pointer[1]!r} that no heading names")


def test_the_readme_names_every_benchmark_script():
    scripts = [path.name for path in (PROJECT / "benchmarks").glob("*.py")
               if 'if __name__ == "__main__":' in path.read_text(encoding="utf-8")]
    assert len(scripts) > 5  # the helpers they share (machine.py, ...) are not scripts
    readme = README.read_text(encoding="utf-8")
    assert [name for name in scripts if f"benchmarks/{name}" not in readme] == []
