// The trend page's plots, from its #trend-data block: a file of its own, as the CSP runs no inline script.
const trend = JSON.parse(document.getElementById("trend-data").textContent);
for (const [key, label] of Object.entries(trend.figures)) {
  const points = trend.points.filter(p => p[key] !== null);
  const bad = points.filter(p => p.regression === "fail");
  const traces = [
    {x: points.map(p => p.started), y: points.map(p => p[key]), text: points.map(p => p.run_id), name: label,
     mode: "lines+markers", type: "scatter"},
    {x: bad.map(p => p.started), y: bad.map(p => p[key]), text: bad.map(p => p.run_id), name: "regression",
     mode: "markers", marker: {symbol: "x", size: 12, color: "#c0392b"}, type: "scatter"},
  ];
  const layout = {title: {text: label}, height: 260, margin: {t: 40, b: 40, l: 60, r: 20}, showlegend: false, shapes: []};
  if (trend.baseline && trend.baseline[key] != null) {
    layout.shapes.push({type: "line", xref: "paper", x0: 0, x1: 1, y0: trend.baseline[key], y1: trend.baseline[key],
                        line: {dash: "dot", color: "#7f8c8d"}});
  }
  for (const change of trend.changes.filter(c => c.figure === key)) {
    layout.shapes.push({type: "line", xref: "x", yref: "paper", x0: change.started, x1: change.started, y0: 0, y1: 1,
                        line: {dash: "dash", color: "#d35400"}, name: "change point"});
  }
  Plotly.newPlot("plot-" + key, traces, layout, {displaylogo: false, responsive: true});
}
