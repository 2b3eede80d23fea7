"""Inventories: the built-in stand-ins and example labs. Installed farm carries this folder as `farm._inventory`."""
