// The reports' chart runtime, run in the browser after chart.js (the global `Chart`): it reads the
// chart specs that `report/page.ts` embeds as JSON (`#deft-charts`), turns each axis's `deftUnit`
// into tick and tooltip formatters, marks failed cases with a red ✗ (never drawn as fast), draws
// dashed reference lines, and creates the charts. Inlined into every page as text and allowed by
// its hash in the page's content security policy.

(() => {
  "use strict";
  const sig = (x) => {
    const a = Math.abs(x);
    return a >= 100 ? x.toFixed(0) : a >= 10 ? x.toFixed(1) : x.toFixed(2);
  };
  const si = (v, unit) => {
    if (!isFinite(v)) return String(v);
    const p = ["", "k", "M", "G", "T", "P", "E"];
    let i = 0;
    while (Math.abs(v) >= 1000 && i < p.length - 1) {
      v /= 1000;
      i++;
    }
    return sig(v) + " " + p[i] + unit;
  };
  const F = {
    ns: (v) => {
      const a = Math.abs(v);
      return a >= 1e9
        ? sig(v / 1e9) + " s"
        : a >= 1e6
        ? sig(v / 1e6) + " ms"
        : a >= 1e3
        ? sig(v / 1e3) + " µs"
        : sig(v) + " ns";
    },
    bytes: (v) => si(v, "B"),
    ratio: (v) => sig(v) + "×",
    flops: (v) => si(v, "FLOP/s"),
    intensity: (v) => sig(v) + " FLOP/B",
    plain: (v) => String(v),
  };
  const nice = (v) => {
    if (!(v > 0)) return false;
    const m = v / Math.pow(10, Math.floor(Math.log10(v) + 1e-9));
    return [1, 2, 5].some((k) => Math.abs(m - k) < 1e-6);
  };
  function hydrateAxis(ax) {
    const f = F[ax.deftUnit];
    if (!f || ax.deftUnit === "plain") return;
    const log = ax.type === "logarithmic";
    ax.ticks = Object.assign({}, ax.ticks, {
      callback: (v) => (log && !nice(Number(v))) ? "" : f(Number(v)),
    });
  }
  const failedMarks = {
    id: "deftFailed",
    afterDatasetsDraw(chart) {
      const ctx = chart.ctx, area = chart.chartArea;
      ctx.save();
      ctx.fillStyle = "#c62828";
      ctx.textAlign = "center";
      ctx.textBaseline = "bottom";
      ctx.font = "bold 13px system-ui, sans-serif";
      chart.data.datasets.forEach((ds, di) => {
        if (!ds.deftStatus || !chart.isDatasetVisible(di)) return;
        const meta = chart.getDatasetMeta(di);
        ds.deftStatus.forEach((st, i) => {
          if (st === "ok" || st === "missing") return;
          const el = meta.data[i];
          if (chart.options.indexAxis === "y") {
            if (el && isFinite(el.y)) {
              ctx.textBaseline = "middle";
              ctx.textAlign = "left";
              ctx.fillText("✗ " + st, area.left + 4, el.y);
            }
            return;
          }
          if (!el || !isFinite(el.x)) return;
          ctx.fillText("✗", el.x, area.bottom - 2);
        });
      });
      ctx.restore();
    },
  };
  const refLine = {
    id: "deftRefLine",
    afterDatasetsDraw(chart, _args, opts) {
      if (!opts || typeof opts.value !== "number") return;
      const y = chart.scales.y.getPixelForValue(opts.value), area = chart.chartArea;
      if (!(y >= area.top && y <= area.bottom)) return;
      const ctx = chart.ctx;
      ctx.save();
      ctx.strokeStyle = "#444";
      ctx.setLineDash([6, 4]);
      ctx.beginPath();
      ctx.moveTo(area.left, y);
      ctx.lineTo(area.right, y);
      ctx.stroke();
      if (opts.label) {
        ctx.fillStyle = "#444";
        ctx.font = "11px system-ui, sans-serif";
        ctx.textAlign = "right";
        ctx.fillText(opts.label, area.right - 4, y - 4);
      }
      ctx.restore();
    },
  };
  function tooltipUnit(cfg) {
    const y = (cfg.options.scales || {}).y || {}, x = (cfg.options.scales || {}).x || {};
    const fy = F[y.deftUnit], fx = F[x.deftUnit];
    const horizontal = cfg.options.indexAxis === "y";
    return (item) => {
      const raw = item.raw, lab = item.dataset.label || "";
      if (raw && typeof raw === "object" && "x" in raw) {
        const ex = raw.deftLabel ? raw.deftLabel + ": " : "";
        return lab + ": " + ex + (fx ? fx(raw.x) : raw.x) + ", " + (fy ? fy(raw.y) : raw.y);
      }
      const f = horizontal ? fx : fy;
      return lab + ": " + (f ? f(Number(item.raw)) : item.formattedValue);
    };
  }
  Chart.defaults.font.family = "system-ui, -apple-system, 'Segoe UI', sans-serif";
  Chart.defaults.animation = false;
  const specs = JSON.parse(document.getElementById("deft-charts").textContent);
  for (const spec of specs) {
    const canvas = document.getElementById(spec.id);
    if (!canvas) continue;
    const cfg = spec.config;
    cfg.options = cfg.options || {};
    cfg.options.responsive = true;
    cfg.options.maintainAspectRatio = false;
    cfg.options.animation = false;
    for (const ax of Object.values(cfg.options.scales || {})) hydrateAxis(ax);
    cfg.options.plugins = cfg.options.plugins || {};
    cfg.options.plugins.tooltip = Object.assign({}, cfg.options.plugins.tooltip, {
      callbacks: { label: tooltipUnit(cfg) },
    });
    cfg.plugins = [failedMarks, refLine];
    new Chart(canvas, cfg);
  }
})();
