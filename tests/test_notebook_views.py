"""What Jupyter shows for cnnlab's objects: HTML tables holding the same numbers as the text
tables a terminal prints, and a run's result with its curves inline."""

import re
from html import escape

import pytest
import torch

import cnnlab
from cnnlab.config import load_recipe
from cnnlab.ship.loaded_run import Prediction


def _cells(html: str) -> list[str]:
    return re.findall(r"<td>(.*?)</td>", html)


def test_the_layer_table_in_html_holds_the_text_tables_numbers():
    table = cnnlab.summary(cnnlab.build_model("mnist_s5"), (1, 28, 28))
    html, text = table._repr_html_(), table.to_text()
    cells = _cells(html)
    for row in table.rows:
        assert row.name in cells and f"{row.params:,}" in text
        assert f"{row.params:,}" in cells
    assert "Total params: 19,290" in html and "Total params: 19,290" in text


def test_the_rf_table_and_the_verdicts_in_html_hold_the_same_values():
    field = cnnlab.receptive_field(cnnlab.build_model("cifar_s9"), (3, 32, 32))
    cells = _cells(field._repr_html_())
    assert [str(row.rout) for row in field.rows] == cells[12::13]  # the rout column
    assert field.summary_line() in field._repr_html_()
    report = cnnlab.check(load_recipe("cifar-s9"))
    html = report._repr_html_()
    for verdict in report.verdicts:
        assert escape(verdict.measured) in html


def test_predictions_show_one_row_per_image_with_their_top_classes():
    shown = Prediction([["cat", "dog"], ["dog", "cat"]], torch.tensor([[3, 5], [5, 3]]),
                       torch.tensor([[0.75, 0.25], [0.6, 0.4]]))._repr_html_()
    assert _cells(shown) == ["0", "cat 75.0%", "dog 25.0%", "1", "dog 60.0%", "cat 40.0%"]
@pytest.mark.slow


def test_a_run_result_shows_its_figures_curves_and_verdicts(tmp_path):
    from tests.conftest import separable_dataset, train_run

    recipe = load_recipe("mnist-s5-10ep", ["train.epochs=1", "train.device=cpu"])
    result = train_run(recipe, dataset=separable_dataset(128, 64), out_dir=tmp_path,
                       report=True, enforce_spec=False)
    html = result._repr_html_()
    assert f"<strong>{result.final_accuracy:.2f}%</strong>" in html
    assert '<img alt="curves"' in html and "base64," in html
    assert all(escape(v.rule) in html for v in result.check.verdicts)
