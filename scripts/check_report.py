#!/usr/bin/env python3
"""Check an `unravel audit` HTML report in headless Chromium.

    python3 scripts/check_report.py REPORT.html --cards N [--screenshot PATH] [--full-page]

Checks, each PASS or FAIL in a short table:
  renders         the page loads (load event fires) and its DOM, read back from the browser,
                  parses and has a non-empty body
  console errors  no console.error/assert, no uncaught exception, no error-level browser log entry
  cards           the DOM has exactly N elements whose class list contains `card`
  no network      static: no src/href/url()/@import/<link> pointing off the file;
                  runtime: the browser requested nothing but file:, data:, about: and blob: URLs
  screenshot      (only with --screenshot) a PNG of a 1400x3000 window (--full-page: the whole page)

Exit status: 0 when every check passes, 1 when one fails, 2 when the check could not run
(no chromium, unreadable file, browser did not answer).

Chromium is driven through the DevTools protocol over a pipe (--remote-debugging-pipe: NUL-
separated JSON on file descriptors 3 and 4), so only the standard library is needed and console
errors and network requests are seen as events, not scraped from logs. Debian: apt-get install
chromium. Another binary: --chromium PATH or $CHROMIUM.
"""

import argparse
import base64
import fcntl
import html.parser
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

WIDTH, HEIGHT = 1400, 3000
LOCAL_SCHEMES = ("file:", "data:", "about:", "blob:")


class CheckError(Exception):
    """The check could not run (exit 2)."""


# --------------------------------------------------------------------------------------------
# Static checks on the file
# --------------------------------------------------------------------------------------------

# Attribute values and CSS that would make the browser fetch something off the file.
EXTERNAL_PATTERNS = [
    re.compile(r"""\b(?:src|href|srcset|action|poster|data|background)\s*=\s*["']?\s*(?:[a-z][a-z0-9+.-]*:)?//""", re.I),
    re.compile(r"""url\(\s*["']?\s*(?:[a-z][a-z0-9+.-]*:)?//""", re.I),
    re.compile(r"@import", re.I),
    re.compile(r"<link\b", re.I),
    re.compile(r"<script\b[^>]*\bsrc\s*=", re.I),
    re.compile(r"<(?:iframe|object|embed)\b", re.I),
]


def external_references(text):
    """Snippets of `text` that reference something outside the file."""
    found = []
    for pat in EXTERNAL_PATTERNS:
        for m in pat.finditer(text):
            found.append(text[max(0, m.start() - 20): m.end() + 40].replace("\n", " "))
    return found


# --------------------------------------------------------------------------------------------
# The DOM, parsed
# --------------------------------------------------------------------------------------------

