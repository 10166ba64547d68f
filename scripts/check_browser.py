#!/usr/bin/env python3
"""Checks the unit browser of an `unravel audit` report in headless Chromium (issue 25).

    python3 scripts/check_browser.py AUDIT_DIR [--dashboards 20] [--screenshots DIR]

One browser session (the DevTools-protocol driver of scripts/check_report.py) opens
AUDIT_DIR/report.html and checks, each PASS or FAIL:
  index          the index reaches every unit: its count, and paging through the side filter
                 lists every unit id exactly once
  search         every unit id of each side, typed into the search box, lists that unit (on
                 the first page, or a later one when its number is also a top token of
                 200+ units); and a random top token per side (the index must show exactly
                 the units whose top tokens contain it)
  dashboards     N random alive units opened through their address (#feature-12): every panel
                 present and populated (histogram, concepts and decision, co-activating units,
                 contexts with examples, nearest features for SAE features, logit effect or its
                 note)
  console errors none; no network: the page requested nothing but file: URLs
and records the load time (the page's performance.now() when the index is ready; and the
wall time from navigation to it) and the size on disk of AUDIT_DIR. --screenshots DIR writes
browser-index.png and the first dashboard of each kind (browser-neuron.png,
browser-feature.png; --shoot feature-5 picks the unit). Exit 1 when a check fails, 2 when it cannot run.
"""

import argparse
import json
import os
import random
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_report import (Browser, CheckError, console_errors, find_chromium,  # noqa: E402
                          remote_requests)


