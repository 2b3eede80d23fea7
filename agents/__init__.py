"""The board agent. Installed farm carries this folder as the package `farm._agents` (pyproject.toml)."""
