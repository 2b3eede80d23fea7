"""Build a model's deployment variants, the files its boards measure with, and a manifest.

Each variant is built by farm/build/quantizers.py (`int8_mixed` by farm/build/mixed.py);
here: the set a run asks for, the static recipe search, the boards' files and the
manifest, and a manifest built before checked for reuse. Boards get the evaluation set,
one deployment feed and the FP32 reference outputs; the calibration set stays here.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import onnxruntime as ort

from farm.board.agent import library
from farm.build.datafile import DataSet
from farm.build.loading import load_model_and_data
from farm.build.mixed import build_mixed
from farm.build.modelfile import ModelInfo
from farm.build.quantizers import (
    DEPTHWISE,
    Recipe,
    _build_variant,
    _excluded_nodes,
    _host_figures,
    _key,
    calibrated,
    host_losses,
)
from farm.build.spec import ModelSpec
from farm.build.toolchains import builder
from farm.build.uservariants import check_user_variants, user_variant_entry
from farm.config.settings import ALL_VARIANTS, CALIBRATION_METHODS, DEFAULT_VARIANTS, VARIANTS
from farm.errors import ModelError
from farm.results import ModelResult, Sensitivity, VariantBuild
from farm.statuses import BUILT, BuildStatus
from farm.util import file_sha256, write_json_atomic

CALIBRATION_RANGE = (100, 1000)
SEARCH_EXCLUSIONS = ((), ("PRelu",), (DEPTHWISE,), ("PRelu", DEPTHWISE))

log = logging.getLogger(__name__)


def _write(out_dir: Path, name: str, writer: Callable[[Path], None]) -> dict:
    target = out_dir / name
    if not target.exists():
        partial = target.with_name(f".partial-{target.name}")  # np.savez insists on its .npz suffix
        writer(partial)
        partial.replace(target)
    return {"file": target.name, "sha256": file_sha256(target)}


def board_files(info: ModelInfo, data: DataSet, spec: ModelSpec, out_dir: Path) -> dict:
    """What every board gets besides the variants: the spec, one deployment feed, the evaluation set, and
    the FP32 reference outputs on it. Never the calibration set."""
    spec_json = spec.to_json()
    key = _key(info.sha256, data.sha256, spec_json)
    files = {"spec": _write(out_dir, f"{info.name}.spec.{key}.json",
                            lambda p: p.write_text(json.dumps(spec_json, indent=1)))}
    source = data.evaluation or data.calibration
    feed = library.Feeder(np, spec_json, source).feed(0) if source or not spec.data_inputs else None
    if feed is not None:
        files["feed"] = _write(out_dir, f"{info.name}.feed.{key}.npz", lambda p: np.savez(p, **feed))
    if data.evaluation:
        labels = {}
        for output in spec.outputs:
            found = data.labels.get(output.name, data.labels.get("") if output.labels else None)
            if found is not None:
                labels[f"labels:{output.name}"] = found
        files["data"] = _write(out_dir, f"{info.name}.eval.{key}.npz",
                               lambda p: np.savez(p, **data.evaluation, **labels))
        session = ort.InferenceSession(str(info.path), providers=["CPUExecutionProvider"])
        files["reference"] = _write(out_dir, f"{info.name}.reference.{key}.npz", lambda p: np.savez(
            p, **library.collect_outputs(np, session, spec_json, data.evaluation)))
    return files


QUANTIZE_FIX = "use --calibration-samples, or --allow-calibration-count to build anyway"
RUN_FIX = ("give the data file 100-1000 calibration samples, leave static INT8 out (--variants fp32,int8_dynamic), "
           "or build it with `farm quantize --allow-calibration-count --out DIR` and reuse it with --variants-dir DIR")


def check_calibration(data: DataSet, recipe: Recipe, allow: bool, fix: str = QUANTIZE_FIX) -> int:
    """The calibration count static INT8 will use, refused (one line, with `fix`) outside the checklist's range."""
    if not data.calibration:
        raise ModelError(f"{data.path}: static INT8 needs a 'calibration' set of real samples")
    count = min(recipe.calibration_samples or data.calibration_count, data.calibration_count)
    low, high = CALIBRATION_RANGE
    if not allow and not low <= count <= high:
        raise ModelError(f"{data.path}: static INT8 calibration would use {count} samples; the checklist asks "
                         f"for {low}-{high} real samples ({fix})")
    return count


