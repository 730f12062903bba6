"""The web demo in a real browser: headless Chromium loads the page from a local port, submits
a test image, and reads the predicted class off the page."""

import os
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image

import cnnlab
from tests.conftest import chromium_path, separable_dataset, train_run

pytest.importorskip("gradio")
playwright_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def served_run(tmp_path_factory):
    """A run trained on arrays on disk (a tenth of the test labels wrong, so there are
    mistakes to show), its page served by `cnnlab app` in a subprocess."""
    chromium = chromium_path()
    folder = tmp_path_factory.mktemp("app")
    data = separable_dataset(n_train=1024, n_test=256)
    data.test_labels[::10] = (data.test_labels[::10] + 1) % 10  # mislabelled: mistakes to show
    np.savez(folder / "data.npz", x_train=data.train_images[:, 0].numpy(),
             y_train=data.train_labels.numpy(), x_test=data.test_images[:, 0].numpy(),
             y_test=data.test_labels.numpy(),
             classes=np.array(["zero", "one", "two", "three", "four", "five", "six", "seven",
                               "eight", "nine"]))
    recipe = cnnlab.load_recipe("mnist-s5-10ep", [
        'data.dataset="npz"', f'data.path="{folder / "data.npz"}"', "train.epochs=2",
        "data.batch_size=64", "train.device=cpu", "train.ema_decay=0.0"])
    result = train_run(recipe, out_dir=folder / "runs")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    server = subprocess.Popen([sys.executable, "-m", "cnnlab", "app", str(result.run_dir),
                               "--port", str(port)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)  # noqa: S310 (our own local server)
            break
        except OSError:
            assert server.poll() is None and time.monotonic() < deadline, server.stdout.read()
            time.sleep(0.5)
    try:
        yield result, data, url, chromium, folder
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_the_page_classifies_an_uploaded_image(served_run):
    result, data, url, chromium, folder = served_run
    upload = folder / "upload.png"
    index = 7  # a correctly labelled test image (every tenth is not)
    Image.fromarray(data.test_images[index, 0].numpy()).save(upload)
    expected = cnnlab.load_run(result.run_dir).predict(data.test_images[index]).classes[0][0]
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = browser.new_page()
        page.goto(url, wait_until="networkidle")
        page.locator("#image input[type=file]").set_input_files(str(upload))
        page.wait_for_timeout(500)
        page.locator("#classify").click()
        label = page.locator("#prediction")
        label.locator(f"text={expected}").first.wait_for(timeout=60_000)
        lines = [line.strip() for line in label.inner_text().splitlines()
                 if line.strip() and line.strip() != "prediction"]  # the component's own label
        assert lines[0] == expected  # the top class, big, as load_run says
        assert page.locator("#gradcam img").count() == 1  # the overlay came back
        wrong = int((cnnlab.load_run(result.run_dir).predict(data.test_images).indices[:, 0]
                     != data.test_labels).sum())
        assert wrong > 0
        page.locator("#show_mistakes").click()
        page.locator("#mistakes img").first.wait_for(timeout=60_000)
        assert page.locator("#mistakes img").count() == min(16, wrong)
        browser.close()
