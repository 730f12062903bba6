"""`cnnlab design` and the `compact_cnn` family: the seeds' layouts written as family
arguments, the design file's checks, the hopeless-trial pruner, and a small design on real
MNIST slices that searches, rejects, confirms on fresh seeds, ships a recipe and resumes."""

import json
import math
import tomllib
from pathlib import Path
from statistics import NormalDist

import pytest
import tomli_w
import torch

from cnnlab import receptive_field
from cnnlab.cli import main
from cnnlab.config import load_recipe
from cnnlab.design.confirm import Confirmation, SeedRun, confirm
from cnnlab.errors import ConfigError, ModelError
from cnnlab.models import build_model, count_parameters
from cnnlab.run_folder import RunFolder
from cnnlab.sweep import load_sweep
from cnnlab.sweep.trial import counted
from tests.conftest import (
    kill_cnnlab_when,
    run_reproduce_line,
    saved_as_npz,
    separable_dataset,
)

optuna = pytest.importorskip("optuna")

S5 = {"widths": [[16, 16], [16, 32], [16], [32]],
      "transition": ["maxpool", "strided", "maxpool", "maxpool"], "bias": True,
      "dropout": 0.25, "dropout_at": "pools"}
S9 = {"in_channels": 3, "widths": [[12, 24], [48, 48], [60], [30]],
      "block": ["plain", "plain", "separable", "plain"], "branches": ["dilated", "plain"],
      "branch_stages": 2, "transition": ["strided", "none", "strided"],
      "padding": ["valid", "same", "valid", "same"], "head": "conv_gap", "head_kernel": 3,
      "dropout": 0.01}


@pytest.mark.parametrize(("args", "seed", "shape"), [(S5, "mnist_s5", (1, 28, 28)),
                                                      (S9, "cifar_s9", (3, 32, 32))])
def test_the_seed_layouts_written_as_family_arguments_match_the_seeds(args, seed, shape):
    family, original = build_model("compact_cnn", **args), build_model(seed)
    assert count_parameters(family) == count_parameters(original)
    assert (receptive_field(family, input_shape=shape).final
            == receptive_field(original, input_shape=shape).final)
    assert count_parameters(family) == {"mnist_s5": 19_290, "cifar_s9": 94_292}[seed]


