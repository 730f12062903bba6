"""What the documents say of the code is hand-written; these tests hold it to the code as it
ships: the README's recipe table (a recipe's model, width and accuracy floor) and its list of
benchmark scripts, the benchmark log section each recipe's header points to (which must
survive a rename), and the links of the top-level documents."""

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
    pointer = re.search(r'^# Measured: (docs/benchmarks/[\w.-]+\.md), section "([^"]+)"', header,
                        re.MULTILINE)
    assert pointer, f"{name}.toml: its header says where it was measured"
    log = PROJECT / pointer[1]
    assert log.is_file(), f"{name}.toml points to {pointer[1]}, which is not there"
    assert any(pointer[2] in heading for heading in _headings(log)), (
        f"{name}.toml points to a section {pointer[2]!r} that no heading of {pointer[1]} names")


@pytest.mark.parametrize("document", ["README.md", "BENCHMARKS.md"])
def test_every_local_link_of_a_top_level_document_leads_somewhere(document):
    text = (PROJECT / document).read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [t for t in targets if "://" not in t]
    assert local, f"{document} links nowhere: the pattern no longer reads its links"
    assert [t for t in local if not (PROJECT / t).exists()] == []


def test_every_recipe_of_the_results_tables_is_a_builtin_recipe():
    readme = README.read_text(encoding="utf-8").split("## Results", 1)[1].split("\n## ", 1)[0]
    benchmarks = (PROJECT / "BENCHMARKS.md").read_text(encoding="utf-8")
    cells = [line.split("|")[column] for text, column in ((readme, 1), (benchmarks, 2))
             for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    named = {name for cell in cells for name in re.findall(r"`([a-z0-9.-]+)`", cell)}
    assert len(named) > 8 and named <= set(builtin_recipes()), named - set(builtin_recipes())


def _headings(path: Path) -> list[str]:
    fenced, headings = False, []
    for line in path.read_text(encoding="utf-8").splitlines():
        fenced ^= line.startswith("```")
        if not fenced and line.startswith("#"):
            headings.append(line)
    return headings


def test_the_readme_names_every_benchmark_script():
    scripts = [path.name for path in (PROJECT / "benchmarks").glob("*.py")
               if 'if __name__ == "__main__":' in path.read_text(encoding="utf-8")]
    assert len(scripts) > 5  # the helpers they share (machine.py, ...) are not scripts
    readme = README.read_text(encoding="utf-8")
    assert [name for name in scripts if f"benchmarks/{name}" not in readme] == []
