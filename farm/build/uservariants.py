"""A team's own variants (`--variant NAME=path.onnx`): QAT exports, pruned or distilled models.

Farm did not build them, so it checks before any board is touched that each one
is a drop-in for the FP32 reference: the same inputs and the same judged outputs
(names, dtypes, shapes compatible). Then it copies each beside farm's variants,
content-addressed, and records where it came from (path and sha256) in the
manifest: boards measure and judge it against FP32 exactly like farm's own.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from farm.build.datafile import TensorSpec
from farm.build.modelfile import ModelInfo, default_opset, inspect_model, quantization_census
from farm.build.spec import ModelSpec
from farm.config.options import parse_variants
from farm.errors import ModelError
from farm.statuses import BuildStatus


def _compatible(a: tuple, b: tuple) -> bool:
    """Same rank, and every fixed dim equal (a symbolic or free dim matches anything)."""
    return len(a) == len(b) and all(x == y or not isinstance(x, int) or not isinstance(y, int) for x, y in zip(a, b))


def _difference(kind: str, wanted: TensorSpec, given: dict[str, TensorSpec]) -> str | None:
    found = given.get(wanted.name)
    if found is None:
        return f"has no {kind} {wanted.name!r} (it has {', '.join(sorted(given)) or 'none'})"
    if found.dtype != wanted.dtype:
        return f"{kind} {wanted.name!r} is {found.dtype}, the FP32 reference's is {wanted.dtype}"
    if not _compatible(tuple(found.shape), tuple(wanted.shape)):
        return f"{kind} {wanted.name!r} has shape {list(found.shape)}, the FP32 reference's is {list(wanted.shape)}"
    return None


def check_against_reference(name: str, path: Path, reference: ModelInfo, spec: ModelSpec) -> ModelInfo:
    """The user's model, refused with the first difference from the reference that a board would trip on."""
    info = inspect_model(path)
    judged = {o.name for o in spec.outputs} | {i.from_output for i in spec.inputs if i.from_output}
    given_inputs = {t.name: t for t in info.inputs}
    given_outputs = {t.name: t for t in info.outputs}
    problems = [_difference("input", t, given_inputs) for t in reference.inputs]
    problems += [_difference("output", t, given_outputs) for t in reference.outputs if t.name in judged]
    extra = sorted(set(given_inputs) - {t.name for t in reference.inputs})
    if extra:
        problems.append(f"takes input {extra[0]!r} the FP32 reference does not")
    problem = next((p for p in problems if p), None)
    if problem:
        raise ModelError(f"{path}: variant {name!r} {problem}; a variant must take the same inputs and give the "
                         f"same judged outputs as {reference.path.name}")
    return info


def check_user_variants(given: dict[str, Path], reference: ModelInfo, spec: ModelSpec) -> dict[str, ModelInfo]:
    """Every user variant (given, and the spec's `variants:`) checked before anything is built or any board
    touched; a name given both ways takes the given file."""
    from_spec = parse_variants([f"{n}={p}" for n, p in spec.user_variants.items()], f"{spec.source}: variants:")
    variants = {**from_spec, **given}
    return {name: check_against_reference(name, path, reference, spec) for name, path in variants.items()}


def user_variant_entry(name: str, info: ModelInfo, reference: ModelInfo, out_dir: Path) -> dict:
    """The manifest entry of one checked user variant, its file copied into out_dir by its sha256."""
    target = Path(out_dir) / f"{reference.name}.{name}.{info.sha256[:16]}.onnx"
    cached = target.exists()
    if not cached:
        partial = target.with_suffix(".partial.onnx")
        shutil.copy(info.path, partial)
        partial.replace(target)
    census = quantization_census(target)
    return {"status": BuildStatus.OK, "reason": None, "recipe": {}, "notes": [], "cached": cached,
            "origin": {"path": str(info.path.resolve()), "sha256": info.sha256},
            "file": target.name, "sha256": info.sha256, "size_bytes": target.stat().st_size,
            "opset": default_opset(info.proto), "float_op_types": census.left,
            "quantized_op_types": census.quantized, "float_between_qdq": census.between_qdq}
