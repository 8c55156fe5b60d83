"""The browser editor (``intentcam calibrate``) in a real headless Chromium: draw a line by
clicks, flip it, save, and see the config change; a self-intersecting zone is refused with the
reason; a non-loopback address needs the token."""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.brokers import free_port
from tests.browser import browser
from tests.cli import intentcam_argv
from tests.data import CAVIAR


@pytest.mark.slow
def test_draw_flip_and_save_a_line_in_a_real_browser(tmp_path: Path, model_dir: Path) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    state = tmp_path / "state"
    config = tmp_path / "camera.toml"
    config.write_text(f'[paths]\nstate_dir = "{state}"\nmodel_dir = "{model_dir}"\n'
                      f'[camera]\nsource = "{CAVIAR / "video.mpg"}"\n', encoding="utf-8")  # fmt: skip
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTENTCAM_")}
    server = subprocess.Popen(
        intentcam_argv("calibrate", "--config", str(config), "--listen", f"127.0.0.1:{port}",
                       "--seconds", "4"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    driver = None
    try:
        line = server.stdout.readline() if server.stdout else ""
        assert "open http://" in line, server.stderr.read() if server.stderr else line
        url = line.split("open ")[1].split()[0]
        driver = browser()
        driver.get(url)
        wait = WebDriverWait(driver, 20)
        wait.until(
            lambda d: d.execute_script("return document.getElementById('scene').width") == 384
        )
        canvas = driver.find_element(By.ID, "scene")
        width, height = canvas.size["width"], canvas.size["height"]

        def click_at(x: float, y: float) -> None:  # normalised; Selenium offsets from the centre
            ActionChains(driver).move_to_element_with_offset(
                canvas, int((x - 0.5) * width), int((y - 0.5) * height)
            ).click().perform()

        field = driver.find_element(By.ID, "new-id")
        field.clear()
        field.send_keys("entrance")
        driver.find_element(By.ID, "new-line").click()
        click_at(0.2, 0.6)
        click_at(0.8, 0.6)
        driver.find_element(By.ID, "finish").click()
        driver.find_element(By.ID, "flip-entrance").click()
        driver.find_element(By.ID, "save").click()
        status = driver.find_element(By.ID, "status")
        # "not saved yet" is the page's own word for an unsaved edit; "not saved:" the server's.
        wait.until(lambda d: "saved to" in status.text or "not saved:" in status.text)
        assert "saved to" in status.text, status.text
        saved = json.loads((state / "zones.json").read_text())
        entrance = next(item for item in saved["lines"] if item["id"] == "entrance")
        assert entrance["in_side"] == "left"
        (x1, y1), (x2, y2) = entrance["points"]
        assert abs(x1 - 0.2) < 0.02 and abs(x2 - 0.8) < 0.02 and abs(y1 - 0.6) < 0.02
        driver.save_screenshot(str(tmp_path / "calibrate.png"))
        print(f"screenshot: {tmp_path / 'calibrate.png'}")

        # A shelf zone: the kind chosen in the editor is what is saved.
        from selenium.webdriver.support.ui import Select

        field.clear()
        field.send_keys("table")
        Select(driver.find_element(By.ID, "zone-kind")).select_by_value("shelf")
        driver.find_element(By.ID, "new-zone").click()
        assert "up to their tops" in status.text, status.text  # how to draw a shelf
        for x, y in ((0.5, 0.5), (0.7, 0.5), (0.8, 0.9), (0.5, 0.9)):
            click_at(x, y)
        driver.find_element(By.ID, "finish").click()
        driver.find_element(By.ID, "save").click()
        wait.until(
            lambda d: "saved to" in status.text and "table" in (state / "zones.json").read_text()
        )
        table = next(z for z in json.loads((state / "zones.json").read_text())["zones"]
                     if z["id"] == "table")  # fmt: skip
        assert table["kind"] == "shelf" and len(table["points"]) == 4
        # Its live count says what hands did there too (the camera's own counts, reset on save).
        count = driver.find_element(By.CSS_SELECTOR, "span.count[data-zone='table']")
        wait.until(lambda d: "put-backs" in count.text)
        # (whoever walks through the drawn zone in the clip meanwhile is counted)
        assert re.fullmatch(r"\d+ entr(y|ies), \d+ reach(es)?, \d+ inspects?, \d+ put-backs?",
                            count.text)  # fmt: skip
        # "Just now" lists the events behind those counts (one refresh sets both).
        listed, counted = driver.execute_script(
            "return [document.querySelectorAll('#recent li').length, counts]"
        )
        total = (sum(c["in"] + c["out"] for c in counted["lines"].values())
                 + sum(counted["zones"].values()) + sum(counted["alerts"].values())
                 + sum(sum(kinds.values()) for kinds in counted["shelves"].values()))  # fmt: skip
        assert listed == min(total, 20), (listed, counted)
        Select(driver.find_element(By.ID, "zone-kind")).select_by_value("area")

        # A bow-tie zone is refused with the reason, and nothing is saved.
        before = (state / "zones.json").read_bytes()
        field.clear()
        field.send_keys("bowtie")
        driver.find_element(By.ID, "new-zone").click()
        for x, y in ((0.1, 0.1), (0.4, 0.4), (0.4, 0.1), (0.1, 0.4)):
            click_at(x, y)
        driver.find_element(By.ID, "finish").click()
        driver.find_element(By.ID, "save").click()
        wait.until(lambda d: "not saved:" in status.text)
        assert "intersect" in status.text
        assert (state / "zones.json").read_bytes() == before
        driver.save_screenshot(str(tmp_path / "calibrate-refused.png"))
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()
        _, errors = server.communicate(timeout=30)
    assert server.returncode == 0, errors[-2000:]
    shot = cv2.imread(str(tmp_path / "calibrate.png"))
    assert shot is not None and shot.shape[0] > 300 and shot.std() > 10  # the editor, not a blank


def test_a_non_loopback_address_needs_the_token(tmp_path: Path) -> None:
    from intentcam.calibrate.server import Editor, needs_token, serve
    from intentcam.config import load_config

    assert needs_token("0.0.0.0") and needs_token("192.168.1.20") and not needs_token("127.0.0.1")
    settings = load_config(None, overrides={"paths": {"state_dir": str(tmp_path)}})
    plate = cv2.imencode(".png", np.zeros((90, 160, 3), np.uint8))[1].tobytes()
    editor = Editor(settings, plate, 160, 90, token="s3cret-token")
    server = serve(editor, "0.0.0.0", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{base}/api/state", timeout=5)
        assert refused.value.code == 403
        request = urllib.request.Request(f"{base}/api/state",
                                         headers={"X-Intentcam-Token": "s3cret-token"})  # fmt: skip
        assert json.loads(urllib.request.urlopen(request, timeout=5).read())["width"] == 160
        assert urllib.request.urlopen(f"{base}/?token=s3cret-token", timeout=5).status == 200
        post = urllib.request.Request(f"{base}/api/geometry", data=b'{"lines": [], "zones": []}',
                                      headers={"X-Intentcam-Token": "wrong"}, method="POST")  # fmt: skip
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(post, timeout=5)
        assert not (tmp_path / "zones.json").exists()
    finally:
        server.shutdown()
        server.server_close()
