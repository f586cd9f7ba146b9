"""Interactive 3-D loss surfaces for the findings page, from the ``slice_2d`` and
``trajectory_projection`` tables only.

One viewer per page: a surface of log₁₀ loss over a run's plane (random, PCA or Hessian), the
trained point at the origin, and on the PCA plane the training trajectory projected onto the
plane (its height is each snapshot's actual loss, not the loss of its projection, which the
table does not hold). The reader picks the run, the plane and the split, rotates and zooms, and
reads α, β and the loss off the hover label. Plotly.js (the ``plotly`` package's bundled copy)
is embedded once, so the page opens offline; all surfaces share one WebGL context (a browser
keeps only about 16 alive, fewer than a study's runs × planes).

The page's script records on ``<body>`` how many surfaces rendered (``data-surfaces-rendered``
of ``data-surfaces-total``); opened with ``#check-surfaces`` it renders every one in turn, which
is how the browser test checks them all.
"""

from __future__ import annotations

import html
import json
import math

import numpy as np
import pandas as pd

AXES = {"random": ("α (direction 1, filter-normalised)", "β (direction 2)"),
        "pca": ("α (PC 1 of the trajectory)", "β (PC 2)"),
        "hessian": ("α (along v₁, top Hessian eigenvector)", "β (along v₂)")}

VIEWER = """
(() => {
  const data = JSON.parse(document.getElementById('surface-data').textContent);
  const pick = {run: document.getElementById('surface-run'),
                plane: document.getElementById('surface-plane'),
                split: document.getElementById('surface-split')};
  const key = () => pick.run.value + '|' + pick.plane.value + '|' + pick.split.value;
  const byKey = Object.fromEntries(data.map(d => [d.run + '|' + d.plane + '|' + d.split, d]));
  let rendered = new Set();
  document.body.dataset.surfacesTotal = String(data.length);
  document.body.dataset.surfacesRendered = '0';
  function figure(d) {
    const hover = 'α %{x:.3g}<br>β %{y:.3g}<br>loss %{customdata:.4g}<extra></extra>';
    const traces = [{type: 'surface', x: d.alpha, y: d.beta, z: d.z, customdata: d.loss,
                     colorscale: 'Viridis', hovertemplate: hover,
                     colorbar: {title: {text: 'log₁₀ loss'}}, name: 'surface'}];
    traces.push({type: 'scatter3d', mode: 'markers', x: [0], y: [0], z: [d.trained_z],
                 customdata: [d.trained_loss], marker: {size: 5, color: '#d62728'},
                 name: 'trained weights', hovertemplate: 'trained weights<br>' + hover});
    if (d.path) {
      traces.push({type: 'scatter3d', mode: 'lines+markers', x: d.path.alpha, y: d.path.beta,
                   z: d.path.z, customdata: d.path.loss, text: d.path.step,
                   line: {color: '#ff7f0e', width: 4}, marker: {size: 3, color: '#ff7f0e'},
                   name: 'trajectory (actual loss of each snapshot)',
                   hovertemplate: 'step %{text}<br>' + hover});
    }
    const layout = {margin: {l: 0, r: 0, t: 30, b: 0}, showlegend: true,
                    legend: {x: 0, y: 1}, title: {text: d.title, font: {size: 14}},
                    scene: {xaxis: {title: {text: d.xlabel}}, yaxis: {title: {text: d.ylabel}},
                            zaxis: {title: {text: 'log₁₀ loss'}}}};
    return [traces, layout];
  }
  function show(k) {
    const d = byKey[k];
    if (!d) return Promise.resolve();
    const [traces, layout] = figure(d);
    return Plotly.react('surface-plot', traces, layout, {responsive: true}).then(() => {
      if (document.querySelector('#surface-plot canvas')) rendered.add(k);
      document.body.dataset.surfacesRendered = String(rendered.size);
    });
  }
  function planes() {  // the planes the chosen run has
    const have = new Set(data.filter(d => d.run === pick.run.value).map(d => d.plane));
    for (const o of pick.plane.options) o.disabled = !have.has(o.value);
    if (!have.has(pick.plane.value)) pick.plane.value = [...have][0];
  }
  pick.run.addEventListener('change', () => { planes(); show(key()); });
  pick.plane.addEventListener('change', () => show(key()));
  pick.split.addEventListener('change', () => show(key()));
  planes();
  let chain = show(key());
  if (location.hash === '#check-surfaces') {
    for (const d of data) chain = chain.then(() => show(d.run + '|' + d.plane + '|' + d.split));
    chain = chain.then(() => show(key()));
  }
  chain.catch(e => { document.body.dataset.surfacesError = String(e); });
})();
"""


