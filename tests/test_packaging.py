"""`pip install .` ships the templates and static files, and the installed app finds them;
the single-file executable built with shiv runs on a bare Python."""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

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


def zipapp_build_command() -> list[str]:
    """The build command exactly as README.md documents it (a `shiv ...` line)."""
    lines = [line.strip() for line in (REPO / "README.md").read_text().splitlines()
             if line.strip().startswith("shiv ")]
    assert len(lines) == 1, "README.md documents one shiv build command"
    return shlex.split(lines[0])


@pytest.fixture(scope="module")
def zipapp(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("zipapp")
    command = zipapp_build_command()
    command[0] = str(Path(sys.executable).with_name("shiv"))
    subprocess.run(command, cwd=REPO, check=True, capture_output=True, timeout=600)
    built = REPO / command[command.index("-o") + 1]
    target = out / "sellix-lite.pyz"
    built.replace(target)
    return target


def test_zipapp_serves_with_nothing_but_python(zipapp, tmp_path):
    """`-I -S`: no site-packages, no PYTHONPATH, no user site: only what the file carries."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SHIV_ROOT": str(tmp_path / "shiv")}
    base = [sys.executable, "-I", "-S", str(zipapp)]

    def cli(*args):
        result = subprocess.run([*base, *args], cwd=tmp_path, env=env, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert cli("--version").startswith("sellix-lite")
    secret = cli("keys", "mint", "--name", "pyz", "--all", "--mode", "test").split()[-1]
    port = free_port()
    process = subprocess.Popen([*base, "serve", "--port", str(port)], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_health(url, process, timeout=60)
        created = requests.post(url + "/v1/products", timeout=10, json={
            "name": "Zipped", "type": "account", "price_cents": 500, "currency": "USD",
            "description": "Sold from **one file**", "delivery_text": "login: zip"},
            headers={"Authorization": f"Bearer {secret}"})
        assert created.status_code == 201, created.text
        # Templates, Markdown rendering and static files all come out of the zipapp.
        page = requests.get(f"{url}/test/product/{created.json()['slug']}", timeout=10)
        assert page.status_code == 200 and "<strong>one file</strong>" in page.text
        assert requests.get(url + "/static/style.css", timeout=10).status_code == 200
        assert requests.get(url + "/docs", timeout=10).status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    assert (tmp_path / "sellix-data" / "sellix.db").exists()
