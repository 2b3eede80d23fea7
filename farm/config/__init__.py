"""Configuration: inventories and board classes, checklists, run options and settings (no I/O beyond reading them)."""