def _log10(values: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(values > 0, np.log10(values), np.nan)


def _json_list(a: np.ndarray):
    """Nested lists with NaN/inf as null (JSON has no NaN)."""
    return [_json_list(r) for r in a] if a.ndim > 1 else \
        [float(v) if math.isfinite(v) else None for v in a]


def surface_data(slice_2d: pd.DataFrame, trajectory: pd.DataFrame | None = None
                 ) -> list[dict]:
    """One record per (run, plane, split) of ``slice_2d``: the α and β grids, loss[β][α] and its
    log₁₀, the trained point (α = β = 0) and, on the pca plane, the projected trajectory."""
    out = []
    if slice_2d is None or slice_2d.empty:
        return out
    for (run, plane, split), g in slice_2d.groupby(["run", "plane", "split"], sort=True):
        grid = g.pivot_table(index="beta", columns="alpha", values="loss", aggfunc="first")
        loss = grid.to_numpy(dtype=np.float64)
        alpha = grid.columns.to_numpy(dtype=np.float64)
        beta = grid.index.to_numpy(dtype=np.float64)
        i, j = np.argmin(np.abs(beta)), np.argmin(np.abs(alpha))
        trained = float(loss[i, j]) if abs(alpha[j]) < 1e-12 and abs(beta[i]) < 1e-12 \
            else math.nan
        xlabel, ylabel = AXES.get(plane, ("α", "β"))
        rec = {"run": run, "plane": plane, "split": split, "alpha": _json_list(alpha),
               "beta": _json_list(beta), "loss": _json_list(loss),
               "z": _json_list(_log10(loss)), "trained_loss": _json_list(np.array([trained]))[0],
               "trained_z": _json_list(_log10(np.array([trained])))[0],
               "xlabel": xlabel, "ylabel": ylabel,
               "title": f"{run}: {plane} plane, {split} loss", "path": None}
        if plane == "pca" and trajectory is not None and not trajectory.empty:
            t = trajectory[(trajectory["run"] == run) & (trajectory["split"] == split)]
            t = t.sort_values("snapshot")
            if len(t):
                lv = t["loss"].to_numpy(dtype=np.float64)
                rec["path"] = {"alpha": _json_list(t["alpha"].to_numpy(np.float64)),
                               "beta": _json_list(t["beta"].to_numpy(np.float64)),
                               "loss": _json_list(lv), "z": _json_list(_log10(lv)),
                               "step": [int(s) for s in t["step"]]}
        out.append(rec)
    return out


def plotly_js() -> str:
    """The plotly package's bundled, minified plotly.js (embedded once per page)."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def _options(values, label=str) -> str:
    return "".join(f'<option value="{html.escape(v)}">{html.escape(label(v))}</option>'
                   for v in values)


def surfaces_html(records: list[dict]) -> str:
    """The viewer: run/plane/split pickers, one plot area, plotly.js and the data, or "" when
    the study made no 2-D slices."""
    if not records:
        return ""
    runs = sorted({r["run"] for r in records})
    planes = [p for p in ("random", "pca", "hessian") if any(r["plane"] == p for r in records)]
    planes += sorted({r["plane"] for r in records} - set(planes))
    splits = sorted({r["split"] for r in records}, key=lambda s: (s != "train", s))
    payload = json.dumps(records, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    return (
        '<p>Drag to rotate, scroll to zoom, hover to read α, β and the loss. The surface is '
        "log₁₀ of the mean cross-entropy over the slice's evaluation subset; on the PCA plane "
        "the orange line is the training trajectory projected onto the plane, drawn at each "
        "snapshot's actual loss (not the loss of its projection).</p>"
        '<p class="surface-pickers">'
        f'<label>run <select id="surface-run">{_options(runs)}</select></label> '
        f'<label>plane <select id="surface-plane">{_options(planes)}</select></label> '
        f'<label>split <select id="surface-split">{_options(splits)}</select></label></p>'
        '<div id="surface-plot" style="width:100%;height:560px"></div>'
        f'<script type="application/json" id="surface-data">{payload}</script>'
        f"<script>{plotly_js()}</script><script>{VIEWER}</script>")