class Page:
    def __init__(self, browser, session):
        self.b, self.s = browser, session

    def js(self, expr, timeout=30):
        r = self.b.send("Runtime.evaluate", {"expression": expr, "returnByValue": True,
                                             "awaitPromise": True}, session=self.s, timeout=timeout)
        if "exceptionDetails" in r:
            raise CheckError(f"evaluating {expr[:60]}: {r['exceptionDetails'].get('text')}")
        return r["result"].get("value")

    def wait(self, expr, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            v = self.js(expr)
            if v:
                return v
            self.b.drain(0.05)
        return None


def load_index(audit):
    text = open(os.path.join(audit, "units", "index.js"), encoding="utf-8").read()
    return json.loads(text[len("unravelIndex("):-len(");\n")])


SEARCH = """(function(side, q) {
  var s = document.getElementById('f-side'), f = document.getElementById('f-search');
  s.value = side; f.value = q; f.dispatchEvent(new Event('input'));
  return +document.body.getAttribute('data-shown');
})(%s, %s)"""

PAGE_IDS = """(function() {
  var ids = [];
  document.getElementById('f-search').value = '';
  document.getElementById('f-side').value = %s;
  document.getElementById('f-search').dispatchEvent(new Event('input'));
  var n = +document.body.getAttribute('data-shown');
  for (var p = 0; p * 200 < n; p++) {
    document.querySelectorAll('#index-body tr td:first-child a').forEach(function (a) {
      ids.push(a.getAttribute('href')); });
    document.getElementById('page-next').click();
  }
  return ids;
})()"""

SEARCH_ALL = """(function(side, anchor, units) {
  var s = document.getElementById('f-side'), f = document.getElementById('f-search');
  var missing = [];
  s.value = side;
  units.forEach(function (u) {
    f.value = String(u); f.dispatchEvent(new Event('input'));
    var href = '#' + anchor + '-' + u, found = false;
    for (var p = 0; !found && p * 200 < +document.body.getAttribute('data-shown'); p++) {
      found = !!document.querySelector('#index-body a[href="' + href + '"]');
      if (!found) document.getElementById('page-next').click();
    }
    if (!found) missing.push(u);
  });
  f.value = ''; f.dispatchEvent(new Event('input'));
  return missing;
})(%s, %s, %s)"""

PANELS = """(function(name) {
  var d = document.getElementById('dash');
  if (d.hidden || d.getAttribute('data-unit') !== name || !d.getAttribute('data-ms')) return null;
  function has(id, sel) { var e = document.getElementById(id); return !!e && (!sel || !!e.querySelector(sel)); }
  return {ms: +d.getAttribute('data-ms'), hist: has('p-hist', 'svg'), concepts: has('p-concepts', 'tbody tr'),
          coactive: has('p-coactive', 'li, p'), contexts: has('p-contexts', '.ex'),
          examples: d.querySelectorAll('.ex').length, nearest: has('p-nearest', 'li'),
          logits: has('p-logits', 'div, p')};
})(%s)"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("audit")
    ap.add_argument("--dashboards", type=int, default=20)
    ap.add_argument("--screenshots")
    ap.add_argument("--shoot", action="append", default=[], metavar="UNIT",
                    help="with --screenshots: this unit's dashboard (e.g. feature-5) instead of the "
                         "first random one of its kind; repeatable")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chromium")
    a = ap.parse_args()
    index = load_index(a.audit)
    total = sum(len(s["units"]) for s in index["sides"])
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(a.audit) for f in fs)
    url = "file://" + os.path.abspath(os.path.join(a.audit, "report.html"))
    rng = random.Random(a.seed)
    results = []

    def check(name, ok, detail):
        results.append((name, ok, detail))
        print(f"{'PASS' if ok else 'FAIL'}  {name:<14} {detail}", flush=True)

    with tempfile.TemporaryDirectory(prefix="check_browser_") as profile, \
            tempfile.TemporaryFile() as log:
        b = Browser(find_chromium(a.chromium), profile, log)
        try:
            target = b.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = b.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Runtime", "Log", "Network", "Page"):
                b.send(f"{domain}.enable", session=session)
            b.send("Emulation.setDeviceMetricsOverride", {"width": 1400, "height": 1000,
                   "deviceScaleFactor": 1, "mobile": False}, session=session)
            b.events.clear()
            page = Page(b, session)
            t0 = time.monotonic()
            b.send("Page.navigate", {"url": url}, session=session)
            listed = page.wait("document.body && document.body.getAttribute('data-index')", 60)
            wall = time.monotonic() - t0
            ready = page.js("document.body.getAttribute('data-ready-ms')")
            check("index", listed == str(total),
                  f"{listed} of {total} units listed; ready at {ready} ms in the page, {wall:.2f} s from navigation")
            if a.screenshots:
                os.makedirs(a.screenshots, exist_ok=True)
                shot(b, session, os.path.join(a.screenshots, "browser-index.png"), page, "units")
            for s, side in enumerate(index["sides"]):
                ids = page.js(PAGE_IDS % json.dumps(str(s)), timeout=120)
                want = [f"#{side['anchor']}-{u[0]}" for u in side["units"]]
                check("index pages", sorted(ids) == sorted(want) and len(ids) == len(set(ids)),
                      f"{side['kind']}: {len(ids)} rows over the pages, {len(want)} units")
                units = [u[0] for u in side["units"]]
                t2 = time.monotonic()
                missing = page.js(SEARCH_ALL % (json.dumps(str(s)), json.dumps(side["anchor"]),
                                                json.dumps(units)), timeout=900)
                check("search ids", missing == [],
                      f"{side['kind']}: {len(units) - len(missing)} of {len(units)} unit ids found by "
                      f"search ({time.monotonic() - t2:.1f} s)"
                      + (f"; missing {missing[:10]}" if missing else ""))
                toks = sorted({t.strip() for u in side["units"] for t in u[5] if t.strip()})
                if toks:
                    tok = rng.choice(toks)
                    want_n = sum(1 for u in side["units"]
                                 if any(tok.lower() in t.strip().lower() for t in u[5] if t.strip()))
                    shown = page.js(SEARCH % (json.dumps(str(s)), json.dumps(tok)))
                    check("search token", shown == want_n, f"{side['kind']} {tok!r}: {shown} shown, {want_n} expected")
            page.js(SEARCH % ('""', '""'))
            alive = [(side["anchor"], u[0]) for side in index["sides"] for u in side["units"] if u[1] != "dead"]
            picks = rng.sample(alive, min(a.dashboards, len(alive)))
            times, shot_kinds = [], set()
            for anchor, unit in picks:
                name = f"{anchor}-{unit}"
                t1 = time.monotonic()
                page.js(f"location.hash = {json.dumps(name)}; 1")
                p = page.wait(PANELS % json.dumps(name), 20)
                times.append(time.monotonic() - t1)
                need = ["hist", "concepts", "coactive", "contexts", "logits"] + (["nearest"] if anchor == "feature" else [])
                missing = [k for k in need if not (p or {}).get(k)]
                check("dashboard", p is not None and not missing,
                      f"{name}: {'not rendered' if p is None else 'missing ' + ', '.join(missing) if missing else str(p['examples']) + ' examples'}")
                if a.screenshots and not a.shoot and anchor not in shot_kinds:  # first of each kind
                    shot_kinds.add(anchor)
                    shot(b, session, os.path.join(a.screenshots, f"browser-{anchor}.png"), page, None)
            for name in a.shoot if a.screenshots else []:
                page.js(f"location.hash = {json.dumps(name)}; 1")
                ok = page.wait(PANELS % json.dumps(name), 20)
                check("dashboard", ok is not None, f"{name} (screenshot)")
                shot(b, session, os.path.join(a.screenshots, f"browser-{name.split('-')[0]}.png"), page, None)
            if times:
                print(f"dashboards open in {min(times):.2f}..{max(times):.2f} s (median {sorted(times)[len(times) // 2]:.2f})")
            b.drain(0.5)
            errors = console_errors(b.events)
            check("console errors", not errors, "; ".join(errors[:5]) or "none")
            remote = remote_requests(b.events)
            check("no network", not remote, ", ".join(remote[:5]) or "only file: URLs")
        finally:
            b.close()
    print(f"size on disk: {size / 1e6:.1f} MB")
    print(json.dumps({"units": total, "ready_ms": ready, "load_s": round(wall, 2),
                      "size_mb": round(size / 1e6, 1), "failed": sum(1 for r in results if not r[1])}))
    return 0 if all(r[1] for r in results) else 1


def shot(b, session, path, page, anchor):
    import base64
    if anchor:
        page.js(f"location.hash = {json.dumps(anchor)}; 1")
        b.drain(0.3)
    png = b.send("Page.captureScreenshot", {"format": "png"}, session=session, timeout=60)["data"]
    with open(path, "wb") as f:
        f.write(base64.b64decode(png))
    print(f"screenshot {path}")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CheckError as e:
        print(f"check_browser: {e}", file=sys.stderr)
        sys.exit(2)
