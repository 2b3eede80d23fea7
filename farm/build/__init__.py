"""Build: validate a model and its data, build the FP32 / INT8 variants and their manifest."""