class DomStats(html.parser.HTMLParser):
    """Counts elements with class `card` (as a class token) and notes whether <body> has content."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.cards = 0
        self.elements = 0
        self.body = False

    def handle_starttag(self, tag, attrs):
        self.elements += 1
        if tag == "body":
            self.body = True
        for name, value in attrs:
            if name == "class" and value and "card" in value.split():
                self.cards += 1


# --------------------------------------------------------------------------------------------
# Chromium over the DevTools pipe
# --------------------------------------------------------------------------------------------

def find_chromium(explicit):
    for cand in [explicit, os.environ.get("CHROMIUM"), "chromium", "chromium-browser",
                 "google-chrome", "google-chrome-stable", "chrome"]:
        if cand:
            path = shutil.which(cand)
            if path:
                return path
    raise CheckError(
        "chromium not found: install it (Debian/Ubuntu: apt-get install -y chromium) "
        "or pass --chromium PATH / set $CHROMIUM")


class Browser:
    """A headless Chromium with its DevTools protocol on fds 3 (commands in) and 4 (messages out)."""

    def __init__(self, binary, profile, log):
        cmd_r, self._cmd_w = os.pipe()
        self._resp_r, resp_w = os.pipe()

        def to_3_and_4():
            # Move out of the way first so dup2 onto 3/4 cannot clobber the other pipe end.
            a = fcntl.fcntl(cmd_r, fcntl.F_DUPFD, 10)
            b = fcntl.fcntl(resp_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        args = [binary, "--headless", "--remote-debugging-pipe", f"--user-data-dir={profile}",
                "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--no-default-browser-check", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--hide-scrollbars", f"--window-size={WIDTH},{HEIGHT}"]
        if os.geteuid() == 0:
            args.append("--no-sandbox")
        args.append("about:blank")
        # close_fds=False: our own fds are non-inheritable anyway; only the dup2'd 3 and 4 pass.
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                     preexec_fn=to_3_and_4, close_fds=False)
        os.close(cmd_r)
        os.close(resp_w)
        self._next_id = 0
        self.events = []
        self._inbox = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        buf = b""
        while True:
            chunk = os.read(self._resp_r, 1 << 16)
            if not chunk:
                self._inbox.put(None)
                return
            buf += chunk
            *msgs, buf = buf.split(b"\0")
            for m in msgs:
                self._inbox.put(json.loads(m))

    def _next_message(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise queue.Empty
        msg = self._inbox.get(timeout=left)
        if msg is None:
            raise CheckError("chromium closed the DevTools pipe (it exited?)")
        if "id" not in msg:
            self.events.append(msg)
        return msg

    def send(self, method, params=None, session=None, timeout=30.0):
        """Sends a command and waits for its answer; events that arrive meanwhile are kept."""
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            try:
                m = self._next_message(deadline)
            except queue.Empty:
                raise CheckError(f"no answer to {method} within {timeout:.0f} s") from None
            if m.get("id") == self._next_id:
                if "error" in m:
                    raise CheckError(f"{method}: {m['error'].get('message')}")
                return m.get("result", {})

    def wait_event(self, method, timeout):
        """Waits for an event named `method` (True) or the timeout (False)."""
        if any(e.get("method") == method for e in self.events):
            return True
        deadline = time.monotonic() + timeout
        while True:
            try:
                m = self._next_message(deadline)
            except queue.Empty:
                return False
            if m.get("method") == method:
                return True

    def drain(self, seconds):
        """Collects events for `seconds` (late console errors, late requests)."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                self._next_message(deadline)
            except queue.Empty:
                return

    def close(self):
        try:
            self.send("Browser.close", timeout=5)
        except CheckError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def load_in_browser(binary, path, screenshot, full_page, timeout):
    """Loads `path`; returns (dom html, events, body height, png bytes or None, load fired)."""
    url = "file://" + os.path.abspath(path)
    with tempfile.TemporaryDirectory(prefix="check_report_") as profile, \
            tempfile.TemporaryFile() as log:
        browser = Browser(binary, profile, log)
        try:
            target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = browser.send("Target.attachToTarget",
                                   {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Runtime", "Log", "Network", "Page"):
                browser.send(f"{domain}.enable", session=session)
            browser.send("Emulation.setDeviceMetricsOverride",
                         {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1,
                          "mobile": False}, session=session)
            browser.events.clear()  # only what the report's page does counts
            nav = browser.send("Page.navigate", {"url": url}, session=session)
            if nav.get("errorText"):
                raise CheckError(f"navigation failed: {nav['errorText']}")
            loaded = browser.wait_event("Page.loadEventFired", timeout)
            browser.drain(0.5)
            dom = browser.send("Runtime.evaluate",
                               {"expression": "document.documentElement.outerHTML",
                                "returnByValue": True}, session=session)["result"].get("value", "")
            height = browser.send("Runtime.evaluate",
                                  {"expression": "document.body ? document.body.scrollHeight : 0",
                                   "returnByValue": True}, session=session)["result"].get("value", 0)
            png = None
            if screenshot:
                params = {"format": "png"}
                if full_page:
                    params["captureBeyondViewport"] = True
                    params["clip"] = {"x": 0, "y": 0, "width": WIDTH,
                                      "height": max(int(height), 1), "scale": 1}
                png = base64.b64decode(
                    browser.send("Page.captureScreenshot", params, session=session,
                                 timeout=60)["data"])
            return dom, list(browser.events), height, png, loaded
        except CheckError as e:
            log.seek(0)
            tail = log.read().decode(errors="replace")[-2000:]
            raise CheckError(f"{e}\n--- chromium output (tail) ---\n{tail}") from None
        finally:
            browser.close()


def console_errors(events):
    """Human-readable lines for every error the page produced."""
    out = []
    for e in events:
        m, p = e.get("method"), e.get("params", {})
        if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            out.append(f"console.{p['type']}: {text}")
        elif m == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            out.append("exception: " + d.get("exception", {}).get("description", d.get("text", "")))
        elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            entry = p["entry"]
            out.append(f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}".strip())
    return out


def remote_requests(events):
    return [e["params"]["request"]["url"] for e in events
            if e.get("method") == "Network.requestWillBeSent"
            and not e["params"]["request"]["url"].startswith(LOCAL_SCHEMES)]


# --------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("report", help="the HTML report")
    ap.add_argument("--cards", type=int, required=True, help="expected number of cards")
    ap.add_argument("--screenshot", metavar="PATH", help="write a PNG screenshot here")
    ap.add_argument("--full-page", action="store_true",
                    help="screenshot the whole page, not just the 1400x3000 window")
    ap.add_argument("--chromium", metavar="PATH", help="browser binary (default: $CHROMIUM, chromium)")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the page load")
    a = ap.parse_args()

    results = []  # (check, ok, detail)

    def check(name, ok, detail):
        results.append((name, bool(ok), detail))

    try:
        with open(a.report, encoding="utf-8") as f:
            text = f.read()
        binary = find_chromium(a.chromium)
        dom, events, height, png, loaded = load_in_browser(
            binary, a.report, a.screenshot, a.full_page, a.timeout)
    except (CheckError, OSError, UnicodeDecodeError) as e:
        print(f"check_report: cannot run the check: {e}", file=sys.stderr)
        return 2

    stats = DomStats()
    parse_error = None
    try:
        stats.feed(dom)
        stats.close()
    except Exception as e:  # html.parser is lenient; anything raised here means a broken DOM
        parse_error = e
    check("renders", loaded and parse_error is None and stats.body and height > 0,
          f"load event {'fired' if loaded else 'did NOT fire'}, DOM {len(dom)} chars, "
          f"{stats.elements} elements, body height {height} px"
          + (f", parse error: {parse_error}" if parse_error else ""))

    errors = console_errors(events)
    check("console errors", not errors,
          f"{len(errors)} errors" + ("".join(f"\n    {x}" for x in errors[:10])))

    check("cards", stats.cards == a.cards,
          f"{stats.cards} elements with class card (expected {a.cards})")

    refs = external_references(text)
    remote = remote_requests(events)
    check("no network", not refs and not remote,
          f"static: {len(refs)} external references, runtime: {len(remote)} remote requests"
          + "".join(f"\n    {x}" for x in (refs + remote)[:10]))

    if a.screenshot:
        try:
            with open(a.screenshot, "wb") as f:
                f.write(png)
            check("screenshot", png and png.startswith(b"\x89PNG"),
                  f"{a.screenshot} ({len(png)} bytes, {WIDTH} px wide"
                  + (", full page)" if a.full_page else f" x {HEIGHT} px)"))
        except OSError as e:
            check("screenshot", False, str(e))

    width = max(len(n) for n, _, _ in results)
    print(f"{'check':<{width}}  result  detail")
    for name, ok, detail in results:
        print(f"{name:<{width}}  {'PASS' if ok else 'FAIL'}    {detail}")
    failed = [n for n, ok, _ in results if not ok]
    print(f"{a.report}: " + ("all checks passed" if not failed else "FAILED: " + ", ".join(failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
