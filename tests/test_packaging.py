"""`pip install .` ships the templates and static files, and the installed app finds them."""

from __future__ import annotations

import signal
import subprocess
import sys
import zipfile

import pytest
import requests

from conftest import REPO, free_port, wait_for_health


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(REPO)],
                   check=True, capture_output=True, timeout=300)
    return next(out.glob("sellix_lite-*.whl"))


def test_wheel_contains_templates_and_static(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "sellix_lite/templates/error.html" in names
    assert "sellix_lite/static/style.css" in names
    assert any(name.endswith("entry_points.txt") for name in names)


def test_installed_package_serves_its_pages(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--target", str(target), str(wheel)], check=True, timeout=300)
    port = free_port()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    # Only the installed copy is importable: no checkout on the path, cwd elsewhere.
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}
    process = subprocess.Popen([sys.executable, "-m", "sellix_lite", "serve", "--port", str(port)],
                               cwd=run_dir, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_health(url, process)
        page = requests.get(url + "/no-such-page", timeout=10)
        assert page.status_code == 404
        assert page.headers["Content-Type"].startswith("text/html")
        assert "<h1>Not found</h1>" in page.text
        css = requests.get(url + "/static/style.css", timeout=10)
        assert css.status_code == 200 and "body" in css.text
        assert (run_dir / "sellix-data" / "sellix.db").exists()
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
