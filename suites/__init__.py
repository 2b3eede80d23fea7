"""farm's own suites and checklists. Installed farm carries this folder as `farm._suites` (pyproject.toml)."""
