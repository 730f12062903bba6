"""The `cnnlab` command: a thin skin over the Python API.

Every error a user can cause prints one line and exits 2; no tracebacks.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cnnlab import __version__
from cnnlab.check import check
from cnnlab.config import Recipe, builtin_recipes, load_recipe
from cnnlab.errors import ConfigError
from cnnlab.exit_status import exit_status, terminated
from cnnlab.inspection import receptive_field, summary
from cnnlab.inspection.summary import COLUMNS as SUMMARY_COLUMNS
from cnnlab.models import build_model, count_parameters, default_input_shape, model_names
from cnnlab.pipeline import lr_find, resume, train
from cnnlab.prepare import prepare
from cnnlab.recipe_schema import recipe_schema
from cnnlab.report import compare, write_report
from cnnlab.run_folder import RunFolder
from cnnlab.run_folder.history import best_row
from cnnlab.run_folder.shipped_weights import write_safetensors
from cnnlab.ship import export_onnx
from cnnlab.subject import load_subject, parse_input_shape
from cnnlab.sweep.storage import shown

DATA_DIR_HELP = "data root (default: $CNNLAB_DATA, else ~/.cache/cnnlab)"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line instead of usage + message
        raise ConfigError(f"{message} (see: {self.prog} --help)")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cnnlab", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"cnnlab {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)
    for verb in VERBS:
        verb_parser = verbs.add_parser(verb.name, help=verb.help)
        verb.arguments(verb_parser)
        verb_parser.set_defaults(handler=verb.handler)
    return parser


def _recipe(name_or_path: str, overrides: list[str] | tuple[str, ...], trust_code: bool
            ) -> Recipe:
    """The recipe a command line names: a recipe file is the user's instruction, and the code
    it names runs; but a run folder's own config.toml is the folder's data, so its code runs
    only as any folder's does (this user's signature, or --trust-code), and the recipe is the
    one whose bytes that decision read."""
    path = Path(name_or_path)
    if path.name != "config.toml" or not RunFolder.is_run_folder(path.parent):
        return load_recipe(name_or_path, overrides)
    folder = RunFolder.existing(path.parent)
    recipe = folder.recipe(overrides)
    folder.model_source(recipe, trust_code)
    return recipe


def _trust_flag(verb: argparse.ArgumentParser) -> None:
    verb.add_argument("--trust-code", action="store_true",
                      help="run the model code a run folder from someone else names (read it "
                           "first); signs the folder as trusted")


def _data_dir_flag(verb: argparse.ArgumentParser) -> None:
    verb.add_argument("--data-dir", help=DATA_DIR_HELP)


def _set_flag(verb: argparse.ArgumentParser, help_text: str) -> None:
    verb.add_argument("--set", dest="overrides", action="append", default=[],
                      metavar="KEY=VALUE", help=help_text)


def _serve_flags(verb: argparse.ArgumentParser, port: int) -> None:
    verb.add_argument("--port", type=int, default=port, help=f"local port (default {port})")
    verb.add_argument("--host", default="127.0.0.1",
                      help="address to listen on (default 127.0.0.1: this machine only)")


def _no_arguments(verb: argparse.ArgumentParser) -> None:
    pass


def _train_arguments(verb: argparse.ArgumentParser) -> None:
    verb.add_argument("recipe", nargs="?", help="built-in recipe name or path to a .toml file")
    _set_flag(verb, "override a recipe key, e.g. --set train.epochs=3 (repeatable)")
    _data_dir_flag(verb)
    verb.add_argument("--out", default="runs", help="folder for run folders (default: runs)")
    verb.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    verb.add_argument("--seed", type=int, help="random seed (same as --set train.seed=N)")
    verb.add_argument("--device", choices=("auto", "cpu", "cuda"), help="where to train")
    verb.add_argument("--no-progress", action="store_true", help="no progress bars")
    verb.add_argument("--no-check", action="store_true",
                      help="train even if the model breaks the recipe's [spec]")
    verb.add_argument("--html", action="store_true", help="also write report.html")
    verb.add_argument("--tensorboard", action="store_true",
                      help="also log to RUN_DIR/tb/ (same as --set train.tensorboard=true)")
    _trust_flag(verb)


def _train(args: argparse.Namespace) -> None:
    overrides = list(args.overrides)
    if args.seed is not None:
        overrides.append(f"train.seed={args.seed}")
    if args.device:
        overrides.append(f'train.device="{args.device}"')
    if args.tensorboard:
        overrides.append("train.tensorboard=true")
    if args.resume:
        if args.recipe or overrides:
            raise ConfigError("--resume continues a run with its saved config.toml: "
                              "give no recipe, --set, --seed or --device with it")
        result = resume(args.resume, data_dir=args.data_dir, progress=not args.no_progress,
                        html=args.html, trust_code=args.trust_code)
    elif not args.recipe:
        raise ConfigError("give a recipe (see: cnnlab recipes) or --resume RUN_DIR")
    else:
        recipe = _recipe(args.recipe, overrides, args.trust_code)
        result = train(recipe, data_dir=args.data_dir, out_dir=args.out,
                       progress=not args.no_progress, enforce_spec=not args.no_check,
                       html=args.html)
    best = best_row(result.history)
    print(f"final test accuracy {result.final_accuracy:.2f}%, best {best['test_acc']:.2f}% "
          f"(epoch {best['epoch']}); report: {result.run_dir / 'README.md'}")
    for verdict in result.check.verdicts:
        print(verdict.line())


def _summary_arguments(verb: argparse.ArgumentParser) -> None:
    verb.add_argument("target", metavar="MODEL|RECIPE")
    verb.add_argument("--input", metavar="C,H,W", help="input shape (default: the dataset's)")
    verb.add_argument("--columns", default="",
                      help=f"extra columns, comma-separated: {','.join(SUMMARY_COLUMNS)}")
    verb.add_argument("--reshapes", action="store_true", help="also list flatten/view rows")
    verb.add_argument("--json", action="store_true", help="the table as JSON")


def _summary(args: argparse.Namespace) -> None:
    columns = tuple(c.strip() for c in args.columns.split(",") if c.strip())
    unknown = [c for c in columns if c not in SUMMARY_COLUMNS]
    if unknown:
        raise ConfigError(f"--columns: unknown {unknown[0]!r}; choose from "
                          f"{', '.join(SUMMARY_COLUMNS)}")
    model, shape = load_subject(args.target, parse_input_shape(args.input))
    table = summary(model, shape, columns, reshapes=args.reshapes)
    print(table.to_json() if args.json else table.to_text())


def _rf_arguments(verb: argparse.ArgumentParser) -> None:
    verb.add_argument("target", metavar="MODEL|RECIPE")
    verb.add_argument("--input", metavar="C,H,W", help="input shape (default: the dataset's)")
    form = verb.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="one JSON object per row")
    form.add_argument("--markdown", action="store_true", help="a Markdown table")


def _rf(args: argparse.Namespace) -> None:
    model, shape = load_subject(args.target, parse_input_shape(args.input))
    field = receptive_field(model, shape)
    print(field.to_json() if args.json else field.to_markdown() if args.markdown
          else field.to_text())


def _check_arguments(verb: argparse.ArgumentParser) -> None:
    verb.add_argument("recipe", help="built-in recipe name or path to a .toml file")
    verb.add_argument("--run", metavar="RUN_DIR",
                      help="also check a run's accuracy (decided once all its epochs ran; "
                           "before, how far it got and whether it is still training)")
    verb.add_argument("--json", action="store_true", help="the verdicts as JSON")
    _trust_flag(verb)


def _check(args: argparse.Namespace) -> int:
    report = check(_recipe(args.recipe, (), args.trust_code), run_dir=args.run)
    print(report.to_json() if args.json else report.to_text())
    return 0 if report.passed else 1


def _report_arguments(verb: argparse.ArgumentParser) -> None:
    verb.add_argument("run_dir", metavar="RUN_DIR")
    verb.add_argument("--html", action="store_true", help="also write report.html")
    verb.add_argument("--layer", help="GradCAM layer (default: last conv with a map >= 4x4)")
    verb.add_argument("--mistakes", type=int, default=20, help="misclassified images shown")
    _data_dir_flag(verb)
    _trust_flag(verb)


def _report(args: argparse.Namespace) -> None:
    if args.mistakes < 0:
        raise ConfigError("--mistakes must be 0 or more")
    readme = write_report(args.run_dir, data_dir=args.data_dir, html=args.html,
                          layer=args.layer, mistakes=args.mistakes, trust_code=args.trust_code)
    print(f"wrote {readme}" + (f" and {readme.with_name('report.html')}" if args.html else ""))


def _lr_find_arguments(verb: argparse.ArgumentParser) -> None:
    verb.add_argument("recipe", help="built-in recipe name or path to a .toml file")
    _set_flag(verb, "override a recipe key (repeatable)")
    verb.add_argument("--start", type=float, default=1e-7, help="first lr (default 1e-7)")
    verb.add_argument("--end", type=float, default=10.0, help="last lr (default 10)")
    verb.add_argument("--steps", type=int, default=100, help="batches to sweep (default 100)")
    _trust_flag(verb)
    _data_dir_flag(verb)
    verb.add_argument("--out", help="plot PNG (default: lr-find-<recipe>.png)")


def _lr_find(args: argparse.Namespace) -> None:
    recipe = _recipe(args.recipe, args.overrides, args.trust_code)
    out = args.out or f"lr-find-{recipe.name}.png"
    result = lr_find(recipe, data_dir=args.data_dir, plot=out, start=args.start, end=args.end,
                     steps=args.steps)
    print(result.summary_line())
    print(f"plot: {out}")


def _export_arguments(verb: argparse.ArgumentParser) -> None:
    verb.add_argument("run_dir", metavar="RUN_DIR")
    verb.add_argument("--onnx", action="store_true", help="also write model.onnx")
    verb.add_argument("--out", help="ONNX file to write (default: RUN_DIR/model.onnx)")
    verb.add_argument("--int8", action="store_true",
                      help="also write model.int8.onnx (static int8 quantization, ONNX Runtime) "
                           "and its test accuracy beside the fp32 one")
    verb.add_argument("--tflite", action="store_true",
                      help="also write model.int8.tflite (full-integer, via onnx2tf) and run it "
                           "in TFLite Micro: its test accuracy and arena bytes")
    verb.add_argument("--calibration", type=int, default=1024,
                      help="training images the int8 ranges are calibrated on (default 1024)")
    verb.add_argument("--no-progress", action="store_true", help="no progress bar")
    _data_dir_flag(verb)
    _trust_flag(verb)


def _export(args: argparse.Namespace) -> None:
    if args.tflite:  # the extra first: before anything is read or written
        from cnnlab.ship.tflite_export import require_tflite

        require_tflite()
    run = RunFolder.existing(args.run_dir)
    run.require_writable()
    run.require_weights()
    if not run.shipped_path.exists():  # a run from before runs shipped them
        prepared = prepare(folder=run, data_dir=args.data_dir, trust_code=args.trust_code)
        print(f"wrote {write_safetensors(run, prepared.data(), prepared.model)}")
    if args.onnx:
        print(f"wrote {export_onnx(args.run_dir, args.out, trust_code=args.trust_code)}")
    if args.int8:
        from cnnlab.ship.int8_export import export_int8

        result = export_int8(args.run_dir, args.data_dir, args.trust_code, args.calibration)
        print(f"wrote {result.path}: {result.summary_line()}")
    if args.tflite:
        from cnnlab.ship.tflite_export import export_tflite

        converted = export_tflite(args.run_dir, args.data_dir, args.trust_code, args.calibration,
                                  progress=not args.no_progress)
        print(f"wrote {converted.path}: {converted.summary_line()}")


def _app_arguments(verb: argparse.ArgumentParser) -> None:
    verb.add_argument("run_dir", metavar="RUN_DIR")
    _serve_flags(verb, 7860)
    _data_dir_flag(verb)
    verb.add_argument("--int8", action="store_true",
                      help="classify with the run's int8 model (cnnlab export RUN_DIR --int8)")
    _trust_flag(verb)


def _app(args: argparse.Namespace) -> None:
    from cnnlab.ship.web_app import serve  # Gradio is an optional extra

    serve(args.run_dir, port=args.port, host=args.host, data_dir=args.data_dir,
          trust_code=args.trust_code, int8=args.int8)


def _sweep_arguments(verb: argparse.ArgumentParser) -> None:
    verb.add_argument("sweep_file", metavar="SWEEP", help="TOML file with a [sweep] table")
    _search_flags(verb, "sweep")


def _sweep(args: argparse.Namespace) -> None:
    from cnnlab.sweep import sweep  # Optuna is an optional extra

    sweep(args.sweep_file, out_dir=args.out, storage=args.storage, workers=args.workers,
          resume=args.resume, data_dir=args.data_dir, progress=not args.no_progress)


def _design_arguments(verb: argparse.ArgumentParser) -> None:
    verb.add_argument("design_file", metavar="DESIGN",
                      help="TOML file with [design] (dataset, trials) and [spec] tables")
    _search_flags(verb, "design")


def _search_flags(verb: argparse.ArgumentParser, kind: str) -> None:
    """What a sweep and a design (a sweep of layouts) both take: where the study lives, how
    many local workers, resume, the output folder, data and progress."""
    verb.add_argument("--storage", metavar="URL",
                      help="database shared by workers on many machines, e.g. "
                           f"postgresql://user:pw@host/db (default: SQLite in the {kind} folder)")
    verb.add_argument("--workers", type=int, default=1,
                      help="local worker processes; each gets cores/N threads (default 1)")
    verb.add_argument("--resume", action="store_true",
                      help=f"continue the {kind} in OUT/NAME (its README's last line is the "
                           "command)")
    verb.add_argument("--out", default=f"{kind}s", help=f"folder for {kind}s (default: {kind}s)")
    _data_dir_flag(verb)
    verb.add_argument("--no-progress", action="store_true", help="no progress bar")


def _design(args: argparse.Namespace) -> int:
    from cnnlab.design import design

    result = design(args.design_file, out_dir=args.out, storage=args.storage,
                    workers=args.workers, resume=args.resume, data_dir=args.data_dir,
                    progress=not args.no_progress)
    return 0 if result.pick is not None else 1


def _design_library_arguments(verb: argparse.ArgumentParser) -> None:
    verb.add_argument("design_dirs", metavar="DESIGN_DIR", nargs="+",
                      help="finished design folders (designs/<name>, holding design.json)")
    verb.add_argument("--out", help="library folder to write (default: cnnlab's own)")


def _design_library(args: argparse.Namespace) -> None:
    from cnnlab.design.library import write_library

    for path in write_library(args.design_dirs, Path(args.out) if args.out else None):
        print(f"wrote {path}")


def _dashboard_arguments(verb: argparse.ArgumentParser) -> None:
    verb.add_argument("sweep_dir", metavar="SWEEP_DIR", nargs="?",
                      help="the sweep's folder (sweeps/<name>), holding study.db")
    verb.add_argument("--storage", metavar="URL", help="the database the sweep ran on")
    _serve_flags(verb, 8080)


def _dashboard(args: argparse.Namespace) -> None:
    from cnnlab.sweep.dashboard import serve_dashboard  # optuna-dashboard is an optional extra

    serve_dashboard(args.sweep_dir, args.storage, host=args.host, port=args.port)


def _compare_arguments(verb: argparse.ArgumentParser) -> None:
    verb.add_argument("run_dirs", metavar="RUN_DIR", nargs="+")
    verb.add_argument("--out", default="compare.png", help="PNG to write (default: compare.png)")


def _compare(args: argparse.Namespace) -> None:
    print(compare(args.run_dirs, args.out))
    print(f"curves: {args.out}")


def _schema(args: argparse.Namespace) -> None:
    print(json.dumps(recipe_schema(), indent=1))


def _json_flag(verb: argparse.ArgumentParser) -> None:
    verb.add_argument("--json", action="store_true", help="the list as JSON")


def _recipes(args: argparse.Namespace) -> None:
    rows = [("recipe", "dataset", "model", "params", "epochs", "target")]
    for name in builtin_recipes():
        recipe = load_recipe(name)
        params = count_parameters(prepare(recipe, progress=False).model)
        target = f"{recipe.spec.min_test_acc}%" if recipe.spec.min_test_acc else "-"
        rows.append((name, recipe.data.dataset, recipe.model.name, f"{params:,}",
                     str(recipe.train.epochs), target))
    _print_table(rows, right=(3, 4), as_json=args.json)


def _print_table(rows: list[tuple[str, ...]], right: tuple[int, ...] = (),
                 as_json: bool = False) -> None:
    if as_json:  # one object per row, keyed by the header; the right-aligned columns are numbers
        header, *body = rows
        print(json.dumps([{key: int(cell.replace(",", "")) if i in right else cell
                           for i, (key, cell) in enumerate(zip(header, row, strict=True))}
                          for row in body], indent=1))
        return
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.rjust(w) if i in right else cell.ljust(w)
                        for i, (cell, w) in enumerate(zip(row, widths, strict=True))).rstrip())


def _models(args: argparse.Namespace) -> None:
    rows = [("model", "params", "input")]
    for name in model_names():
        shape = ",".join(map(str, default_input_shape(name)))
        rows.append((name, f"{count_parameters(build_model(name)):,}", shape))
    _print_table(rows, right=(1,), as_json=args.json)


@dataclass(frozen=True)
class Verb:
    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    handler: Callable[[argparse.Namespace], int | None]


# Every verb, in the order `cnnlab --help` lists them: its arguments and what runs it.
VERBS = (
    Verb("train", "train a recipe into runs/<recipe>-<time>/", _train_arguments, _train),
    Verb("report", "(re)write a run's plots, README.md and report.html", _report_arguments,
         _report),
    Verb("lr-find", "LR range test: suggest a max LR for One Cycle", _lr_find_arguments,
         _lr_find),
    Verb("compare", "overlay the curves of several runs", _compare_arguments, _compare),
    Verb("summary", "layer table of a model or a recipe's model", _summary_arguments, _summary),
    Verb("rf", "receptive-field table of a model or a recipe's model", _rf_arguments, _rf),
    Verb("check", "check a recipe against its [spec] budget", _check_arguments, _check),
    Verb("sweep", "search a recipe's space on Optuna (sweeps/<name>/)", _sweep_arguments,
         _sweep),
    Verb("design", "find the smallest compact CNN that meets a budget and a target, confirmed "
         "on fresh seeds (designs/<name>/)", _design_arguments, _design),
    Verb("design-library", "add finished designs to the design library new designs start "
         "from (cnnlab/design/library/)", _design_library_arguments, _design_library),
    Verb("dashboard", "optuna-dashboard on a sweep's study (live while it runs)",
         _dashboard_arguments, _dashboard),
    Verb("export", "a run's model as ONNX (and best.safetensors if missing)", _export_arguments,
         _export),
    Verb("app", "a web page for a run: top-k, GradCAM, mistakes", _app_arguments, _app),
    Verb("schema", "the recipe JSON Schema, for editors", _no_arguments, _schema),
    Verb("recipes", "list the built-in recipes", _json_flag, _recipes),
    Verb("models", "list the registered models and their parameter counts", _json_flag,
         _models),
)


def main(argv: list[str] | None = None) -> int:
    previous = signal.signal(signal.SIGTERM, terminated)  # schedulers, docker stop
    parsed: list[argparse.Namespace] = []

    def run() -> int | None:
        parsed.append(_build_parser().parse_args(argv))
        return parsed[0].handler(parsed[0])

    try:
        return exit_status(run, lambda stop: _resume_hint(parsed[0] if parsed else None, stop))
    finally:
        signal.signal(signal.SIGTERM, previous)


def _resume_hint(args: argparse.Namespace | None, stop: KeyboardInterrupt) -> str:
    """How to continue what was stopped: a training from its run folder; a sweep or a design
    (whose running trial is a run folder too) with its own --resume."""
    verb = getattr(args, "verb", None)
    if verb in ("sweep", "design"):
        file = args.sweep_file if verb == "sweep" else args.design_file
        storage = f" --storage {shown(args.storage)}" if args.storage else ""  # no password
        return f"; continue with: cnnlab {verb} {file} --out {args.out}{storage} --resume"
    run_dir = getattr(stop, "run_dir", None)
    return f"; continue with: cnnlab train --resume {run_dir}" if run_dir else ""


if __name__ == "__main__":
    sys.exit(main())
