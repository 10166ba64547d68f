// The unit browser of report.html (see src/report/browser.rs). Data arrives from units/*.js
// through unravelIndex / unravelChunk; text is only ever set through textContent.
(function () {
  "use strict";
  var errors = 0;
  window.addEventListener("error", function (e) {
    errors += 1;
    document.body.setAttribute("data-errors", String(errors));
    var m = document.getElementById("browser-error");
    if (m) m.textContent = "error: " + (e.message || "a unit file failed to load");
  }, true);
  var index = null, chunks = {}, waiting = {}, sortKey = "unit", sortDir = 1, page = 0;
  var PAGE = 200;
  function el(tag, attrs, kids) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) {
      if (k === "text") e.textContent = attrs[k]; else e.setAttribute(k, attrs[k]);
    }
    (kids || []).forEach(function (c) { if (c) e.appendChild(typeof c === "string" ? document.createTextNode(c) : c); });
    return e;
  }
  function $(id) { return document.getElementById(id); }
  function sig(x) {
    if (x === null || x === undefined || !isFinite(x)) return String(x);
    if (x === 0) return "0";
    var a = Math.abs(x);
    return a >= 1000 || a < 0.001 ? x.toExponential(2) : String(+x.toPrecision(3));
  }
  function visible(t) { return t.replace(/ /g, "\u00b7").replace(/\n/g, "\u21b5").replace(/\t/g, "\u21e5"); }
  function load(src, onerror) {
    var s = document.createElement("script");
    s.src = src;
    s.onerror = onerror;
    document.head.appendChild(s);
  }
  // ---- the index --------------------------------------------------------------------------
  var rows = [];
  window.unravelIndex = function (data) {
    index = data;
    rows = [];
    data.sides.forEach(function (side, s) {
      side.units.forEach(function (u) {
        rows.push({ side: s, anchor: side.anchor + "-" + u[0], unit: u[0], cls: u[1], concepts: u[2],
                    density: u[3], max: u[4], tokens: u[5], top: u[5].length ? u[5][0] : "" });
      });
    });
    var sel = $("f-concept");
    data.concepts.forEach(function (c, i) { sel.appendChild(el("option", { value: String(i), text: c })); });
    var side = $("f-side");
    data.sides.forEach(function (s, i) { side.appendChild(el("option", { value: String(i), text: s.kind })); });
    // Filters may come in the address: report.html?q=Paris&class=polysemantic&side=1.
    var params = new URLSearchParams(location.search);
    [["q", "f-search"], ["class", "f-class"], ["side", "f-side"], ["concept", "f-concept"],
     ["dmin", "f-dmin"], ["dmax", "f-dmax"]].forEach(function (p) {
      if (params.has(p[0])) $(p[1]).value = params.get(p[0]);
    });
    ["f-side", "f-class", "f-concept", "f-dmin", "f-dmax", "f-search"].forEach(function (id) {
      $(id).addEventListener("input", function () { page = 0; renderIndex(); });
    });
    renderIndex();
    route();
    document.body.setAttribute("data-index", String(rows.length));
    document.body.setAttribute("data-ready-ms", performance.now().toFixed(0));
  };
  function filtered() {
    var side = $("f-side").value, cls = $("f-class").value, con = $("f-concept").value;
    var dmin = parseFloat($("f-dmin").value), dmax = parseFloat($("f-dmax").value);
    var q = $("f-search").value.trim();
    var unitQ = /^\d+$/.test(q) ? +q : null, tokQ = q.toLowerCase();
    var out = rows.filter(function (r) {
      if (side !== "" && r.side !== +side) return false;
      if (cls !== "" && r.cls !== cls) return false;
      if (con !== "" && r.concepts.indexOf(+con) < 0) return false;
      if (!isNaN(dmin) && r.density < dmin) return false;
      if (!isNaN(dmax) && r.density > dmax) return false;
      if (q === "") return true;
      if (unitQ !== null && r.unit === unitQ) return true;
      return r.tokens.some(function (t) { return t.trim().toLowerCase().indexOf(tokQ) >= 0 && t.trim() !== ""; });
    });
    out.sort(function (a, b) {
      var x = a[sortKey], y = b[sortKey];
      if (sortKey === "concepts") { x = x.length; y = y.length; }
      return (x < y ? -1 : x > y ? 1 : a.side - b.side || a.unit - b.unit) * sortDir;
    });
    return out;
  }
  function renderIndex() {
    var list = filtered(), body = $("index-body");
    var pages = Math.max(1, Math.ceil(list.length / PAGE));
    page = Math.min(page, pages - 1);
    body.textContent = "";
    list.slice(page * PAGE, (page + 1) * PAGE).forEach(function (r) {
      body.appendChild(el("tr", {}, [
        el("td", {}, [el("a", { href: "#" + r.anchor, text: r.anchor })]),
        el("td", { "class": "cls-" + r.cls, text: r.cls }),
        el("td", { text: r.concepts.map(function (c) { return index.concepts[c]; }).join(", ") }),
        el("td", { "class": "num", text: sig(r.density) }),
        el("td", { "class": "num", text: sig(r.max) }),
        el("td", {}, [el("span", { "class": "tok", text: visible(r.top) })]),
      ]));
    });
    document.body.setAttribute("data-shown", String(list.length));
    $("index-count").textContent = list.length + " of " + rows.length + " units · page " + (page + 1) + " of " + pages;
  }
  function setupIndex() {
    document.querySelectorAll("#index-table th[data-key]").forEach(function (th) {
      th.addEventListener("click", function () {
        var k = th.getAttribute("data-key");
        sortDir = sortKey === k ? -sortDir : (k === "unit" || k === "anchor" ? 1 : -1);
        sortKey = k;
        renderIndex();
      });
    });
    $("page-prev").addEventListener("click", function () { page = Math.max(0, page - 1); renderIndex(); });
    $("page-next").addEventListener("click", function () { page += 1; renderIndex(); });
  }
  // ---- dashboards -------------------------------------------------------------------------
  window.unravelChunk = function (prefix, c, pages) {
    var key = prefix + "-" + c;
    chunks[key] = pages;
    (waiting[key] || []).forEach(function (f) { f(); });
    delete waiting[key];
  };
  function withUnit(prefix, unit, f) {
    var c = Math.floor(unit / index.chunk), key = prefix + "-" + c;
    var pick = function () { f(chunks[key][unit - c * index.chunk]); };
    if (chunks[key]) return pick();
    if (!waiting[key]) {
      waiting[key] = [];
      load("units/" + prefix + "-" + String(c).padStart(4, "0") + ".js", function () {
        $("dash").textContent = "The data of " + key + " did not load (units/ missing?).";
      });
    }
    waiting[key].push(pick);
  }
  function route() {
    var m = /^#(neuron|feature|unit)-(\d+)$/.exec(location.hash), dash = $("dash");
    if (!m || !index) { dash.hidden = true; return; }
    var s = index.sides.findIndex(function (x) { return x.anchor === m[1]; });
    var unit = +m[2];
    if (s < 0 || unit >= index.sides[s].units.length) {
      dash.hidden = false;
      dash.textContent = "No unit " + m[1] + "-" + m[2] + " in this audit.";
      return;
    }
    dash.hidden = false;
    dash.textContent = "loading " + m[1] + "-" + m[2] + "\u2026";
    withUnit(m[1], unit, function (d) { renderDash(index.sides[s], m[1], d); dash.scrollIntoView(); });
  }
  window.addEventListener("hashchange", route);
  function panel(title, kids, id) {
    return el("div", { "class": "panel", id: id }, [el("h3", { text: title })].concat(kids));
  }
  function renderDash(side, prefix, d) {
    var dash = $("dash");
    dash.textContent = "";
    var name = prefix + "-" + d.unit;
    dash.setAttribute("data-unit", name);
    dash.appendChild(el("div", { "class": "dash-head" }, [
      el("h2", { text: side.kind.replace(/s$/, "") + " " + d.unit }),
      el("span", { "class": "badge cls-" + d["class"], text: d["class"] }),
      el("span", { "class": "dim", text: " density " + sig(d.density) + " \u00b7 max " + sig(d.max) +
        " \u00b7 " + side.source + " \u00b7 link: #" + name }),
      el("a", { href: "#units", "class": "close", text: "\u2190 index" }),
    ]));
    var grid = el("div", { "class": "dash-grid" });
    grid.appendChild(panel("Activation histogram", [histogram(d)], "p-hist"));
    grid.appendChild(panel("Concepts and decision", [conceptTable(d)], "p-concepts"));
    grid.appendChild(panel("Co-activating units", [neighbours(d.coactive, "shares of its top-k tokens")], "p-coactive"));
    if (d.nearest.length) grid.appendChild(panel("Nearest features (decoder cosine)", [neighbours(d.nearest, "cosine")], "p-nearest"));
    if (d.logits) grid.appendChild(panel("Logit effect (direction \u00b7 W_U, top 10)", [logits(d.logits)], "p-logits"));
    else if (side.logits_note) grid.appendChild(panel("Logit effect", [el("p", { "class": "dim", text: "none: " + side.logits_note })], "p-logits"));
    dash.appendChild(grid);
    var ex = el("div", { id: "p-examples" });
    d.bands.forEach(function (band, b) {
      ex.appendChild(el("h3", { text: index.bands[b] + " (" + band.length + ")" }));
      if (!band.length) ex.appendChild(el("p", { "class": "dim", text: "no tokens in this band" }));
      band.forEach(function (e) { ex.appendChild(example(e)); });
    });
    dash.appendChild(panel("Activating contexts (de-duplicated; shading: % of max)", [ex], "p-contexts"));
    dash.setAttribute("data-ms", performance.now().toFixed(0));
  }
  function histogram(d) {
    var W = 420, H = 150, L = 40, B = 30, ns = "http" + "://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    svg.setAttribute("width", W);
    var h = d.hist, top = 1;
    h.forEach(function (b) { top = Math.max(top, b[2]); });
    var lo = h.length ? Math.log2(h[0][0]) : 0, hi = h.length ? Math.log2(h[h.length - 1][1]) : 1;
    var x = function (v) { return L + (Math.log2(v) - lo) / Math.max(hi - lo, 1e-9) * (W - L - 10); };
    var y = function (c) { return H - B - Math.log10(c) / Math.log10(top * 1.5 + 1) * (H - B - 10); };
    function add(tag, a, text) {
      var e = document.createElementNS(ns, tag);
      for (var k in a) e.setAttribute(k, a[k]);
      if (text) e.textContent = text;
      svg.appendChild(e);
      return e;
    }
    h.forEach(function (b) {
      var r = add("rect", { x: x(b[0]), y: y(b[2]), width: Math.max(1, x(b[1]) - x(b[0]) - 0.5),
                            height: H - B - y(b[2]) + 0.01, fill: "#e6550d" });
      var t = document.createElementNS(ns, "title");
      t.textContent = "[" + sig(b[0]) + ", " + sig(b[1]) + "): " + b[2] + " tokens";
      r.appendChild(t);
    });
    add("line", { x1: L, x2: W - 10, y1: H - B, y2: H - B, stroke: "#444" });
    if (h.length) {
      add("text", { x: L, y: H - 12, "font-size": 11 }, sig(h[0][0]));
      add("text", { x: W - 10, y: H - 12, "font-size": 11, "text-anchor": "end" }, sig(h[h.length - 1][1]));
      add("text", { x: (L + W) / 2, y: H - 2, "font-size": 11, "text-anchor": "middle" }, "activation (log2 bins)");
    }
    add("text", { x: 4, y: 14, "font-size": 11 }, "tokens (log)");
    return el("div", {}, [svg, el("p", { "class": "dim", text: (h.length ? "" : "never > 0. ") +
      d.zero + " tokens at 0, " + d.negative + " below 0" })]);
  }
  function conceptTable(d) {
    var t = el("table", { "class": "scores" }, [el("thead", {}, [el("tr", {}, ["concept", "selectivity", "auroc",
      "topk", "iou", "support", "z", "decision"].map(function (h) { return el("th", { text: h }); }))])]);
    var body = el("tbody");
    d.scores.forEach(function (s) {
      body.appendChild(el("tr", { "class": s[7] === "pass" ? "pass" : "" }, [el("td", { text: index.concepts[s[0]] })]
        .concat(s.slice(1, 7).map(function (v) { return el("td", { "class": "num", text: sig(v) }); }))
        .concat([el("td", { text: s[7] === "pass" ? "pass" : "fails " + s[7].replace(/\+/g, ", ") })])));
    });
    t.appendChild(body);
    var passing = d.scores.filter(function (s) { return s[7] === "pass"; }).length;
    return el("div", {}, [el("p", { text: "Decision: " + d["class"] + " \u2014 " + passing +
      " concept(s) pass " + index.score + " \u2265 " + index.threshold + " and every test" +
      (d["class"] === "dead" ? " (never > 0)" : "") + "." }), t]);
  }
  function neighbours(list, what) {
    if (!list.length) return el("p", { "class": "dim", text: "none" });
    return el("ul", { "class": "nb" }, list.map(function (n) {
      return el("li", {}, [el("a", { href: "#" + n[0], text: n[0] }), " " + sig(n[1]) + " " + what]);
    }));
  }
  function logits(l) {
    function col(title, list) {
      return el("div", {}, [el("h4", { text: title })].concat(list.map(function (p) {
        return el("div", {}, [el("span", { "class": "tok", text: visible(p[0]) }), " " + sig(p[1])]);
      })));
    }
    return el("div", { "class": "logits" }, [col("promoted", l.pos), col("suppressed", l.neg)]);
  }
  function example(e) {
    var div = el("div", { "class": "ex" }, [el("span", { "class": "act", text: sig(e[0]) })]);
    e[1].forEach(function (tok, i) {
      // WordPiece (BERT): a space before each word, `##` pieces joined to the word they continue.
      if (index.wordpiece) {
        if (tok.length > 2 && tok.slice(0, 2) === "##") tok = tok.slice(2);
        else if (i > 0) div.appendChild(document.createTextNode(" "));
      }
      var p = e[2][i], a = Math.min(1, Math.abs(p) / 100);
      var bg = p >= 0 ? "rgba(230,85,13," + a.toFixed(2) + ")" : "rgba(49,130,189," + a.toFixed(2) + ")";
      var s = el("span", { "class": i === e[3] ? "tok focus" : "tok", title: p + "% of max", style: "background:" + bg,
                           text: visible(tok) });
      div.appendChild(s);
    });
    if (e[4].length) div.appendChild(el("span", { "class": "dim", text: " [" + e[4].map(function (c) { return index.concepts[c]; }).join(", ") + "]" }));
    return div;
  }
  document.addEventListener("DOMContentLoaded", function () {
    setupIndex();
    load("units/index.js", function () {
      $("index-count").textContent = "No unit data (units/index.js) beside this page.";
    });
  });
})();