def _search_recipes(info: ModelInfo, data: DataSet, spec: ModelSpec, base: Recipe, count: int, target_loss: float,
                    out_dir: Path, files: dict, fp32_accuracy: dict | None) -> tuple[Recipe | None, list[dict]]:
    """Try static recipes; keep the fastest on the host whose every output stays within the target."""
    tried = []
    candidates = [replace(base, calibration_method=m, per_channel=pc, exclude_op_types=tuple({*base.exclude_op_types,
                                                                                               *ex}))
                  for m in CALIBRATION_METHODS for pc in (True, False) for ex in SEARCH_EXCLUSIONS
                  if not ex or _excluded_nodes(info.proto, ex)]
    for index, recipe in enumerate(candidates, 1):
        log.info(f"build: recipe search {index}/{len(candidates)}: {recipe.for_variant('int8_static')}")
        entry = _build_variant(info, data, spec, "int8_static", recipe, count, out_dir)
        row = {"recipe": recipe.for_variant("int8_static"), "status": entry["status"], "reason": entry["reason"]}
        if entry["status"] == BuildStatus.OK:
            host = _host_figures(out_dir / entry["file"], out_dir, files)
            losses = host_losses(spec, host, fp32_accuracy, target_loss)
            row.update(p50_ms=host.get("p50_ms"), losses=losses,
                       within=all(r["ok"] for r in losses) and host.get("p50_ms") is not None)
        tried.append((recipe, row))
    within = [(r, row) for r, row in tried if row.get("within")]
    if not within:
        return None, [row for _, row in tried]
    chosen, chosen_row = min(within, key=lambda pair: pair[1]["p50_ms"])
    chosen_row["chosen"] = True
    return chosen, [row for _, row in tried]


def check_variants(variants: Iterable[str]) -> list[str]:
    variants = list(variants)
    unknown = [v for v in variants if v not in VARIANTS and builder(v) is None]
    if unknown:
        raise ModelError(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(ALL_VARIANTS)}")
    return variants


def build_variants(info: ModelInfo, data: DataSet, spec: ModelSpec, out_dir: str | Path, *,
                   variants: Iterable[str] = DEFAULT_VARIANTS, recipe: Recipe = Recipe(),
                   allow_calibration_count: bool = False,
                   target_loss: float | None = None, host_figures: bool = True,
                   user_variants: dict[str, Path] | None = None) -> dict:
    """Build (or reuse) the variants and the boards' files into out_dir; return the manifest.

    `user_variants`: a team's own (name -> ONNX file), checked against the model first, then recorded beside."""
    variants = check_variants(variants)
    users = check_user_variants(user_variants or {}, info, spec)
    if recipe.calibration_method not in CALIBRATION_METHODS:
        raise ModelError(f"unknown calibration method {recipe.calibration_method!r}; "
                         f"choose from {', '.join(CALIBRATION_METHODS)}")
    recipe = replace(recipe, exclude_op_types=tuple({*recipe.exclude_op_types, *spec.exclude_op_types}),
                     exclude_nodes=tuple({*recipe.exclude_nodes, *spec.exclude_nodes}))
    calibration_count = None
    if any(calibrated(v) for v in variants):
        calibration_count = check_calibration(data, recipe, allow_calibration_count)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log.info(f"build: model {info.name}: opset {info.opset}, sha256 {info.sha256[:12]}")
    files = board_files(info, data, spec, out_dir)
    manifest: dict = {
        "schema": "farm.manifest/2", "model": info.describe(), "spec": spec.to_json(),
        "data": {"source": str(data.path), "sha256": data.sha256, "calibration_samples": calibration_count,
                 "evaluation_samples": data.evaluation_count, "labels": bool(data.labels)},
        "files": files, "onnxruntime": ort.__version__, "variants": {},
    }
    fp32_accuracy = None
    for variant in sorted(variants, key=ALL_VARIANTS.index):
        variant_recipe = recipe
        if variant == "int8_static" and target_loss is not None:
            chosen, manifest["recipe_search"] = _search_recipes(info, data, spec, recipe, calibration_count,
                                                                target_loss, out_dir, files, fp32_accuracy)
            if chosen is None:
                write_json_atomic(out_dir / "manifest.json", manifest)
                raise ModelError(f"{info.path}: no static INT8 recipe keeps every judged output within {target_loss} % "
                                 f"({len(manifest['recipe_search'])} tried; each with its losses in "
                                 f"{out_dir / 'manifest.json'}, recipe_search)")
            variant_recipe = chosen
        log.info(f"build: building {variant}")
        if variant == "int8_mixed":
            entry, manifest["sensitivity"] = build_mixed(info, data, spec, variant_recipe, calibration_count, out_dir,
                                                         files, fp32_accuracy)
        else:
            entry = _build_variant(info, data, spec, variant, variant_recipe, calibration_count, out_dir)
        if calibrated(variant):
            entry["recipe"]["calibration_samples"] = calibration_count
        if entry["status"] in BUILT and host_figures:
            entry["host"] = _host_figures(out_dir / entry["file"], out_dir, files)
            if variant == "fp32":
                fp32_accuracy = entry["host"].get("accuracy")
            entry["host"]["losses"] = host_losses(spec, entry["host"], fp32_accuracy)
        manifest["variants"][variant] = entry
        log.info(f"build: {variant}: {entry['status']}" + (f" ({entry['reason']})" if entry["reason"] else ""))
    for name, user in users.items():
        entry = user_variant_entry(name, user, info, out_dir)
        if host_figures:
            entry["host"] = _host_figures(out_dir / entry["file"], out_dir, files)
            entry["host"]["losses"] = host_losses(spec, entry["host"], fp32_accuracy)
        manifest["variants"][name] = entry
        log.info(f"build: {name}: a team's own variant, from {entry['origin']['path']} (sha256 {user.sha256[:12]})")
    return manifest


