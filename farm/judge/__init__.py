"""Judge: checklist items, statistics and comparisons. Pure functions over results: no I/O."""
