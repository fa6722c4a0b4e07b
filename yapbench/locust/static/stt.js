// yapbench's STT tab, beyond the table Locust renders from `extended_stats`: live charts and this process's runs.
// Plain DOM and SVG (no library, nothing fetched from elsewhere), redrawn every 2 s while the STT tab is open.
(function () {
  "use strict";
  const PERIOD_MS = 2000;
  const COLORS = ["#1f77b4", "#ff7f0e", "#d62728", "#2ca02c"];
  const CHARTS = [
    {id: "first_word", title: "first word (ms)", series: [["first_word_ms_p50", "p50"], ["first_word_ms_p95", "p95"], ["first_word_ms_p99", "p99"]]},
    {id: "word_lag", title: "word lag (ms)", series: [["word_lag_ms_p50", "p50"], ["word_lag_ms_p95", "p95"], ["word_lag_ms_p99", "p99"]]},
    {id: "streams", title: "active streams / servers' used slots", series: [["active_streams", "active streams"], ["used_slots", "used slots"]]},
    {id: "rejections", title: "rejections per second", series: [["rejections_per_s", "rejected/s"]]},
    {id: "send_lag", title: "generator send lag (ms)", series: [["send_lag_ms_p50", "p50"], ["send_lag_ms_p99", "p99"], ["send_lag_ms_max", "max"]]},
  ];
  const SVG = "http://www.w3.org/2000/svg";
  const base = new URL(".", document.currentScript.src).href.replace(/stt\/$/, "");

  function el(tag, attrs, text) {
    const e = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function sttTabOpen() {
    return new URLSearchParams(window.location.search).get("tab") === "stt";
  }

  function panel() {
    let p = document.getElementById("yapbench-stt");
    if (p) return p;
    const table = document.querySelector(".MuiTableContainer-root");
    if (!table) return null;
    p = el("div", {id: "yapbench-stt", style: "margin: 16px 0; font-family: sans-serif; font-size: 13px"});
    p.appendChild(el("div", {id: "yapbench-charts", style: "display: flex; flex-wrap: wrap; gap: 12px"}));
    p.appendChild(el("h3", {style: "margin: 16px 0 4px"}, "Runs of this process"));
    p.appendChild(el("table", {id: "yapbench-runs", style: "border-collapse: collapse"}));
    table.parentNode.insertBefore(p, table);
    return p;
  }

  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    return [1, 2, 5, 10].map(m => m * p).find(x => x >= v);
  }

  function drawChart(spec, points) {
    const W = 420, H = 180, L = 48, R = 8, T = 22, B = 22;
    const svg = el("svg:svg", {width: W, height: H, "data-chart": spec.id, style: "background: #fff; border: 1px solid #ccc"});
    svg.appendChild(el("svg:text", {x: L, y: 15, "font-size": 12, fill: "#000"}, spec.title));
    const t0 = points.length ? points[0].t : 0, t1 = points.length ? points[points.length - 1].t : 1;
    let ymax = 0;
    for (const [key] of spec.series) for (const p of points) if (p[key] != null) ymax = Math.max(ymax, p[key]);
    ymax = niceMax(ymax);
    const x = t => L + (W - L - R) * (t1 > t0 ? (t - t0) / (t1 - t0) : 0);
    const y = v => H - B - (H - T - B) * v / ymax;
    svg.appendChild(el("svg:line", {x1: L, y1: y(0), x2: W - R, y2: y(0), stroke: "#888"}));
    svg.appendChild(el("svg:text", {x: L - 4, y: y(ymax) + 4, "text-anchor": "end", "font-size": 10, fill: "#000"}, String(ymax)));
    svg.appendChild(el("svg:text", {x: L - 4, y: y(0), "text-anchor": "end", "font-size": 10, fill: "#000"}, "0"));
    svg.appendChild(el("svg:text", {x: W - R, y: H - 6, "text-anchor": "end", "font-size": 10, fill: "#000"}, Math.round(t1) + " s"));
    spec.series.forEach(([key, label], i) => {
      // A missing value (no data in that interval, or a server that did not answer its poll) breaks the line.
      let d = "", pen = "M";
      for (const p of points) {
        if (p[key] == null) { pen = "M"; continue; }
        d += pen + x(p.t).toFixed(1) + "," + y(p[key]).toFixed(1) + " ";
        pen = "L";
      }
      svg.appendChild(el("svg:path", {d: d, fill: "none", stroke: COLORS[i], "stroke-width": 1.5, "data-series": key}));
      svg.appendChild(el("svg:text", {x: L + 8 + 90 * i, y: T + 10, "font-size": 10, fill: COLORS[i]}, label));
    });
    return svg;
  }

  function drawRuns(table, runs) {
    table.replaceChildren();
    const head = el("tr");
    for (const h of ["#", "run", "started", "ended", "verdict", "report"]) head.appendChild(el("th", {style: "text-align: left; padding: 2px 10px"}, h));
    table.appendChild(head);
    for (const r of runs) {
      const row = el("tr", {"data-run": String(r.number)});
      const cell = v => { const c = el("td", {style: "padding: 2px 10px"}, v); row.appendChild(c); return c; };
      cell(String(r.number));
      cell(r.run_id);
      cell(new Date(r.started_at * 1000).toLocaleTimeString());
      cell(r.ended_at ? new Date(r.ended_at * 1000).toLocaleTimeString() : "running");
      cell(r.exit_code == null ? "" : (r.exit_code === 0 ? "pass" : "exit " + r.exit_code));
      const c = cell("");
      if (r.report) c.appendChild(el("a", {href: base + r.report, target: "_blank"}, "report"));
      else if (r.ended_at) c.textContent = "building...";
      table.appendChild(row);
    }
  }

  async function refresh() {
    if (!sttTabOpen()) return;
    const p = panel();
    if (!p) return;
    try {
      const [chart, runs] = await Promise.all([
        fetch(base + "stt/chart").then(r => r.json()),
        fetch(base + "stt/runs").then(r => r.json()),
      ]);
      const charts = p.querySelector("#yapbench-charts");
      charts.replaceChildren(...CHARTS.map(spec => drawChart(spec, chart.points)));
      drawRuns(p.querySelector("#yapbench-runs"), runs.runs);
    } catch (e) {
      console.warn("yapbench STT tab:", e);
    }
  }

  setInterval(refresh, PERIOD_MS);
  setTimeout(refresh, 300);
})();
