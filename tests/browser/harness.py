"""What the journeys share: the browser, waits that fail with a message,
screenshots kept as artifacts, direct API calls and test images."""

import json
import os
import struct
import urllib.error
import urllib.request
import zlib

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

WAIT_SECS = 15


class Browser:
    def __init__(self, base, artifacts):
        self.base = base
        self.artifacts = artifacts
        self.shots = 0
        options = webdriver.ChromeOptions()
        options.binary_location = os.environ.get("CRM_CHROMIUM", "/usr/bin/chromium")
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                    "--disable-gpu", "--window-size=1280,900", "--lang=en-US"):
            options.add_argument(arg)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        service = Service(os.environ.get("CRM_CHROMEDRIVER", "/usr/bin/chromedriver"))
        self.driver = webdriver.Chrome(options=options, service=service)

    def quit(self):
        self.driver.quit()

    def open(self, path):
        self.driver.get(self.base + path)

    def wait(self, condition, what):
        try:
            # The pages re-render: an element found a moment ago may be gone.
            return WebDriverWait(self.driver, WAIT_SECS, ignored_exceptions=[StaleElementReferenceException]
                                 ).until(lambda _: condition())
        except TimeoutException:
            self.shot("FAILED")
            what = what() if callable(what) else what
            raise AssertionError(f"timed out waiting for {what}") from None

    def find(self, css):
        return self.wait(lambda: self._visible(css), f"a visible {css}")

    def _visible(self, css):
        for element in self.driver.find_elements(By.CSS_SELECTOR, css):
            if element.is_displayed():
                return element
        return None

    def all(self, css):
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text_of(self, css):
        """The rendered text of the first match (read in one go: pages re-render)."""
        return self.script("const e = document.querySelector(arguments[0]); return e ? e.innerText : ''", css)

    def wait_text(self, css, text):
        """Waits until an element matching `css` shows `text`."""
        return self.wait(
            lambda: next((e for e in self.all(css) if text in e.text), None),
            lambda: f"{css} to show {text!r} (it shows {self.text_of(css)!r})")

    def heading(self, text):
        return self.wait_text("main h1", text)

    def fill(self, form_css, **values):
        for name, value in values.items():
            control = self.find(f"{form_css} [name={name}]")
            control.clear()
            control.send_keys(value)

    def choose(self, css, text):
        """Picks the option of a <select> shown as `text` (fires `change`)."""
        Select(self.find(css)).select_by_visible_text(text)

    def click(self, css):
        self.find(css).click()

    def button(self, label, within="main"):
        """The visible, enabled button of `within` whose text is `label`."""
        return self.wait(
            lambda: next((b for b in self.all(f"{within} button")
                          if b.text == label and b.is_displayed() and b.is_enabled()), None),
            f"a button {label!r} in {within}")

    def script(self, source, *args):
        return self.driver.execute_script(source, *args)

    def token(self):
        return self.script("return JSON.parse(localStorage.getItem('crm.session')).access")

    def shot(self, name):
        """Keeps a screenshot; the page must not show leaked JS values."""
        if name != "FAILED":
            text = self.script("return document.body.innerText")
            for junk in ("null", "undefined", "[object", "NaN"):
                assert junk not in text, f"the {name} page shows {junk!r}: {text!r}"
        self.shots += 1
        path = os.path.join(self.artifacts, f"{self.shots:02d}-{name}.png")
        self.driver.save_screenshot(path)
        return path

    def console_errors(self):
        """Script errors and policy violations the page logged."""
        return [entry["message"] for entry in self.driver.get_log("browser")
                if entry["level"] == "SEVERE"
                and "Failed to load resource" not in entry["message"]]


def api(base, method, path, token=None, body=None, headers=None):
    """A direct API call (what another client does meanwhile)."""
    request = urllib.request.Request(base + path, method=method, headers=dict(headers or {}))
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, data) as response:
            raw = response.read()
            return response.status, response.headers, json.loads(raw) if raw.startswith(b"{") else raw
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def png(path, width, height, rgb):
    """Writes a solid-colour PNG (a real image whose header parses)."""
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))
    row = b"\x00" + bytes(rgb) * width
    raw = zlib.compress(row * height)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    with open(path, "wb") as out:
        out.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b""))
    return path