def test_family_layout_features():
    residual = build_model("compact_cnn", widths=[8, 8], depths=[1, 2], block="residual")
    assert sum(type(m).__name__ == "Residual" for m in residual.modules()) == 2  # 8 -> 8 convs
    dilated = build_model("compact_cnn", widths=[4, 4], transition="dilated", depths=1)
    # A dilated transition: unpadded, dilation 2, so 28 -> 28 (same) -> 24.
    rf = receptive_field(dilated, input_shape=(1, 28, 28))
    assert [row.nout for row in rf.rows if row.kernel == 3] == [28, 24]
    squeezed = build_model("compact_cnn", widths=[16, 8], squeeze=[4, 0], depths=1)
    assert [m.out_channels for m in squeezed.modules() if type(m).__name__ == "Conv2d"] == [
        16, 4, 8]


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_a_reused_conv_adds_depth_and_receptive_field_for_a_batchnorm(padding):
    from cnnlab.inspection.summary import summary

    args = {"widths": [6, 8], "depths": 2, "padding": padding, "transition": "maxpool"}
    plain = build_model("compact_cnn", **args)
    reused = build_model("compact_cnn", **args, reuse=[0, 2])
    # two more applications of stage 2's last conv: its weights once, a BatchNorm each
    assert count_parameters(reused) == count_parameters(plain) + 2 * 2 * 8
    convs = [m for m in reused.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 4  # the module, not a copy: one set of weights, trained by 3 calls
    calls = []
    convs[-1].register_forward_hook(lambda m, i, o: calls.append(tuple(o.shape[-2:])))
    assert reused(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert len(calls) == 3 and len(set(calls)) == 1  # padded: the map keeps its size
    before = receptive_field(plain, input_shape=(1, 28, 28)).final
    after = receptive_field(reused, input_shape=(1, 28, 28)).final
    assert after == before + 2 * 2 * 2  # two 3x3 convs at a jump of 2 (after the pool)
    plain_cost, reused_cost = summary(plain, (1, 28, 28)), summary(reused, (1, 28, 28))
    assert reused_cost.mult_adds > plain_cost.mult_adds  # computed three times ...
    # ... stored once: the int8 weights grow by the two BatchNorms' scales and shifts only
    assert reused_cost.int8_flash_bytes == plain_cost.int8_flash_bytes + 2 * 8 * 8


@pytest.mark.parametrize(("args", "message"), [
    ({"widths": [8, 16], "depths": 1, "reuse": [0, 1]},
     "stage 2 reuses its last conv, which maps 8 to 16 channels"),
    ({"widths": [8, 8], "depths": 1, "transition": "strided", "reuse": [0, 1]},
     "with stride 2: a conv applied again must keep both"),
    ({"widths": [8, 8], "reuse": -1}, "reuse counts the extra applications"),
    ({"block": "fancy"}, "block = 'fancy' is not one of plain, separable"),
    ({"widths": 8}, "widths is a list with one entry per stage"),
    ({"widths": [8, 8], "transition": ["strided", "strided", "none"]},
     "transition has 3 entries for 2 stages"),
    ({"widths": [8, 8], "transition": ["maxpool", "strided"]}, "after the last stage only"),
    ({"widths": [8, 8], "depths": [1, 0]}, "stage 2 needs at least one conv"),
    ({"branches": ["plain"], "branch_stages": 3}, "branch_stages must be 1 to 2"),
])
def test_family_arguments_that_make_no_network_are_one_line(args, message):
    with pytest.raises(ModelError, match=message):
        build_model("compact_cnn", **args)


def _design_file(folder: Path, name="tiny", trials=3, space=None, spec=None, extra="") -> Path:
    space = space if space is not None else (
        '"model.args.widths.0" = { int = [4, 8] }\n"model.args.widths.2" = { int = [8, 24] }\n')
    spec = spec or ('max_params = 4000\nmax_epochs = 2\nmin_test_acc = 60.0\nlast_epochs = 1\n'
                    'require = ["batchnorm", "gap", "fc"]\n')
    path = folder / f"{name}.toml"
    path.write_text(
        f'[design]\ndataset = "mnist"\ntrials = {trials}\ncandidates = 2\nseeds = 2\n'
        'val_split = 300\nset = ["data.train_limit=2000", "data.test_limit=400", '
        f'"data.batch_size=32", "train.device=\\"cpu\\""]\n{extra}\n'
        f"[design.space]\n{space}\n[spec]\n{spec}")
    return path


def test_the_design_folders_copy_of_the_file_names_its_study(tmp_path):
    from cnnlab.design.design_file import load_design, named_source

    written = _design_file(tmp_path, name="tiny").read_text()
    dotted = tmp_path / "dotted.toml"  # no [design] header line to put the name under
    design_keys = written.split("[design]\n")[1].split("\n[design.space]")[0]
    dotted.write_text("".join(f"design.{line}\n" for line in design_keys.splitlines() if line)
                      + "[design.space]" + written.split("[design.space]")[1])
    headed = tmp_path / "headed.toml"  # its header carries a comment
    headed.write_text("# mine\n" + written.replace("[design]\n", "[design]  # the search\n"))
    named = tmp_path / "named.toml"
    named.write_text(written.replace("[design]\n", '[design]\nname = "kept"\n'))
    beside = tmp_path / "elsewhere"  # a recipe file beside the design file, not in the cwd
    beside.mkdir()
    (beside / "base.toml").write_text(load_recipe("mnist-s5-10ep").to_toml())
    (with_recipe := beside / "with-recipe.toml").write_text(
        written.replace("[design]\n", '[design]\nrecipe = "base.toml"\n'))
    for path, name in ((headed, "headed"), (dotted, "dotted"), (named, "kept"),
                       (with_recipe, "with-recipe")):
        plan = load_design(path)
        copy = tmp_path / name / "design.toml"
        copy.parent.mkdir()
        copy.write_text(named_source(plan))
        again = load_design(copy)
        assert again.name == plan.name == name
        assert again.sweep_document["sweep"] == plan.sweep_document["sweep"]
    assert load_design(with_recipe).recipe == str((beside / "base.toml").resolve())
    assert (tmp_path / "headed" / "design.toml").read_text().startswith("# mine\n")
    assert named_source(load_design(named)) == named.read_text()  # named already: untouched


def test_a_sweep_key_can_index_a_list_of_the_base_recipe(tmp_path):
    from cnnlab.design.design_file import load_design

    spec = load_design(_design_file(tmp_path))
    search_file = tmp_path / "search.toml"
    search_file.write_text(tomli_w.dumps(spec.sweep_document))
    search = load_sweep(search_file)
    recipe = search.recipe_for({"model.args.widths.2": 9})
    from cnnlab.design.spaces import start_for

    widths = start_for((1, 28, 28)).model_args["widths"]
    assert recipe.model.args["widths"] == [widths[0], widths[1], 9]  # its third replaced
    assert search.base.model.args["widths"] == widths  # the base itself untouched
    with pytest.raises(ConfigError, match="not a position in the recipe's list of 3"):
        search.base.with_values({"model.args.widths.3": 9})
    # only a point of the space makes a recipe: a key it does not search, or a value out of
    # a key's range, as a study's database from someone else may hold
    for outside in ({"model.args.widths.1": 9}, {"model.args.widths.2": 25},
                    {"model.args.widths.2": 9.5}, {"model.name": "evil.py:build"}):
        with pytest.raises(ConfigError, match="is not a point of the sweep's space"):
            search.recipe_for(outside)
    # no val_target: the spec's test target less the shape's measured validation offset,
    # plus the margin its seed spread asks for
    from cnnlab.design.spaces import start_for

    start = start_for((1, 28, 28))
    assert search.objective == "smallest_at_target" and search.val_target == pytest.approx(
        60.0 - start.val_offset + spec.seed_margin)
    assert spec.seed_margin > 0 and spec.seed_margin_source
    assert spec.seeds == (1, 2) and search.base.train.seed == 0  # fresh seeds confirm


def test_the_seed_margin_is_learned_from_the_library_s_confirmation_runs(tmp_path,
                                                                         monkeypatch):

    from cnnlab.design import library
    from cnnlab.design.design_file import load_design
    from cnnlab.design.spaces import start_for

    def entry(lows: list[float]) -> dict:  # each run's last epochs, its lowest given
        return {"params": 3000, "runs": [{"seed": seed, "precision": "fp32",
                                          "last_test_acc": [low + 0.05, low]}
                                         for seed, low in enumerate(lows, 1)]}

    folder = tmp_path / "library"
    folder.mkdir()
    monkeypatch.setattr(library, "library_folder", lambda: folder)
    start = start_for((1, 28, 28))

    def margin_with(designs: list[dict]) -> tuple[float, float]:
        (folder / "1x28x28.toml").write_text(tomli_w.dumps({"design": designs}))
        plan = load_design(_design_file(tmp_path))  # 2 seeds x 2 precisions: 4 runs
        return plan.seed_margin, plan.sweep_document["sweep"]["val_target"]

    # runs 0.1 either side of each design's own level, whatever the level: a spread of 0.1
    levels = [entry([level - 0.1, level, level + 0.1]) for level in (99.0, 99.3, 99.5, 98.2)]
    one_run = entry([95.0])  # a design confirmed once says nothing of its spread
    margin, val_target = margin_with([*levels, one_run])
    expected = 0.1 * NormalDist().inv_cdf(0.8 ** (1 / 4))
    assert margin == pytest.approx(expected, abs=0.005) and margin != start.seed_margin
    assert val_target == pytest.approx(60.0 - start.val_offset + margin)
    # a wider spread asks for more; too few runs to stand on: the default space's margin
    wide = [entry([level - 0.2, level, level + 0.2]) for level in (99.0, 99.3, 99.5, 98.2)]
    assert margin_with(wide)[0] == pytest.approx(2 * expected, abs=0.01)
    assert margin_with(levels[:3])[0] == start.seed_margin  # 6 degrees of freedom, under 8
    (folder / "1x28x28.toml").unlink()
    assert margin_with([])[0] == start.seed_margin


def test_bad_design_files_are_one_line_and_exit_2_before_any_training(tmp_path, capsys):
    cases = {
        _design_file(tmp_path, "empty", space=" "): "[design.space] is empty",
        _design_file(tmp_path, "impossible", spec="max_params = 300\nmin_test_acc = 99.0\n"):
            "designs sampled from the space meets the budget; the smallest had",
        _design_file(tmp_path, "unknown", space='"model.args.widht" = { int = [4, 8] }\n'):
            "does not accept these model.args",
        _design_file(tmp_path, "badvalue", space='"model.args.block.1" = { choice = ["x"] }\n'):
            "block = 'x' is not one of",
        _design_file(tmp_path, "notarget", spec="max_params = 4000\n"): "needs min_test_acc",
        _design_file(tmp_path, "typo", extra="trails = 3\n"): "unknown key design.trails",
        _design_file(tmp_path, "text", spec='max_epochs = 15\nlast_epochs = "3"\n'
                     'min_test_acc = 99.0\n'): "spec.last_epochs must be an integer",
    }
    cases[_design_file(tmp_path, "workers")] = "--workers must be at least 1"
    for path, message in cases.items():
        workers = ["--workers", "0"] if path.stem == "workers" else []
        assert main(["design", str(path), "--out", str(tmp_path / "designs"), *workers]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, (path.name, err)
        assert not (tmp_path / "designs" / path.stem).exists()  # nothing written
        if not workers:
            assert err.startswith(f"cnnlab: error: {path}")  # said of the user's own file


def test_the_hopeless_pruner_stops_trials_behind_every_one_that_reached_the_target():
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    from cnnlab.sweep.pruning import HopelessPruner

    study = optuna.create_study(direction="minimize")

    def finished(curve, val_acc):
        study.add_trial(create_trial(
            state=TrialState.COMPLETE, value=1.0, params={"x": 0.5},
            distributions={"x": FloatDistribution(0, 1)}, user_attrs={"val_acc": val_acc},
            intermediate_values=dict(enumerate(curve, start=1))))

    def running(curve):
        return create_trial(state=TrialState.COMPLETE, value=1.0,
                            intermediate_values=dict(enumerate(curve, start=1)))

    pruner = HopelessPruner(target=99.0, margin=1.0, warmup=1)
    finished([90.0, 95.0, 99.2], 99.2)  # reached the target
    assert not pruner.prune(study, running([80.0, 94.5]))  # behind, within the margin
    assert pruner.prune(study, running([80.0, 93.9]))  # more than a point behind it
    assert not pruner.prune(study, running([10.0]))  # the warm-up epoch is never judged
    finished([97.0, 98.0, 98.5], 98.5)  # missed: sets no floor, however far ahead it was
    assert pruner.prune(study, running([80.0, 93.9]))
    finished([85.0, 92.0, 99.1], 99.1)  # a slower starter that reached: the floor drops
    assert not pruner.prune(study, running([80.0, 91.5]))


@pytest.mark.slow
def test_a_small_design_searches_confirms_on_fresh_seeds_and_ships_a_recipe(
        real_data_root, tmp_path):
    from cnnlab.design import design

    result = design(_design_file(tmp_path), out_dir=tmp_path / "designs",
                    data_dir=real_data_root, progress=False, echo=None)
    trials = result.study.get_trials(deepcopy=False)
    trained = [t for t in trials if counted(t)]
    rejected = [t for t in trials if "rejected" in t.user_attrs]
    assert len(trained) == 3  # `trials` counts designs trained; rejected ones come beside
    for trial in rejected:  # over the budget: never trained, no run folder
        assert trial.user_attrs["params"] > 4000 and "run_dir" not in trial.user_attrs
        assert trial.constraints == {"budget": 1.0}
    assert result.pick is not None and result.pick.confirmed
    # seeds not the search's 0, each in both precisions a CPU's train.amp = "auto" may pick;
    # the later seeds in fp32 alone where bf16 trained the first no faster (this machine's)
    in_both = result.pick.bf16_slowdown < 1
    assert [(run.seed, run.precision) for run in result.pick.runs] == [
        (1, "fp32"), (1, "bf16"), (2, "fp32"), *([(2, "bf16")] if in_both else [])]
    assert in_both or load_recipe(result.recipe_path).train.amp == "off"
    assert [run.history[-1]["precision"] for run in result.pick.runs[:2]] == [
        "fp32", "bf16 autocast"]
    for seed_run in result.pick.runs:
        assert len(seed_run.history) == 2 and seed_run.history[-1]["test_acc"] >= 60.0
        assert "val_acc" not in seed_run.history[-1]  # the full training split
    # The pick is the smallest design that reached the target on the validation split.
    reached = [t.user_attrs["params"] for t in trained
               if t.state.name == "COMPLETE" and t.user_attrs["val_acc"] >= 60.0]
    assert result.pick.params == min(reached)
    shipped = load_recipe(result.recipe_path)
    assert shipped.model.name == "compact_cnn" and shipped.data.val_split is None
    assert shipped.spec.max_params == 4000 and shipped.train.seed == 0
    readme = (result.folder / "README.md").read_text()
    assert f"**{result.pick.params:,} parameters**" in readme
    assert "| trial | params | seed | precision | last epoch (test %) | met |" in readme
    assert "final receptive field" in readme
    assert (result.folder / "tiny-search" / "README.md").is_file()
    assert "![validation accuracy against parameters" in readme
    # the record the library is written from: every design confirmed, with its runs
    record = json.loads((result.folder / "design.json").read_text())
    assert record["pick"]["params"] == result.pick.params and record["pick"]["met"]
    assert [c["params"] for c in record["candidates"]] == [
        c.params for c in result.candidates if c.runs]
    assert [(r["seed"], r["precision"]) for r in record["pick"]["runs"]] == [
        (run.seed, run.precision) for run in result.pick.runs]
    assert record["pick"]["precisions"] == list(result.pick.precisions)
    assert (result.folder / "tiny-search" / "plots" / "pareto.png").is_file()
    # The README's own line resumes this design from any folder, though the file named no
    # study (its name was its stem, "tiny"; the folder's copy is design.toml): all was done.
    assert "name" not in tomllib.loads((tmp_path / "tiny.toml").read_text())["design"]
    trained = sorted(result.folder.glob("confirm/*/*/history.jsonl"))
    before = [p.stat().st_mtime_ns for p in trained]
    assert run_reproduce_line(result.folder / "README.md", real_data_root,
                              tmp_path / "elsewhere") == 0
    assert [p.stat().st_mtime_ns for p in trained] == before and trained
    assert json.loads((result.folder / "design.json").read_text())["pick"] == record["pick"]
    assert not (tmp_path / "elsewhere" / "designs").exists()


@pytest.mark.slow
def test_a_study_with_no_pick_keeps_its_nearest_miss_for_the_library(real_data_root,
                                                                      tmp_path):
    from cnnlab.design import design
    from cnnlab.design.library import entries, write_library

    # every design reaches the validation target; none can hold 100% on the test split
    path = _design_file(tmp_path, trials=2, extra="val_target = 10.0\nrungs = []")
    path.write_text(path.read_text().replace("min_test_acc = 60.0", "min_test_acc = 100.0"))
    result = design(path, out_dir=tmp_path / "designs", data_dir=real_data_root,
                    progress=False, echo=None)
    assert result.pick is None and len(result.candidates) == 2
    record = json.loads((result.folder / "design.json").read_text())
    shortfalls = {c.params: c.short_by for c in result.candidates}
    assert [(c["params"], c["met"], c["short_by"]) for c in record["candidates"]] == [
        (c.params, False, round(c.short_by, 3)) for c in result.candidates]
    nearest = min(result.candidates, key=lambda c: c.short_by)
    readme = (result.folder / "README.md").read_text()
    assert "No design met the rule on every confirmation seed." in readme
    assert (f"The nearest: trial {nearest.trial} ({nearest.params:,} parameters) missed the "
            f"rule on seed 1") in readme
    write_library([result.folder], tmp_path / "library")
    (entry,) = entries((1, 28, 28), tmp_path / "library")
    assert (entry["params"], entry["met"]) == (nearest.params, False)
    assert entry["runs"][0]["seed"] == 1 and shortfalls[entry["params"]] > 0


@pytest.mark.slow
def test_a_killed_design_resumes_where_it_stopped(real_data_root, tmp_path):
    path = _design_file(tmp_path, trials=2)
    path.write_text(path.read_text().replace("max_epochs = 2", "max_epochs = 6"))
    out = tmp_path / "designs"
    confirming = out / "tiny" / "confirm"  # once it confirms, the search is done
    kill_cnnlab_when(["design", str(path), "--out", str(out), "--no-progress"], real_data_root,
                     lambda: bool(list(confirming.glob("trial*/seed1/history.jsonl"))), 300)
    from cnnlab.design import design

    searched = (out / "tiny" / "tiny-search" / "study.db").stat().st_mtime
    result = design(path, out_dir=out, resume=True, data_dir=real_data_root, progress=False,
                    echo=None)
    assert (out / "tiny" / "tiny-search" / "study.db").stat().st_mtime == searched  # done
    assert result.pick is not None  # 2 seeds in 2 precisions; 3 runs where bf16 was slower
    assert len(result.pick.runs) == (3 if result.pick.bf16_slowdown >= 1 else 4)
    assert all(len(r.history) == 6 for r in result.pick.runs)
    assert main(["design", str(path), "--out", str(out)]) == 2  # a second start is refused


@pytest.mark.slow
def test_without_constraints_rejected_designs_are_told_as_failed(real_data_root, tmp_path):
    from cnnlab.design import design

    path = _design_file(tmp_path, trials=2, extra="constraints = false\n",
                        space='"model.args.widths.2" = { int = [4, 12] }\n')  # 9 and up too big
    result = design(path, out_dir=tmp_path / "designs", data_dir=real_data_root,
                    progress=False, echo=None)
    trials = result.study.get_trials(deepcopy=False)
    rejected = [t for t in trials if "rejected" in t.user_attrs]
    assert rejected and all(t.state.name == "FAIL" and not t.constraints for t in rejected)
    trained = [t for t in trials if counted(t)]
    assert len(trained) == 2 and all(not t.constraints for t in trained)
    assert "0 failed" in (result.folder / "tiny-search" / "README.md").read_text()


@pytest.mark.parametrize(("extra", "channels_last"), [
    ("", False),  # the default start: small odd-width nets train channels-first
    ('set = ["train.channels_last=true"]', True),  # what the design file sets wins
    ('recipe = "mnist-s5-10ep"', None),  # a recipe named by the file keeps its own layout
])
def test_the_default_mnist_start_trains_its_candidates_channels_first_in_both_precisions(
        tmp_path, extra, channels_last):
    from cnnlab.design.design_file import load_design

    path = tmp_path / "d.toml"
    path.write_text(f'[design]\ndataset = "mnist"\n{extra}\n[spec]\nmin_test_acc = 99.0\n')
    search_file = tmp_path / "search.toml"
    search_file.write_text(tomli_w.dumps(load_design(path).sweep_document))
    base = load_sweep(search_file).base
    own = load_recipe("mnist-s5-10ep")
    for precision in ("fp32", "bf16"):
        expected = (own.for_precision(precision).train.channels_last if channels_last is None
                    else channels_last)
        assert base.for_precision(precision).train.channels_last is expected


@pytest.mark.parametrize("spec, tail, hold", [
    # the judged epochs and the one before them plain; the judged ones after the first held
    ("max_epochs = 15\nlast_epochs = 3", 4, 2),
    ("max_epochs = 10\nlast_epochs = 3", 4, 2),
    ("max_epochs = 15\nlast_epochs = 1", 2, 0),
    ("max_epochs = 6\nlast_epochs = 3", 3, 1),  # half the run plain, under a third held
])
def test_the_default_mnist_start_trains_the_judged_epochs_on_plain_images_at_a_held_rate(
        tmp_path, spec, tail, hold):
    from cnnlab.design.design_file import load_design

    path = tmp_path / "d.toml"
    path.write_text(f'[design]\ndataset = "mnist"\n[spec]\nmin_test_acc = 99.0\n{spec}\n')
    search_file = tmp_path / "search.toml"
    search_file.write_text(tomli_w.dumps(load_design(path).sweep_document))
    search = load_sweep(search_file)
    assert search.base.augment.off_last_epochs == tail
    assert search.base.schedule.hold_epochs == hold
    searched = {d.key for d in search.space}
    assert not searched & {"augment.off_last_epochs", "schedule.hold_epochs"}  # set
    # what the user sets stands
    path.write_text(f'[design]\ndataset = "mnist"\n'
                    f'set = ["augment.off_last_epochs=1", "schedule.hold_epochs=1"]\n'
                    f'[spec]\nmin_test_acc = 99.0\n{spec}\n')
    search_file.write_text(tomli_w.dumps(load_design(path).sweep_document))
    assert load_sweep(search_file).base.augment.off_last_epochs == 1
    assert load_sweep(search_file).base.schedule.hold_epochs == 1


def test_the_default_grey_space_builds_at_every_corner_around_its_base(tmp_path):
    from cnnlab.prepare import prepare

    path = tmp_path / "s5.toml"
    path.write_text('[design]\ndataset = "mnist"\n[spec]\nmax_params = 5000\nmax_epochs = 15\n'
                    'min_test_acc = 99.4\nlast_epochs = 3\n'
                    'require = ["batchnorm", "dropout", "gap", "fc"]\n')
    search = _search_of(path, tmp_path)  # raises if a corner of the space builds no network
    base = prepare(search.base, progress=False).inspection
    # the base builds and meets every rule but the budget, which the study scales it to
    failures = [v.rule for v in base.check.failures]
    assert failures in ([], ["parameters <= 5,000"]), base.check.to_text()


def test_the_default_colour_space_holds_designs_within_the_s9_rules(tmp_path):
    from cnnlab.design.design import _some_design_fits
    from cnnlab.design.design_file import load_design
    from cnnlab.prepare import prepare

    path = tmp_path / "s9.toml"
    path.write_text('[design]\ndataset = "cifar10"\n[spec]\nmax_params = 200000\nmin_rf = 45\n'
                    'min_test_acc = 90.0\nmax_epochs = 30\n'
                    'require = ["dilated_conv", "depthwise_separable", "gap"]\n'
                    'forbid = ["maxpool"]\n')
    spec = load_design(path)
    search_file = tmp_path / "search.toml"
    search_file.write_text(tomli_w.dumps(spec.sweep_document))
    search = load_sweep(search_file)
    _some_design_fits(search, path)  # raises if none of the sampled designs fits
    base = prepare(search.base, progress=False).inspection
    assert base.check.passed, base.check.to_text()
    assert search.base.train.epochs == 30 and search.base.augment.hflip == 0.5


@pytest.mark.slow
def test_confirmation_reuses_a_seeds_run_only_if_the_design_is_unchanged(tmp_path):
    small = ["data.batch_size=64", "train.epochs=1", "train.device=cpu", "spec.min_test_acc=1"]
    data, folder = separable_dataset(), tmp_path / "trial3"

    def confirmed(*overrides):
        recipe = load_recipe("mnist-s5-10ep", [*small, *overrides])
        return confirm(Confirmation(3, 16754, recipe), (1,), folder, data, None).runs[0]

    first = confirmed()
    history = first.run_dir / "history.jsonl"
    written = history.stat().st_mtime_ns
    assert confirmed().history == first.history  # the same design: its run is reused
    assert history.stat().st_mtime_ns == written
    edited = confirmed("optim.weight_decay=0.001")  # the design file changed since
    assert edited.run_dir == first.run_dir and history.stat().st_mtime_ns != written
    assert RunFolder(edited.run_dir).recipe().optim.weight_decay == 0.001


@pytest.mark.slow
def test_confirmation_with_two_workers_trains_two_runs_at_once_and_ends_with_a_batch_that_missed(
        tmp_path):
    data = separable_dataset()
    recipe = load_recipe("mnist-s5-10ep", [f'data.path="{saved_as_npz(data, tmp_path)}"',
                                           'data.dataset="npz"', "data.batch_size=64",
                                           "train.epochs=1", "train.device=cpu",
                                           "spec.min_test_acc=1"])
    met = confirm(Confirmation(3, 16754, recipe), (1, 2, 3), tmp_path / "met", data, None,
                  workers=2)
    assert met.confirmed and [r.seed for r in met.runs] == [1, 2, 3]
    assert all(len(r.history) == 1 and r.run_dir.parent == tmp_path / "met" for r in met.runs)
    # The same runs (reused, not retrained), where designs' runs spread widely: met on every
    # one, yet not kept, and the line says by how much the margin fell short.
    lines = []
    wide = confirm(Confirmation(3, 16754, recipe, library_spread=(1000.0, 30)), (1, 2, 3),
                   tmp_path / "met", data, lines.append, workers=2)
    assert [r.history for r in wide.runs] == [r.history for r in met.runs]
    assert wide.thin and not wide.confirmed
    assert lines[-1].startswith("  trial 3: met the rule on every run, but is predicted")
    assert lines[-1].endswith(f"asks {wide.margin_needed:.2f}): not kept")
    # A run that misses ends the confirmation after its batch: its partner's run is kept (it
    # was trained beside it), the next batch is never started, and the miss named is the first.
    untrained = recipe.with_values({"schedule.max_lr": 1e-6, "spec.min_test_acc": 50.0})
    missed = confirm(Confirmation(3, 16754, untrained), (1, 2, 3), tmp_path / "missed", data,
                     None, workers=2)
    assert [r.seed for r in missed.runs] == [1, 2] and missed.failed_on == 1
    assert all(r.history[-1]["test_acc"] < 50 for r in missed.runs)
    assert not (tmp_path / "missed" / "seed3").exists()


@pytest.mark.slow
@pytest.mark.parametrize("bf16_seconds", [1.5, 0.8])
def test_a_design_that_bf16_does_not_speed_up_trains_and_is_judged_in_fp32_alone(
        tmp_path, monkeypatch, bf16_seconds):
    # the epoch times are set: which precision is faster is this machine's, not the test's
    monkeypatch.setattr(SeedRun, "epoch_seconds",
                        lambda run: {"fp32": 1.0, "bf16": bf16_seconds}[run.precision])
    recipe = load_recipe("mnist-s5-10ep", ["data.batch_size=64", "train.epochs=1",
                                           "train.device=cpu", "spec.min_test_acc=1"])
    candidate = confirm(Confirmation(3, 16754, recipe), (1, 2), tmp_path, separable_dataset(),
                        None, ("fp32", "bf16"))
    assert candidate.confirmed and candidate.bf16_slowdown == bf16_seconds
    trained = [(r.seed, r.precision) for r in candidate.runs]
    if bf16_seconds > 1:  # the later seeds in fp32 only; the recipe says so
        assert trained == [(1, "fp32"), (1, "bf16"), (2, "fp32")]
        assert candidate.recipe.train.amp == "off" and candidate.precisions == ("fp32",)
        assert [r.precision for r in candidate.judged] == ["fp32", "fp32"]
        assert not (tmp_path / "seed2-bf16").exists()
    else:
        assert trained == [(1, "fp32"), (1, "bf16"), (2, "fp32"), (2, "bf16")]
        assert candidate.recipe.train.amp == recipe.train.amp
        assert candidate.precisions == ("fp32", "bf16")
    # a bf16 run that is only the speed's measure does not fail the design; a judged one does
    missed = [{"test_acc": 0.5, "train_seconds": 1.0}]
    unjudged = SeedRun(1, tmp_path, missed, "bf16")
    fp32_only = Confirmation(3, 16754, recipe, [candidate.runs[0], unjudged])
    assert fp32_only.confirmed and fp32_only.short_by < 0
    both = Confirmation(3, 16754, recipe, [candidate.runs[0], unjudged],
                        precisions=("fp32", "bf16"))
    assert not both.confirmed and (both.failed_on, both.failed_in) == (1, "bf16")


def test_a_design_that_met_every_run_near_the_line_is_not_kept_for_unseen_seeds(tmp_path):
    from cnnlab.design.confirm import UNSEEN_HOLDS
    from cnnlab.design.design_report import _failure, _no_pick, _unseen_sentence

    recipe = load_recipe("mnist-s5-10ep", ["train.epochs=2", "spec.last_epochs=2"])

    def confirmation(lows: list[float], library_spread: tuple[float, int]) -> Confirmation:
        runs = [SeedRun(seed, tmp_path, [{"test_acc": low + 0.05}, {"test_acc": low}])
                for seed, low in enumerate(lows, 1)]
        return Confirmation(3, 3869, recipe, runs, library_spread=library_spread)

    # 0.1 above 99.4 on average over three seeds, runs 0.06 apart: a new seed falls 1.4
    # standard errors of prediction above the line, and misses 8% of the time
    near = confirmation([99.45, 99.50, 99.55], (0.06, 16))
    spread, dof = near.spread
    assert dof == 18 and spread == pytest.approx(math.sqrt((0.06**2 * 16 + 0.005) / 18))
    expected = NormalDist().cdf(0.1 / (spread * math.sqrt(1 + 1 / 3)))
    assert near.holds_unseen == pytest.approx(expected) and 0.9 < expected < UNSEEN_HOLDS
    assert near.first_miss is None and near.thin and not near.confirmed
    assert "met the rule on every run, 0.05 points above" in _failure(near)
    assert f"on {expected:.0%} of unseen seeds" in _failure(near)
    # how far short of the prediction it fell: the mean margin that gives exactly 95%
    needed = near.margin_needed
    assert needed > 0.1 and NormalDist().cdf(
        needed / (spread * math.sqrt(1 + 1 / 3))) == pytest.approx(UNSEEN_HOLDS)
    assert f"(95% asks {needed:.3f} above on average)" in _unseen_sentence(near)
    # the same runs further above the line are kept; so is any design where the spread
    # rests on too few degrees of freedom to predict from (no library: its own 2)
    assert confirmation([99.55, 99.60, 99.65], (0.06, 16)).confirmed
    alone = confirmation([99.45, 99.50, 99.55], (0.0, 0))
    assert alone.holds_unseen is None and alone.margin_needed is None and alone.confirmed
    assert "rests on 2 degrees of freedom" in _unseen_sentence(alone)
    # a run that missed is a miss, not a thin margin
    missed = confirmation([99.39, 99.8, 99.8], (0.06, 16))
    assert missed.failed_on == 1 and not missed.thin and not missed.confirmed
    # a study that turned a design away for unseen seeds says so, not that every one missed,
    # and names the nearest: the one that held the line by most at its lowest
    ended = _no_pick([missed, near], searched=True)
    assert ended.startswith("No design was kept. The nearest: trial 3 (3,869 parameters) met")
    assert _no_pick([missed], searched=True).startswith(
        "No design met the rule on every confirmation seed. The nearest: trial 3 (3,869 "
        "parameters) missed the rule on seed 1 in fp32, by 0.01 points")
    assert _no_pick([], searched=False) == ("No design met the rule on every confirmation seed "
                                            "(none reached the target on the validation split "
                                            "in the search).")


def test_the_design_report_marks_each_confirmation_run_by_its_own_figures_and_times_the_rungs(
        tmp_path):
    from datetime import datetime, timedelta
    from types import SimpleNamespace

    from cnnlab.design.design_report import _seed_row, _wall_seconds

    recipe = load_recipe("mnist-s5-10ep", ["train.epochs=3", "spec.last_epochs=3"])
    rows = {"met": [99.5, 99.45, 99.41], "missed": [99.5, 99.39, 99.5]}
    runs = [SeedRun(1, tmp_path, [{"test_acc": a} for a in rows[kind]], precision)
            for kind, precision in (("missed", "fp32"), ("missed", "bf16"), ("met", "bf16"))]
    # two runs side by side both missed: the report names the first, and marks both
    candidate = Confirmation(3, 3869, recipe, runs, precisions=("fp32", "bf16"))
    assert (candidate.failed_on, candidate.failed_in) == (1, "fp32")
    assert [_seed_row(candidate, run, 3, False)[-1] for run in runs] == ["✗", "✗", "✓"]
    in_fp32 = Confirmation(3, 3869, recipe, runs, precisions=("fp32",))
    assert _seed_row(in_fp32, runs[1], 3, False)[-1] == "✗ (not judged: it trains in fp32)"
    start = datetime(2026, 12, 6, 21, 0)
    side_by_side = [SimpleNamespace(datetime_start=start + timedelta(minutes=a),
                                    datetime_complete=start + timedelta(minutes=b))
                    for a, b in ((0, 9), (1, 10), (5, 6))]
    assert _wall_seconds(side_by_side) == 600 and _wall_seconds([]) == 0


def test_a_spec_with_min_int8_acc_confirms_each_run_by_its_int8_export(tmp_path):
    pytest.importorskip("onnxruntime")
    from cnnlab.design.confirm import rule_met

    recipe = load_recipe("mnist-s5-10ep", ["data.batch_size=64", "train.epochs=1",
                                           "train.device=cpu", "spec.min_test_acc=1",
                                           "spec.min_int8_acc=1"])
    data, folder = separable_dataset(), tmp_path / "trial3"
    candidate = confirm(Confirmation(3, 16754, recipe), (1,), folder, data, None)
    (run,) = candidate.runs
    exported = RunFolder(run.run_dir).int8_record()
    assert candidate.confirmed and (run.run_dir / "model.int8.onnx").is_file()
    assert run.int8_acc == exported["test_acc_int8"]
    written = (run.run_dir / "int8.json").stat().st_mtime_ns
    again = confirm(Confirmation(3, 16754, recipe), (1,), folder, data, None).runs[0]
    assert again.int8_acc == run.int8_acc  # a resumed confirmation reads it, not re-exports
    assert (run.run_dir / "int8.json").stat().st_mtime_ns == written
    # the int8 figure decides beside the test accuracy, and says by how much it missed
    strict = recipe.with_values({"spec.min_int8_acc": 50.0})
    assert rule_met(run.history, strict, 50.0) and not rule_met(run.history, strict, 49.9)
    assert not rule_met(run.history, recipe, None)  # no int8 figure: not met
    short = SeedRun(1, run.run_dir, run.history, "fp32", 49.5)
    assert short.shortfall(strict) == pytest.approx(0.5)


def test_a_rung_ranks_designs_on_course_by_size_then_the_rest_by_how_close_they_came():
    import optuna

    from cnnlab.design.rungs import Rung, plan, promoted, ranking

    study = optuna.create_study()
    dist = {"w": optuna.distributions.IntDistribution(1, 99),
            "train.seed": optuna.distributions.CategoricalDistribution([0, 100])}

    def add(w, seed, params, val):
        study.add_trial(optuna.trial.create_trial(
            params={"w": w, "train.seed": seed}, distributions=dist, value=float(params),
            user_attrs={"params": params, "val_acc": val}))

    rung = Rung(epochs=15, target=99.0, seeds=(0, 100))
    add(1, 0, 5000, 99.3), add(1, 100, 5000, 99.2)   # on course on both seeds
    add(2, 0, 3000, 99.5), add(2, 100, 3000, 98.8)   # one seed short: its figure is 98.8
    add(3, 0, 4000, 99.1), add(3, 100, 4000, 99.0)   # on course, smaller than w=1
    add(4, 0, 2000, 98.9)                            # trained on one seed of two
    ranked = ranking(study, rung)
    assert [(p["w"], size, figure) for p, size, figure in ranked[:3]] == [
        (3, 4000, 99.0), (1, 5000, 99.2), (2, 3000, 98.8)]
    assert ranked[3][0] == {"w": 4} and ranked[3][2] < 0  # not on every seed: last
    # Sent on: the smallest on course and the most accurate, in turn.
    short = [({"w": 6}, 3500, 99.1), ({"w": 7}, 3900, 99.05), ({"w": 8}, 4900, 99.4),
             ({"w": 9}, 2000, 98.0)]
    assert [p["w"] for p, _, _ in promoted(short, 2)] == [6, 8]
    assert [p["w"] for p, _, _ in promoted(short, 3)] == [6, 8, 7]
    assert [p["w"] for p, _, _ in promoted(ranked, 1)] == [3]
    # The short rungs below the full length, each aiming its gap below the target; the full
    # rung on two seeds, or on one where no short rung goes before it.
    assert plan(15, (5, 20), {5: 0.4}, 99.0, 0) == [Rung(5, 98.6, (0,)),
                                                    Rung(15, 99.0, (0, 100))]
    assert plan(2, (5,), {}, 60.0, 3) == [Rung(2, 60.0, (3,))]


def test_a_designs_hours_leave_the_later_rungs_and_a_confirmation_their_share():
    from cnnlab.design.rungs import first_rung_hours, plan

    rungs = plan(15, (2, 5), {}, 99.0, 0)
    # 24 designs x 2 epochs, then 8 x 5, then 3 x 15 on two seeds, then 6 runs of 15
    assert first_rung_hours(2.0, rungs, 24, 3, 6) == pytest.approx(2.0 * 48 / (48 + 40 + 90 + 90))
    # one rung: every design at full length, then the confirmation's runs
    assert first_rung_hours(1.0, plan(15, (), {}, 99.0, 0), 10, 3, 6) == pytest.approx(10 / 16)
    # two starts carried to the last rung: 2 more designs there, on its two seeds
    assert first_rung_hours(2.0, rungs, 24, 3, 6, starts=2) == pytest.approx(
        2.0 * 48 / (48 + 40 + 150 + 90))
    # with no rung between, a start is one of rung 0's designs and nothing is carried
    assert first_rung_hours(1.0, plan(15, (), {}, 99.0, 0), 10, 3, 6, starts=2) == \
        pytest.approx(10 / 16)


def test_starts_on_course_at_rung_0_are_carried_to_the_last_rung_and_the_rest_are_not():
    from cnnlab.design.rungs import SEED_KEY, carried_starts

    def design(width):
        return {"model.args.widths.0": width, "schedule.max_lr": 0.2}

    ranked = [(design(4), 3000, 98.9), (design(7), 4700, 98.7), (design(5), 3500, 98.6),
              (design(9), 4900, 98.1)]
    starts = [design(9), design(7), design(8)]  # 8: over the budget, never trained
    assert carried_starts(ranked, starts, 98.5) == [design(7)]  # 9 is off course at 98.5
    assert carried_starts(ranked, starts, 98.0) == [design(7), design(9)]  # in rung order
    # the seed a rung adds to a design is not part of what it is
    assert carried_starts(ranked, [{**design(4), SEED_KEY: 100}], 98.0) == [design(4)]
    assert carried_starts(ranked, [], 90.0) == []


def test_each_rung_is_a_sweep_of_its_length_and_only_a_one_rung_search_stops_trials(tmp_path):
    from cnnlab.design.rungs import SEED_KEY, plan, rung_search

    search = _search_of(_design_file(tmp_path, spec=(
        "max_params = 4000\nmax_epochs = 6\nmin_test_acc = 60.0\nlast_epochs = 2\n")), tmp_path)
    short, full = plan(6, (2,), {2: 1.5}, 60.0, 0)
    first = rung_search(search, 0, short, 12, last=False)
    last = rung_search(search, 1, full, 4, last=True)
    assert (first.name, first.base.train.epochs, first.base.spec.last_epochs) == (
        search.name, 2, 1)  # a short rung's figure is its last epoch
    assert (last.name, last.base.train.epochs, last.base.spec.last_epochs) == (
        f"{search.name}-rung1", 6, 2)
    assert first.val_target == 58.5 and last.val_target == 60.0
    assert first.pruner == last.pruner == "none"  # a second seed is never stopped early
    assert [d.key for d in last.space][-1] == SEED_KEY and first.hours == search.hours
    timed = rung_search(search.with_sweep(hours=0.5), 0, short, 12, last=False)
    later = rung_search(search.with_sweep(hours=0.5), 1, full, 4, last=True)
    assert (timed.hours, later.hours) == (0.5, None)  # only the sampling rung has a clock
    for rung in (first, last, timed, later):  # the file the workers read says the same
        sweep = rung.document["sweep"]
        assert (sweep["name"], sweep["trials"], sweep["val_target"], sweep["pruner"],
                sweep.get("hours")) == (rung.name, rung.trials, rung.val_target, rung.pruner,
                                        rung.hours)
    (only,) = plan(6, (), {}, 60.0, 0)
    assert rung_search(search, 0, only, 12, last=True).pruner == "hopeless"


def test_a_short_rung_compresses_the_plain_tail_as_it_compresses_the_schedule(tmp_path):
    from cnnlab.design.rungs import compressed_tail, plan, rung_search

    path = tmp_path / "d.toml"
    path.write_text('[design]\ndataset = "mnist"\n[spec]\nmin_test_acc = 99.0\n'
                    'max_epochs = 15\nlast_epochs = 3\n')
    search = _search_of(path, tmp_path)
    assert search.base.augment.off_last_epochs == 4  # the full run: 11 augmented, 4 plain
    two, five, full = plan(15, (2, 5), {2: 0.7, 5: 0.1}, 99.0, 0)
    tails = [rung_search(search, n, rung, 8, last=rung is full).base.augment.off_last_epochs
             for n, rung in enumerate((two, five, full))]
    assert tails == [1, 1, 4]  # never the whole short rung on plain images
    holds = [rung_search(search, n, rung, 8, last=rung is full).base.schedule.hold_epochs
             for n, rung in enumerate((two, five, full))]
    assert holds == [0, 0, 2]  # a short rung is judged on its last epoch: nothing to hold for
    for rung in (two, five):
        rung_doc = rung_search(search, 1, rung, 8, last=False).document
        assert rung_doc["augment"]["off_last_epochs"] == 1  # what a resumed rung reads
    assert [compressed_tail(4, 10, e) for e in (1, 2, 5, 9)] == [0, 1, 2, 4]
    assert compressed_tail(8, 15, 5) == 3 and compressed_tail(1, 15, 14) == 1


@pytest.mark.slow
def test_designs_go_through_the_rungs_best_first_and_candidates_come_from_the_last(
        real_data_root, tmp_path):
    from cnnlab.design import design
    from cnnlab.design.rungs import promoted, ranking

    # eta 4: one design goes on, and at a target every design reaches, the starts go with it
    path = _design_file(tmp_path, trials=4, extra="rungs = [1]\neta = 4")
    path.write_text(path.read_text().replace("max_epochs = 2", "max_epochs = 3")
                    .replace("min_test_acc = 60.0", "min_test_acc = 20.0"))
    result = design(path, out_dir=tmp_path / "designs", data_dir=real_data_root,
                    progress=False, echo=None)
    first, last = result.rungs
    assert first.rung.epochs == 1 and last.rung.epochs == 3 and last.rung.seeds == (0, 100)
    trained = [t for t in first.study.get_trials(deepcopy=False) if counted(t)]
    assert len(trained) == 4 and all(t.user_attrs["epochs"] == 1 for t in trained)
    ranked = ranking(first.study, first.rung)
    sent_on = [params for params, _, _ in promoted(ranked, 1)]
    assert first.promoted == sent_on
    # the starts (enqueued first) that rung 0 found on course go on to the last rung too
    enqueued = [t.params for t in first.study.get_trials(deepcopy=False)
                if "fixed_params" in t.system_attrs]
    assert enqueued and first.carried == [
        params for params, _, figure in ranked if params in enqueued
        and figure >= first.rung.target]
    last_designs = sent_on + [d for d in first.carried if d not in sent_on]
    assert len(last_designs) > 1  # a start the rung did not send on trains at the last
    runs = last.study.get_trials(deepcopy=False)
    assert sorted((t.params["model.args.widths.0"], t.params["model.args.widths.2"],
                   t.params["train.seed"]) for t in runs) == sorted(
        (p["model.args.widths.0"], p["model.args.widths.2"], seed)
        for p in last_designs for seed in (0, 100))
    assert all(t.user_attrs.get("epochs", 3) == 3 for t in runs)
    promoted_sizes = {t.user_attrs["params"] for t in runs}
    assert all(c.params in promoted_sizes for c in result.candidates)
    readme = (result.folder / "README.md").read_text()
    assert "## Rungs" in readme and "| 1 | 3 | 0, 100 |" in readme
    # what the rungs rely on: the shape's measured rank correlation of each short length
    from cnnlab.design.spaces import start_for

    spearman = start_for((1, 28, 28)).rung_spearman
    assert f"{spearman[2]:.2f} at 2 epochs" in readme


def _search_of(path: Path, tmp_path: Path):
    from cnnlab.design.design_file import load_design
    from cnnlab.sweep.sweep_file import load_sweep

    doc = tmp_path / "search.toml"
    doc.write_text(tomli_w.dumps(load_design(path).sweep_document))
    return load_sweep(doc)


def test_the_library_scales_its_nearest_designs_to_a_budget_it_never_held(tmp_path):
    from cnnlab.design.library import scaled, starting_points
    from cnnlab.prepare import prepare

    space = ('"model.args.widths.0" = { int = [2, 40] }\n'
             '"model.args.widths.1" = { int = [2, 40] }\n'
             '"model.args.widths.2" = { int = [2, 40] }\n'
             '"schedule.max_lr" = { log = [0.01, 0.3] }\n')
    library = []
    for widths, lr in (([8, 12, 16], 0.1), ([16, 24, 32], 0.05), ([4, 6, 8], 0.2)):
        values = {f"model.args.widths.{i}": w for i, w in enumerate(widths)}
        values["schedule.max_lr"] = lr
        values["optim.nesterov"] = True  # a key this space does not search: left out
        library.append({"values": values, "params": 0})
    for budget in (2500, 7000):  # no entry holds either
        search = _search_of(_design_file(tmp_path, space=space, spec=(
            f"max_params = {budget}\nmax_epochs = 2\nmin_test_acc = 60.0\nlast_epochs = 1\n")),
            tmp_path)
        for entry in library:
            entry["params"] = prepare(search.recipe_for(
                {k: v for k, v in entry["values"].items() if k != "optim.nesterov"}),
                progress=False).inspection.summary.total_params
        points = starting_points(search, (1, 28, 28), budget, library)
        # the three library designs, then the search's own base design scaled the same way
        # (unless it scales to one of theirs)
        assert len(points) in (3, 4) and all("optim.nesterov" not in p for p in points)
        sizes = [prepare(search.recipe_for(p), progress=False).inspection.summary.total_params
                 for p in points]
        assert all(0.75 * budget <= size <= budget for size in sizes), sizes
        # the nearest entry comes first, its training settings kept
        nearest = min(library, key=lambda e: abs(math.log(e["params"] / budget)))
        assert points[0]["schedule.max_lr"] == nearest["values"]["schedule.max_lr"]
    assert scaled({"model.args.widths.0": 8, "optim.lr": 0.1}, 1.5) == {
        "model.args.widths.0": 12, "optim.lr": 0.1}


def test_a_library_design_from_a_smaller_space_takes_the_base_s_values_for_the_rest(tmp_path):
    from cnnlab.design.library import starting_points
    from cnnlab.prepare import prepare

    space = ('"model.args.widths.0" = { int = [2, 40] }\n'
             '"model.args.widths.1" = { int = [2, 40] }\n'
             '"model.args.widths.2" = { int = [2, 40] }\n'
             '"model.args.reuse.0" = { int = [0, 1] }\n'
             '"schedule.max_lr" = { log = [0.01, 0.3] }\n')
    search = _search_of(_design_file(tmp_path, space=space, spec=(
        "max_params = 5000\nmax_epochs = 2\nmin_test_acc = 60.0\nlast_epochs = 1\n")),
        tmp_path)
    older = {f"model.args.widths.{i}": w for i, w in enumerate([6, 12, 16])}  # no reuse, no rate
    params = prepare(search.recipe_for(older), progress=False).inspection.summary.total_params
    first = starting_points(search, (1, 28, 28), 5000, [{"values": older, "params": params}])[0]
    base = search.base.to_dict()
    assert first["model.args.reuse.0"] == base["model"]["args"]["reuse"][0]
    assert first["schedule.max_lr"] == base["schedule"]["max_lr"]
    assert [first[f"model.args.widths.{i}"] for i in range(3)] != base["model"]["args"]["widths"]


def test_the_library_is_written_from_finished_design_folders(tmp_path):
    import json

    from cnnlab.design.library import entries, write_library

    record = {"name": "mnist-3k", "dataset": "mnist", "input_shape": "1x28x28",
              "spec": {"max_params": 3000, "min_test_acc": 99.0},
              "pick": {"values": {"model.args.widths.0": 6}, "params": 2900, "mult_adds": 10,
                       "activation_bytes": 20, "val_acc": [98.9, 98.8],
                       "runs": [{"seed": 1, "precision": "bf16", "last_test_acc": [99.1]}]},
              "failed": [{"params": 2500, "seed": 2, "precision": "fp32", "short_by": 0.02}]}
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    (tmp_path / "a" / "design.json").write_text(json.dumps(record))
    (tmp_path / "b" / "design.json").write_text(json.dumps({**record, "name": "empty",
                                                            "pick": None}))
    library = tmp_path / "library"
    assert write_library([tmp_path / "a", tmp_path / "b"], library) == [library / "1x28x28.toml"]
    assert write_library([tmp_path / "a"], library)  # added again: replaced, not doubled
    (entry,) = entries((1, 28, 28), library)
    assert entry["params"] == 2900 and entry["runs"][0]["precision"] == "bf16" and entry["met"]
    assert entry["failed_candidates"][0]["short_by"] == 0.02
    assert entries((3, 32, 32), library) == []
    assert main(["design-library", str(tmp_path / "library")]) == 2  # no design.json there

    # a study with no pick teaches its nearest miss, marked as one
    def candidate(params: int, short_by: float) -> dict:
        return {**record["pick"], "params": params, "met": False, "short_by": short_by}

    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "design.json").write_text(json.dumps(
        {**record, "name": "near", "pick": None,
         "candidates": [candidate(2400, 0.04), candidate(2200, 0.01), candidate(2100, 0.3)]}))
    write_library([tmp_path / "c"], library)
    near = [e for e in entries((1, 28, 28), library) if e["name"] == "near"]
    assert [(e["params"], e["met"]) for e in near] == [(2200, False)]


@pytest.mark.slow
def test_a_design_file_of_a_dataset_and_a_spec_alone_runs_on_the_defaults(real_data_root,
                                                                           tmp_path):
    from cnnlab.design import design
    from cnnlab.design.design_file import load_design
    from cnnlab.design.spaces import start_for

    path = tmp_path / "bare.toml"
    path.write_text('[design]\ndataset = "mnist"\nhours = 0.000001\n\n[spec]\n'
                    'max_params = 3000\nmax_epochs = 12\nmin_test_acc = 99.0\nlast_epochs = 3\n'
                    'require = ["batchnorm", "dropout", "gap", "fc"]\n')
    result = design(path, out_dir=tmp_path / "designs", data_dir=real_data_root,
                    progress=False, echo=None)
    start = start_for((1, 28, 28))
    # the shape's rungs below the spec's 12 epochs, then 12 on two seeds; each rung aims at
    # the validation target (the test target less the shape's offset, plus its seed margin)
    # less its gap
    assert [(r.rung.epochs, r.rung.seeds) for r in result.rungs][:1] == [(2, (0,))]
    margin = load_design(path).seed_margin  # the library's, or the space's
    assert result.rungs[0].rung.target == pytest.approx(
        99.0 - start.val_offset + margin - start.rung_gaps[2])
    assert result.pick is None and not result.candidates  # the hours ran out at once
    record = json.loads((result.folder / "design.json").read_text())
    assert record["pick"] is None and record["input_shape"] == "1x28x28"
    readme = (result.folder / "README.md").read_text()
    assert "No pick" in readme and f"plus a seed margin of {margin:.2f}" in readme


def test_with_an_empty_library_the_search_starts_from_its_own_base_scaled_to_the_budget(
        tmp_path):
    from cnnlab.design.library import starting_points
    from cnnlab.prepare import prepare

    space = ('"model.args.widths.0" = { int = [2, 40] }\n'
             '"model.args.widths.1" = { int = [2, 40] }\n'
             '"model.args.widths.2" = { int = [2, 40] }\n')
    for budget in (1500, 12000):
        search = _search_of(_design_file(tmp_path, space=space, spec=(
            f"max_params = {budget}\nmax_epochs = 2\nmin_test_acc = 60.0\nlast_epochs = 1\n")),
            tmp_path)
        (point,) = starting_points(search, (1, 28, 28), budget, [])
        size = prepare(search.recipe_for(point), progress=False).inspection.summary.total_params
        assert 0.75 * budget <= size <= budget, (budget, point, size)


@pytest.mark.slow
def test_a_design_on_the_users_arrays_takes_the_default_start_for_their_shape(tmp_path,
                                                                              monkeypatch):
    # What a user of their own images writes: the dataset, where its files are, and the spec.
    # The start (recipe, base design, space) is the one for the files' 1x28x28 shape.
    from cnnlab.design import design
    from cnnlab.design.spaces import start_for

    saved_as_npz(separable_dataset(), tmp_path)
    monkeypatch.chdir(tmp_path)  # data.path as written, from where the user runs it
    path = tmp_path / "mine.toml"
    path.write_text('[design]\ndataset = "npz"\ntrials = 2\ncandidates = 1\nseeds = 1\n'
                    'val_split = 64\nset = [\'data.path="data.npz"\', "data.batch_size=64", '
                    '\'train.device="cpu"\']\n[design.space]\n'
                    '"model.args.widths.0" = { int = [4, 8] }\n'
                    '[spec]\nmax_params = 6000\nmax_epochs = 1\nmin_test_acc = 20.0\n'
                    'last_epochs = 1\nrequire = ["batchnorm", "gap", "fc"]\n')
    result = design(path, out_dir=tmp_path / "designs", progress=False, echo=None)
    assert result.pick is not None and result.pick.confirmed
    record = json.loads((result.folder / "design.json").read_text())
    assert (record["dataset"], record["input_shape"]) == ("npz", "1x28x28")
    start = start_for((1, 28, 28))
    shipped = load_recipe(result.recipe_path)
    assert shipped.data.dataset == "npz" and shipped.data.path == "data.npz"
    assert shipped.model.args["reuse"] == start.model_args["reuse"]  # the grey start's design
    assert shipped.data.batch_size == 64  # `set` over the start's own settings


def test_a_shape_no_confirmation_has_measured_aims_with_no_seed_margin():
    # CIFAR-10's bare file: the start's measured offset (its held-out images run above the
    # test split, so the validation target rises) and rungs, and no margin claimed from
    # confirmations that never ran
    from cnnlab.design.design_file import load_design
    from cnnlab.design.spaces import start_for

    start = start_for((3, 32, 32))
    spec = load_design(Path(__file__).parents[1] / "benchmarks" / "designs"
                       / "cifar-s9-20ep-default.toml")
    assert start.val_offset < 0 and spec.rungs == start.rungs and spec.rungs
    assert (spec.seed_margin, spec.seed_margin_source) == (0.0, "")
    from cnnlab.sweep.sweep_file import sweep_from_document

    search = sweep_from_document(spec.sweep_document, Path("cifar.toml"), where="design")
    assert search.val_target == pytest.approx(90.0 - start.val_offset)