def build(model_path: str | Path, data_path: str | Path, out_dir: str | Path, *, spec_path: str | Path | None = None,
          **options) -> dict:
    """`farm quantize`: validate, build the variants into out_dir and write out_dir/manifest.json."""
    info, data, spec = load_model_and_data(model_path, data_path, spec_path)
    manifest = build_variants(info, data, spec, out_dir, **options)
    write_json_atomic(Path(out_dir) / "manifest.json", manifest)
    return manifest


def reuse_variants(folder: Path, info: ModelInfo, data: DataSet, spec: ModelSpec, variants: Iterable[str]) -> dict:
    """What `farm quantize --out DIR` built, checked: the same model, data and spec, every file intact."""
    path = Path(folder) / "manifest.json"
    rebuild = f"rebuild it: farm quantize {info.path} --data {data.path} --out {folder}"
    if not path.is_file():
        raise ModelError(f"{folder}: no manifest.json there; {rebuild}")
    manifest = json.loads(path.read_text())
    if manifest.get("schema") != "farm.manifest/2":
        raise ModelError(f"{path}: not a manifest of this farm (schema {manifest.get('schema')!r}); {rebuild}")
    for what, built, given in (("model", manifest["model"]["sha256"], info.sha256),
                               ("data", manifest["data"]["sha256"], data.sha256)):
        if built != given:
            raise ModelError(f"{path}: built from another {what} (sha256 {built[:12]}, this one is {given[:12]}); "
                             f"{rebuild}")
    same_spec = lambda doc: {k: v for k, v in doc.items() if k != "source"}  # noqa: E731
    if same_spec(manifest["spec"]) != same_spec(spec.to_json()):
        raise ModelError(f"{path}: built with another model spec than {spec.source}; {rebuild} --spec ...")
    missing = [v for v in variants if v not in manifest["variants"]]
    if missing:
        raise ModelError(f"{path}: has no {', '.join(missing)}; {rebuild} --variants ...")
    manifest["variants"] = {v: manifest["variants"][v] for v in variants}
    for entry in [*manifest["variants"].values(), *manifest["files"].values()]:
        if "file" not in entry:
            continue
        target = Path(folder) / entry["file"]
        if not target.is_file() or file_sha256(target) != entry["sha256"]:
            raise ModelError(f"{target}: missing, or not the file the manifest recorded "
                             f"(sha256 {entry['sha256'][:12]}); {rebuild}")
    return manifest


def model_result(manifest: dict) -> ModelResult:
    """What a run's results say about the model, from its manifest."""
    model, data = manifest.get("model", {}), manifest.get("data", {})
    return ModelResult(
        name=model.get("name"), sha256=model.get("sha256"), opset=model.get("opset"),
        calibration_samples=data.get("calibration_samples"), evaluation_samples=data.get("evaluation_samples"),
        labels=bool(data.get("labels")), spec=manifest.get("spec") or {},
        variants={v: VariantBuild.from_json(e) for v, e in manifest.get("variants", {}).items()},
        sensitivity=Sensitivity.from_json(manifest["sensitivity"]) if manifest.get("sensitivity") else None)
