"""The report page's static parts: CSS, the help text and the script (no network, no CDN, no user data here).

User data reaches the page only as JSON in ``<script type="application/json">`` and is put on screen with
``textContent`` / ``new Option`` — never as HTML.
"""

from .style import BODY, CSS, HELP  # noqa: F401 - the page's static parts, imported from here by build

SCRIPT = r"""
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("attrkit-data").textContent);
  var $ = function (id) { return document.getElementById(id); };
  var KEYS = ["sample", "method", "target", "layer"];
  var state = { sample: 0, method: null, target: null, layer: null, map: -1 };

  // arrays arrive packed (attrkit.html_report.encode.packed): base64 of zlib of float32 byte planes (or uint8)
  function inflate(p) {
    var bin = atob(p.z), z = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) z[i] = bin.charCodeAt(i);
    var stream = new Blob([z]).stream().pipeThrough(new DecompressionStream("deflate"));
    return new Response(stream).arrayBuffer().then(function (buf) {
      var b = new Uint8Array(buf);
      if (p.t === "u8") return b;
      var n = p.n, out = new Uint8Array(4 * n);
      for (var k = 0; k < 4; k++) for (var j = 0; j < n; j++) out[4 * j + k] = b[k * n + j];
      return new Float32Array(out.buffer);
    });
  }
  function unpackAll() {
    var jobs = [];
    D.maps.forEach(function (m) {
      ["values", "edges", "raw"].forEach(function (f) {
        if (m[f] && m[f].z !== undefined) jobs.push(inflate(m[f]).then(function (a) { m[f] = a; }));
      });
    });
    return Promise.all(jobs);
  }
  // a layer map enlarged to the image as torch's bilinear interpolation (align_corners=False) does it
  function enlarge(raw, lh, lw, h, w) {
    var out = new Float32Array(h * w), sy = lh / h, sx = lw / w;
    for (var y = 0; y < h; y++) {
      var fy = Math.max((y + 0.5) * sy - 0.5, 0), y0 = Math.floor(fy), y1 = Math.min(y0 + 1, lh - 1), ly = fy - y0;
      for (var x = 0; x < w; x++) {
        var fx = Math.max((x + 0.5) * sx - 0.5, 0), x0 = Math.floor(fx), x1 = Math.min(x0 + 1, lw - 1), lx = fx - x0;
        out[y * w + x] = (1 - ly) * ((1 - lx) * raw[y0 * lw + x0] + lx * raw[y0 * lw + x1]) +
                         ly * ((1 - lx) * raw[y1 * lw + x0] + lx * raw[y1 * lw + x1]);
      }
    }
    return out;
  }
  function values(i) {
    var m = D.maps[i];
    if (!m.values) m.values = enlarge(m.raw, m.lh, m.lw, m.h, m.w);
    return m.values;
  }
  function fmt(v) {
    if (v === null || v === undefined || isNaN(v)) return String(v);
    var a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(3);
    return Number(v.toPrecision(4)).toString();
  }
  function text(el, s) { el.textContent = s; return el; }
  function el(tag, s, cls) { var e = document.createElement(tag); if (s !== undefined) e.textContent = s; if (cls) e.className = cls; return e; }

  function transform(v, mode) {
    if (mode === "positive") return v > 0 ? v : 0;
    if (mode === "negative") return v < 0 ? v : 0;
    if (mode === "absolute") return Math.abs(v);
    return v;
  }
  // numpy's default (linear) percentile of |v| after the mode; 1 for an all-zero map (as attrkit.viz.colors)
  function scaleFor(vals, mode, clip) {
    var n = vals.length, a = new Float64Array(n), mx = 0;
    for (var i = 0; i < n; i++) { var t = Math.abs(transform(vals[i], mode)); a[i] = isFinite(t) ? t : 0; if (a[i] > mx) mx = a[i]; }
    a.sort();
    var s = 0;
    if (n) { var pos = (n - 1) * clip / 100, lo = Math.floor(pos), hi = Math.ceil(pos); s = a[lo] + (a[hi] - a[lo]) * (pos - lo); }
    if (!(s > 0)) s = mx;
    if (!(s > 0) || !isFinite(s)) s = 1;
    return s;
  }
  var RED = [214, 23, 28], BLUE = [33, 84, 204], MAG = [89, 13, 115];
  function colour(v, s, mode) {
    var t = transform(v, mode), a = Math.min(Math.abs(t) / s, 1);
    var c = mode === "absolute" ? MAG : (t >= 0 ? RED : BLUE);
    return [c[0], c[1], c[2], Math.round(a * 255)];
  }

  // ---------------------------------------------------------------- pickers
  function mapsOf(sample) { return D.maps.map(function (m, i) { return i; }).filter(function (i) { return D.maps[i].sample === sample; }); }
  function distinct(ids, key) {
    var out = [];
    ids.forEach(function (i) { var v = D.maps[i][key]; if (out.indexOf(v) < 0) out.push(v); });
    return out;
  }
  function fill(select, vals, labels, current) {
    select.innerHTML = "";
    vals.forEach(function (v, k) { var o = new Option(labels ? labels[k] : String(v), String(v)); select.add(o); });
    select.value = String(current);
  }
  // the map that has `key = value` and agrees with as many other current choices as possible
  function best(key, value) {
    var sample = key === "sample" ? value : state.sample, bestI = -1, bestScore = -1;
    var weight = { method: 4, target: 2, layer: 1 };
    mapsOf(sample).forEach(function (i) {
      var m = D.maps[i];
      if (key !== "sample" && m[key] !== value) return;
      var sc = 0;
      ["method", "target", "layer"].forEach(function (k) { if (k !== key && m[k] === state[k]) sc += weight[k]; });
      if (sc > bestScore) { bestScore = sc; bestI = i; }
    });
    return bestI;
  }
  function choose(i) {
    var m = D.maps[i];
    state.map = i; state.sample = m.sample; state.method = m.method; state.target = m.target; state.layer = m.layer;
    var ids = mapsOf(state.sample);
    fill($("pick-sample"), D.samples.map(function (s, k) { return k; }), D.samples.map(function (s) { return s.name; }), state.sample);
    fill($("pick-method"), distinct(ids, "method"), null, state.method);
    fill($("pick-target"), distinct(ids, "target"), null, state.target);
    fill($("pick-layer"), distinct(ids, "layer"), null, state.layer);
    draw();
  }
  function picked(key) {
    var raw = $("pick-" + key).value, value = key === "sample" ? parseInt(raw, 10) : raw;
    var i = best(key, value);
    if (i >= 0) choose(i);
  }

  // ---------------------------------------------------------------- drawing
  var current = null;   // what the mouse reads: {kind, vals, w, h, s, bars}
  var drawToken = 0;    // a grey image that loads after the next draw() must not paint
  function draw() {
    var m = D.maps[state.map], smp = D.samples[m.sample];
    var mode = $("mode").value, clip = D.clip, vals = values(state.map), s = scaleFor(vals, mode, clip);
    $("viewer").setAttribute("data-map", String(state.map));
    var ends = { signed: [-s, s], positive: [0, s], absolute: [0, s], negative: [-s, 0] }[mode];
    text($("cb-min"), fmt(ends[0]) + (mode === "signed" ? "  lowers" : ""));
    text($("cb-mid"), mode === "signed" ? "0" : "");
    text($("cb-max"), fmt(ends[1]) + (mode === "signed" ? "  raises" : ""));
    var ramp = { signed: "linear-gradient(to right, var(--blue), rgba(255,255,255,0) 50%, var(--red))",
                 positive: "linear-gradient(to right, rgba(255,255,255,0), var(--red))",
                 negative: "linear-gradient(to right, var(--blue), rgba(255,255,255,0))",
                 absolute: "linear-gradient(to right, rgba(255,255,255,0), rgb(89,13,115))" }[mode];
    $("ramp").style.background = ramp;
    var where = !m.at_layer ? (m.layer === "pixels" ? "at the input pixels" : m.layer === "input" ? "at the input" :
      "from layer " + m.layer + ", at the input's resolution") : "at layer " + m.layer + " (enlarged from " + m.lh + "×" + m.lw + ")";
    text($("map-cap"), m.method + " for “" + m.target + "” " + where);
    text($("value"), m.kind === "table" ? "hover over a bar to read its value" : "hover over the map to read its value");
    drawInput(smp);
    ["ctl-background", "ctl-opacity", "ctl-edges"].forEach(function (id) { $(id).classList.toggle("off", m.kind === "table"); });
    $("ctl-edges").classList.toggle("off", m.kind === "table" || !m.edges);
    if (m.kind === "table") drawBars(m, smp, vals, s, mode); else drawMap(m, smp, vals, s, mode);
    drawSide(m, smp);
  }
  function drawInput(smp) {
    var box = $("input-box"); box.innerHTML = "";
    if (smp.image) {
      var img = el("img"); img.src = smp.image; img.alt = "input image"; img.id = "input-img"; box.appendChild(img);
    } else if (smp.features) {
      var t = el("table"); var hr = el("tr"); hr.appendChild(el("th", "feature")); hr.appendChild(el("th", "value")); t.appendChild(hr);
      smp.features.forEach(function (v, k) {
        var r = el("tr"); r.appendChild(el("td", smp.feature_names[k]));
        r.appendChild(el("td", fmt(v), "num")); t.appendChild(r);
      });
      box.appendChild(t);
    } else { box.appendChild(el("div", "(no input stored)", "na")); }
    text($("input-cap"), smp.name + (smp.predicted !== null ? " — the model says “" + smp.predicted + "”" : ""));
  }
  function drawMap(m, smp, vals, s, mode) {
    $("stack").style.display = ""; $("bars").style.display = "none"; $("map-box").classList.remove("wide");
    var w = m.w, h = m.h, base = $("base"), heat = $("heat");
    [base, heat].forEach(function (c) { c.width = w; c.height = h; });
    var ctx = heat.getContext("2d"), img = ctx.createImageData(w, h), px = img.data;
    var edges = m.edges || null;
    for (var i = 0; i < w * h; i++) {
      var c = colour(vals[i], s, mode);
      if (edges && edges[i] && $("edges").checked) c = [38, 38, 38, 220];
      px[4 * i] = c[0]; px[4 * i + 1] = c[1]; px[4 * i + 2] = c[2]; px[4 * i + 3] = c[3];
    }
    ctx.putImageData(img, 0, 0);
    var bg = $("background").value, showImg = bg === "grey" || (bg === "auto" && (m.at_layer || m.over_grey));
    var bctx = base.getContext("2d");
    bctx.fillStyle = "#fff"; bctx.fillRect(0, 0, w, h);
    var token = ++drawToken;
    if (showImg && smp.grey) {
      var gi = new Image();
      gi.onload = function () { if (token === drawToken) bctx.drawImage(gi, 0, 0, w, h); };
      gi.src = smp.grey;
    }
    heat.style.opacity = showImg ? String($("opacity").value / 100) : "1";
    current = { kind: "image", vals: vals, w: w, h: h, s: s, m: m };
  }
  function drawBars(m, smp, vals, s, mode) {
    $("stack").style.display = "none"; $("map-box").classList.add("wide");
    var c = $("bars"); c.style.display = "";
    var n = vals.length, order = [];
    for (var i = 0; i < n; i++) order.push(i);
    order.sort(function (a, b) { return Math.abs(vals[b]) - Math.abs(vals[a]); });
    order = order.slice(0, 25);
    var rowH = 20, W = 640, left = 210, H = rowH * order.length + 30;
    c.width = W; c.height = H;
    var ctx = c.getContext("2d"), mid = left + (W - left - 20) / 2, half = (W - left - 30) / 2;
    ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, W, H);
    ctx.font = "12px system-ui, sans-serif"; ctx.textBaseline = "middle";
    var bars = [];
    order.forEach(function (j, r) {
      var v = transform(vals[j], mode), len = Math.min(Math.abs(v) / s, 1) * half, y = 8 + r * rowH;
      var col = mode === "absolute" ? MAG : (v >= 0 ? RED : BLUE);
      ctx.fillStyle = "rgb(" + col.join(",") + ")";
      var x0 = v >= 0 || mode === "absolute" ? mid : mid - len;
      ctx.fillRect(x0, y + 2, Math.max(len, 0.5), rowH - 5);
      ctx.fillStyle = "#1d2327";
      var name = smp.feature_names[j];
      ctx.textAlign = "right"; ctx.fillText(name.length > 30 ? name.slice(0, 29) + "…" : name, left - 8, y + rowH / 2);
      bars.push({ y0: y, y1: y + rowH, j: j });
    });
    ctx.strokeStyle = "#888"; ctx.beginPath(); ctx.moveTo(mid, 4); ctx.lineTo(mid, H - 20); ctx.stroke();
    ctx.textAlign = "center"; ctx.fillStyle = "#5f6b73";
    ctx.fillText("← lowers the score   raises it →", mid, H - 10);
    current = { kind: "table", vals: vals, bars: bars, m: m, names: smp.feature_names };
  }
  function drawSide(m, smp) {
    var p = $("pred"); p.innerHTML = "";
    if (smp.top && smp.top.length) {
      var hr = el("tr"); hr.appendChild(el("th", "class")); hr.appendChild(el("th", smp.top_kind)); p.appendChild(hr);
      smp.top.forEach(function (t) { var r = el("tr"); r.appendChild(el("td", t[0])); r.appendChild(el("td", fmt(t[1]), "num")); p.appendChild(r); });
    }
    var t = $("info"); t.innerHTML = "";
    var rows = [["target output", m.output], ["target probability", m.prob]].filter(function (r) { return r[1] !== null; });
    rows.concat(m.info).forEach(function (kv) {
      var r = el("tr"); r.appendChild(el("td", kv[0]));
      r.appendChild(el("td", typeof kv[1] === "number" ? fmt(kv[1]) : String(kv[1]), typeof kv[1] === "number" ? "num" : ""));
      t.appendChild(r);
    });
  }
  function hover(ev) {
    if (!current) return;
    var c = ev.currentTarget, r = c.getBoundingClientRect();
    if (current.kind === "image") {
      var x = Math.floor((ev.clientX - r.left) / r.width * current.w), y = Math.floor((ev.clientY - r.top) / r.height * current.h);
      if (x < 0 || y < 0 || x >= current.w || y >= current.h) return;
      var v = current.vals[y * current.w + x], m = current.m, s = "value at (x=" + x + ", y=" + y + "): " + fmt(v);
      if (m.raw) {
        var raw = m.raw;
        var cx = Math.min(Math.floor(x / current.w * m.lw), m.lw - 1), cy = Math.min(Math.floor(y / current.h * m.lh), m.lh - 1);
        s += "\nlayer cell (" + cx + ", " + cy + "): " + fmt(raw[cy * m.lw + cx]);
      }
      $("value").setAttribute("data-value", String(v));
      text($("value"), s);
    } else {
      var yy = (ev.clientY - r.top) / r.height * c.height;
      current.bars.forEach(function (b) {
        if (yy >= b.y0 && yy < b.y1) {
          var name = current.names[b.j];
          $("value").setAttribute("data-value", String(current.vals[b.j]));
          text($("value"), name + ": " + fmt(current.vals[b.j]));
        }
      });
    }
  }

  // ---------------------------------------------------------------- static sections
  function tables() {
    var box = $("tables");
    if (!D.tables.length) { box.style.display = "none"; return; }
    box.appendChild(el("h2", "Evaluation"));
    D.tables.forEach(function (tb) {
      box.appendChild(el("h3", tb.title));
      if (tb.note) box.appendChild(el("p", tb.note, "help"));
      var t = el("table"), hr = el("tr");
      tb.columns.forEach(function (c) { hr.appendChild(el("th", c)); }); t.appendChild(hr);
      tb.rows.forEach(function (row) {
        var r = el("tr");
        row.forEach(function (v) { r.appendChild(el("td", typeof v === "number" ? fmt(v) : String(v), typeof v === "number" ? "num" : "")); });
        t.appendChild(r);
      });
      var sc = el("div", undefined, "scroll"); sc.appendChild(t); box.appendChild(sc);   // wide tables scroll
    });
  }
  function figures() {
    var box = $("figures");
    if (!D.figures.length) { box.style.display = "none"; return; }
    box.appendChild(el("h2", "Figures"));
    var wrap = el("div", undefined, "figs");
    D.figures.forEach(function (f) {
      var fig = el("figure"), img = el("img"); img.alt = f.title;
      // a wide figure is never shrunk below 640 px (it scrolls in its box instead); a click shows it at full size
      img.onload = function () { img.style.minWidth = Math.min(img.naturalWidth, 640) + "px"; };
      img.addEventListener("click", function () { img.classList.toggle("full"); });
      img.src = f.src; fig.appendChild(img);
      fig.appendChild(el("figcaption", f.title)); wrap.appendChild(fig);
    });
    box.appendChild(wrap);
  }
  function notes() {
    var box = $("notes");
    D.notes.forEach(function (n) { box.appendChild(el("p", n, "help")); });
  }

  text($("subtitle"), D.subtitle);
  tables(); figures(); notes();
  if (!D.maps.length) { $("viewer").innerHTML = ""; $("viewer").appendChild(el("div", "No attribution maps in this report.", "empty")); document.body.setAttribute("data-ready", "1"); return; }
  if (typeof DecompressionStream === "undefined") {
    $("viewer").innerHTML = "";
    $("viewer").appendChild(el("div", "This browser cannot unpack the maps (it needs DecompressionStream: Chrome 80+, " +
                               "Firefox 113+, Safari 16.4+). The tables and figures below are complete.", "empty"));
    return;
  }
  unpackAll().then(function () {
    KEYS.forEach(function (k) { $("pick-" + k).addEventListener("change", function () { picked(k); }); });
    ["mode", "background", "edges"].forEach(function (k) { $(k).addEventListener("change", draw); });
    $("opacity").addEventListener("input", function () { text($("opacity-value"), $("opacity").value + "%"); draw(); });
    $("heat").addEventListener("mousemove", hover);
    $("bars").addEventListener("mousemove", hover);
    choose(0);
    document.body.setAttribute("data-ready", "1");
  }, function (err) {
    $("viewer").innerHTML = "";
    $("viewer").appendChild(el("div", "The maps could not be unpacked: " + err, "empty"));
  });
})();
"""
