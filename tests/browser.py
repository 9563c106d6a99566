"""Headless Chromium for the tests that look at pages (Debian's `chromium`, installed by `make test` when missing)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "docs" / "screenshots"


def chromium() -> str:
    """Path of the chromium binary; skip when absent, except under CI=true."""
    path = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if path is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("chromium required under CI=true (make test installs it)")
        pytest.skip("chromium not installed (make chromium installs it)")
    return path


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="fraudseq-chromium-", ignore_cleanup_errors=True) as profile:
        cmd = [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            *args,
        ]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True)


def dump_dom(url: str, budget_ms: int = 0, timeout: float = 90) -> str:
    """The DOM after the page ran its scripts (``budget_ms`` of virtual time for single-page apps)."""
    extra = [f"--virtual-time-budget={budget_ms}"] if budget_ms else []
    return _run([*extra, "--dump-dom", url], timeout).stdout


def screenshot(url: str, out: Path, size: str = "1280,1800", budget_ms: int = 0, timeout: float = 90) -> Path:
    """A PNG of ``url`` at ``size`` (width,height)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    extra = [f"--virtual-time-budget={budget_ms}"] if budget_ms else []
    _run([*extra, f"--window-size={size}", f"--screenshot={out}", url], timeout)
    assert out.is_file() and out.stat().st_size > 10_000, f"empty screenshot of {url}"
    return out


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def app_screenshot(
    url: str,
    out: Path,
    local_storage: dict[str, str] | None = None,
    ready_js: str = "document.readyState === 'complete'",
    size: tuple[int, int] = (1400, 900),
    timeout: float = 60,
) -> Path:
    """Screenshot of a single-page app over the DevTools protocol.

    ``local_storage`` is set on the page's origin and the page reloaded (UI preferences such
    as Airflow's default DAG view live there); the shot is taken once ``ready_js`` is true.
    """
    import base64
    import json
    import subprocess
    import time
    import urllib.request

    from websockets.sync.client import connect

    port = free_port()
    with tempfile.TemporaryDirectory(prefix="fraudseq-chromium-", ignore_cleanup_errors=True) as profile:
        proc = subprocess.Popen(
            [
                chromium(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                f"--remote-debugging-port={port}",
                "--remote-allow-origins=*",
                f"--user-data-dir={profile}",
                f"--window-size={size[0]},{size[1]}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as r:
                        pages = [t for t in json.load(r) if t["type"] == "page"]
                    if pages:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError("chromium DevTools did not start")
                time.sleep(0.3)
            with connect(pages[0]["webSocketDebuggerUrl"], max_size=None) as ws:
                counter = iter(range(1, 10_000))

                def call(method: str, **params: object) -> dict:
                    msg_id = next(counter)
                    ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
                    while True:
                        msg = json.loads(ws.recv(timeout=timeout))
                        if msg.get("id") == msg_id:
                            return msg.get("result", {})

                def wait_for(js: str) -> None:
                    while not call("Runtime.evaluate", expression=js, returnByValue=True)["result"].get(
                        "value"
                    ):
                        if time.monotonic() > deadline:
                            raise TimeoutError(f"page never satisfied {js!r}")
                        time.sleep(0.5)

                call("Page.navigate", url=url)
                wait_for("document.readyState === 'complete'")
                if local_storage:
                    for key, value in local_storage.items():
                        call("Runtime.evaluate", expression=f"localStorage.setItem({key!r}, {value!r})")
                    call("Page.reload")
                    time.sleep(1)
                wait_for(ready_js)
                time.sleep(1.5)  # let layout animations settle
                png = call("Page.captureScreenshot", format="png")["data"]
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(base64.b64decode(png))
    return out
