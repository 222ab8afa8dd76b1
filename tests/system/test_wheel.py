"""A wheel that works alone: `python -m build` makes a wheel and an sdist; the wheel installs
into a fresh venv outside the checkout and runs a grid (`gridrun up`) that runs a task, with
its dashboard and generated protobuf code inside."""

from __future__ import annotations

import signal
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import httpx
import pytest

from gridrun import __version__
from tests.helpers import eventually, free_port

pytestmark = [pytest.mark.system, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


# what pip and build print when no package index can be reached (a machine off the network):
# the test needs one (build's isolated environment, the wheel's dependencies), so it skips
UNREACHABLE = (
    "NewConnectionError", "Network is unreachable", "Temporary failure in name resolution",
    "Name or service not known", "Connection refused", "ConnectTimeoutError",
)  # fmt: skip


def _needs_an_index(done: subprocess.CompletedProcess[str]) -> None:
    said = done.stdout + done.stderr
    if done.returncode != 0 and any(sign in said for sign in UNREACHABLE):
        pytest.skip("no package index reachable here (the wheel's build and install need one)")


def test_the_wheel_installs_alone_and_runs_a_grid(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    built = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(dist), str(REPO)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    _needs_an_index(built)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    (wheel,) = dist.glob(f"gridrun-{__version__}-py3-none-any.whl")
    assert list(dist.glob(f"gridrun-{__version__}.tar.gz"))
    names = zipfile.ZipFile(wheel).namelist()
    for inside in ("gridrun/master/http/web/app.js", "gridrun/_proto/worker_pb2.py"):
        assert inside in names

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python, gridrun = env_dir / "bin" / "python", env_dir / "bin" / "gridrun"
    installed = subprocess.run(
        # (a retry, not pip's five with backoff: off the network that is minutes of waiting)
        [str(python), "-m", "pip", "install", "-q", "--retries", "1", str(wheel)],
        capture_output=True, text=True, timeout=480,
    )  # fmt: skip
    _needs_an_index(installed)
    assert installed.returncode == 0, installed.stderr[-3000:]
    home = tmp_path / "elsewhere"  # not the checkout: nothing of it on the path
    home.mkdir()
    clean = {"PATH": f"{env_dir / 'bin'}:/usr/bin:/bin", "HOME": str(home)}
    version = subprocess.run([str(gridrun), "--version"], capture_output=True, text=True, env=clean)
    assert version.stdout.strip() == f"gridrun {__version__}"
    where = subprocess.run(
        [str(python), "-c", "import gridrun; print(gridrun.__file__)"],
        capture_output=True, text=True, env=clean, cwd=home,
    )  # fmt: skip
    assert where.stdout.startswith(str(env_dir)), where.stdout

    http, grpc = free_port(), free_port()
    url = f"http://127.0.0.1:{http}"
    up = subprocess.Popen(
        [str(gridrun), "up", "--workers", "1", "--http", f"127.0.0.1:{http}",
         "--grpc", f"127.0.0.1:{grpc}"],
        cwd=home, env=clean, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        eventually(lambda: _online(url), 60, 0.2)
        ran = subprocess.run(
            [str(gridrun), "run", "--url", url, "--", "echo", "from the wheel"],
            capture_output=True, text=True, env=clean, cwd=home, timeout=60,
        )  # fmt: skip
        assert (ran.returncode, ran.stdout) == (0, "from the wheel\n"), ran.stderr
        page = httpx.get(f"{url}/static/app.js", timeout=5)
        assert page.status_code == 200
        assert "overviewPage" in page.text
        assert httpx.get(f"{url}/healthz", timeout=5).json()["version"] == __version__
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(timeout=60)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait()


def _online(url: str) -> bool:
    try:
        workers = httpx.get(f"{url}/v1/workers", timeout=2).json()["workers"]
    except httpx.TransportError:
        return False
    return any(w["state"] == "online" for w in workers)
