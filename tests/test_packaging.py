"""cnnlab as users get it: a wheel built from this folder, installed into a fresh virtual
environment (no source tree on its path), runs its command; and the documentation site builds
with --strict, so a broken link fails it."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # builds, installs and starts processes


def _wheel(out: Path) -> Path:
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir",
                    str(out), str(PROJECT)], check=True, capture_output=True, cwd=out)
    (wheel,) = out.glob("cnnlab-*.whl")
    return wheel


def test_the_wheel_installs_into_a_fresh_venv_and_trains(tmp_path, real_data_root):
    wheel = _wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    assert "cnnlab/recipes/mnist-s5-10ep.toml" in names  # package data travels
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/"))]
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
           "--disable-pip-version-check", "-c", str(PROJECT / "constraints.txt"), str(wheel)]
    subprocess.run(pip, check=True, capture_output=True, cwd=tmp_path)
    env = {**os.environ, "CNNLAB_DATA": str(real_data_root.resolve()), "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONPATH", None)
    cnnlab = str(venv / "bin" / "cnnlab")
    where = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import cnnlab; print(cnnlab.__file__, cnnlab.__version__)"],
                           capture_output=True, text=True, cwd=tmp_path, env=env, check=True)
    assert str(venv) in where.stdout and "0+unknown" not in where.stdout
    listed = subprocess.run([cnnlab, "recipes"], capture_output=True, text=True, cwd=tmp_path,
                            env=env, check=True)
    assert "mnist-s5-10ep" in listed.stdout and "cifar-s9-30ep" in listed.stdout
    trained = subprocess.run(
        [cnnlab, "train", "mnist-s5-10ep", "--no-progress", "--out", str(tmp_path / "runs"),
         "--set", "train.epochs=1", "--set", "data.train_limit=2048",
         "--set", "data.test_limit=512"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert trained.returncode == 0, trained.stderr[-2000:]
    (run,) = (tmp_path / "runs").iterdir()
    assert (run / "best.safetensors").is_file() and (run / "README.md").is_file()


def _mkdocs(folder: Path, site: Path) -> subprocess.CompletedProcess:
    mkdocs = Path(sys.executable).with_name("mkdocs")
    return subprocess.run([str(mkdocs), "build", "--strict", "--site-dir", str(site)],
                          capture_output=True, text=True, cwd=folder, timeout=300)


def test_the_documentation_site_builds_strict(tmp_path):
    built = _mkdocs(PROJECT, tmp_path / "site")
    assert built.returncode == 0, built.stderr[-3000:]
    api = (tmp_path / "site" / "api" / "index.html").read_text(encoding="utf-8")
    assert "cnnlab.load_recipe" in api and "Read a built-in recipe" in api  # from the docstring
    home = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    assert "Results" in home and 'href="benchmarks/cifar10/' in home  # links made the site's


def test_a_broken_link_fails_the_strict_build(tmp_path):
    copy = tmp_path / "project"
    shutil.copytree(PROJECT / "docs", copy / "docs")
    for name in ("mkdocs.yml", "README.md", "BENCHMARKS.md", "RELIABILITY.md",
                 "CONTRIBUTING.md", "CHANGELOG.md"):
        shutil.copy(PROJECT / name, copy / name)
    design = copy / "docs" / "benchmarks" / "design.md"
    design.write_text(design.read_text(encoding="utf-8") + "\n[gone](no-such-page.md)\n",
                      encoding="utf-8")
    built = _mkdocs(copy, tmp_path / "site")
    assert built.returncode != 0 and "no-such-page.md" in built.stderr
