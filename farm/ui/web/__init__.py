"""farm serve: the lab dashboard (Starlette, Jinja2, plotly.js, prometheus-client)."""
