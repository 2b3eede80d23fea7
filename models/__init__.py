"""Demo models. Installed farm carries the default demo (digits) as `farm._models` (pyproject.toml)."""
