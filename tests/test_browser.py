"""The player in a real browser: Voila serves notebooks/05_playback.ipynb (a copy with small parameters) on localhost,
Debian's Chromium (driven by Playwright) waits for the widgets, then moves the view slider and presses play, and the
shown picture must change each time. Screenshots go to notebooks/_screenshots/ (git-ignored).

Nothing here downloads a browser. When Chromium, Voila or Playwright is missing the test is skipped with the reason,
unless SV4D_REQUIRE_BROWSER=1 (CI), where it fails instead."""

import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "05_playback.ipynb"
SCREENSHOTS = ROOT / "notebooks" / "_screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]  # fmt: skip
SMALL = {"seed": 23, "model": "tiny", "frames": 5, "fps": 8}  # + export_dir, a temporary folder
TIMEOUT_S = 45  # the whole page: Voila runs the notebook (~10 s on 2 busy cores), then the widgets render

pytestmark = pytest.mark.slow


def _missing() -> str | None:
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} not found (apt-get install chromium)"
    for module in ("voila", "playwright"):
        if importlib.util.find_spec(module) is None:
            return f"python package {module} not installed (pip install -e '.[dev]')"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _small_copy(folder: Path) -> Path:
    """The notebook with its parameters cell replaced by the small values (Voila takes no papermill parameters)."""
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    (cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    values = {**SMALL, "export_dir": str(folder / "exports")}
    cell.source = "\n".join(f"{name} = {value!r}" for name, value in values.items())
    path = folder / NOTEBOOK.name
    nbformat.write(nb, path)
    return path


def _wait_for_server(port: int, server: subprocess.Popen, deadline: float):
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"voila exited with code {server.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError("voila did not start listening")


def test_the_player_plays_in_a_browser(tmp_path):
    missing = _missing()
    if missing:
        if os.environ.get("SV4D_REQUIRE_BROWSER") == "1":
            pytest.fail(f"SV4D_REQUIRE_BROWSER=1 but {missing}")
        pytest.skip(missing)
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=10_000)  # each step waits on a kernel round trip, on 2 busy cores

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    notebook = _small_copy(tmp_path)
    port = _free_port()
    log = open(tmp_path / "voila.log", "wb")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    server = subprocess.Popen(
        [sys.executable, "-m", "voila", str(notebook), "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1",
         "--show_tracebacks=True"],
        cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + TIMEOUT_S
    try:
        _wait_for_server(port, server, deadline)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 900, "height": 700})
                page.goto(f"http://127.0.0.1:{port}/", timeout=TIMEOUT_S * 1000)
                image = page.locator(".widget-image").first
                expect(image).to_have_attribute(
                    "src", re.compile(r"^blob:"), timeout=max(5.0, deadline - time.monotonic()) * 1000
                )
                box = page.locator(".widget-vbox", has=image).first  # the player
                label = box.locator("div.widget-label").last  # what it shows, in words
                frame, view = (box.locator(".widget-slider", has=page.locator("label", has_text=name)).first
                               for name in ("frame", "view"))  # fmt: skip
                box.scroll_into_view_if_needed()
                box.screenshot(path=SCREENSHOTS / "05_playback_start.png")

                # 1. The view slider, by keyboard: its handle takes Home (to view 0, the input) and the arrow keys
                readout = view.locator(".widget-readout")
                view.locator(".noUi-handle").focus()
                for key, v in (("Home", 0), ("ArrowRight", 1)):
                    shown, before = image.get_attribute("src"), readout.inner_text()
                    page.keyboard.press(key)
                    expect(readout).to_have_text(str(v))
                    expect(label).to_contain_text(f"view {v} ")
                    if before != str(v):
                        expect(image).not_to_have_attribute("src", shown)
                    box.screenshot(path=SCREENSHOTS / f"05_playback_view{v}.png")

                # 2. Play: time advances through the browser link, and the picture follows
                shown, t = image.get_attribute("src"), frame.locator(".widget-readout").inner_text()
                box.locator(".widget-play button").first.click()
                expect(frame.locator(".widget-readout")).not_to_have_text(t)
                expect(image).not_to_have_attribute("src", shown)
                box.screenshot(path=SCREENSHOTS / "05_playback_playing.png")

                # 3. Orbit: the camera moves too, while the Play runs
                box.locator("button.widget-toggle-button", has_text="orbit").click()
                expect(label).to_contain_text("orbit step")
                v = view.locator(".widget-readout").inner_text()
                expect(view.locator(".widget-readout")).not_to_have_text(v)
                box.screenshot(path=SCREENSHOTS / "05_playback_orbit.png")
            finally:
                browser.close()
    except Exception:
        log.flush()
        print((tmp_path / "voila.log").read_text(errors="replace")[-4000:])  # shown by pytest when it fails
        raise
    finally:
        _stop(server)
        log.close()
        shutil.rmtree(tmp_path / "exports", ignore_errors=True)


def _stop(server: subprocess.Popen):
    """Stop Voila's process group, politely first: on SIGTERM Voila shuts its kernel down (the kernel runs in a
    session of its own, and also exits by itself when its parent Voila is gone)."""
    if server.poll() is None:
        try:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
        except ProcessLookupError:
            pass
    try:  # the kernel may outlive Voila in the same group
        os.killpg(server.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
