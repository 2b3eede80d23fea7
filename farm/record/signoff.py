"""Sign-off: a release decision bound to the exact model, boards and figures, signed by the signer's key.

Signing reviews the run first and refuses, naming every reason, unless:
- every verdict, judged again from the raw figures with the checklist's limits and the
  inventory's budgets (farm.judge.audit), agrees with each stored copy: results.json,
  junit.xml and boards/*.json; the latency summaries agree with their samples; each board ran
  the bytes that were built;
- every check passed (or was skipped, with its reason) on every board;
- the release policy (the checklist's `signoff:` section, farm.judge.policy) is met.

The record (signoff.json: canonical JSON) holds the model's and every variant's sha256,
the boards with their facts and host keys, the checklist and policy with their sha256,
every verdict with its value and limit, the sha256 of every file of the run, and the run's
raw figures as evidence, so `verify` can judge again from the record alone. It is signed
with `ssh-keygen -Y sign` (signoff.json.sig); `verify` checks the signature, the signer
against allowed_signers, the files beside it and every verdict.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from farm.config.checklist import Checklist, load_checklist
from farm.config.inventory import load_inventory
from farm.errors import ConfigError, HistoryError, SignoffError
from farm.judge import audit
from farm.judge.audit import Disagreement
from farm.judge.items import limits_for
from farm.judge.policy import PolicyOutcome, check_policy
from farm.record import sshsig
from farm.results import Baseline, BoardResult, RunResult, VariantResult
from farm.util import file_sha256

SCHEMA = "farm.signoff/2"
RECORD, SIGNATURE = "signoff.json", "signoff.json.sig"


def canonical(record: dict) -> bytes:
    """The exact bytes that are signed: sorted keys, fixed separators, one trailing newline."""
    return (json.dumps(record, sort_keys=True, indent=1, separators=(",", ": ")) + "\n").encode()


def _read_run(run_dir: Path) -> RunResult:
    path = Path(run_dir) / "results.json"
    if not path.is_file():
        raise SignoffError(f"{path}: no results.json: is {run_dir} a run folder?")
    try:
        return RunResult.from_json(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as exc:
        raise SignoffError(f"{path}: not a farm results document ({exc})") from exc


def junit_outcomes(path: Path) -> dict[tuple[str, str, str], str]:
    """(board, variant, item) -> pass / fail / error / skip, from the JUnit file's test cases."""
    outcomes = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        if not {"board", "variant", "item"} <= set(props):
            continue
        kinds = {child.tag for child in case}
        outcome = ("error" if "error" in kinds else "fail" if "failure" in kinds else
                   "skip" if "skipped" in kinds else "pass")
        outcomes[(props["board"], props["variant"], props["item"])] = outcome
    return outcomes


@dataclass
class Review:
    """What signing found: the run, its recomputed verdicts, and every reason not to sign."""

    run_dir: Path
    result: RunResult
    checklist: Checklist
    policy: PolicyOutcome
    disagreements: list[Disagreement] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)   # checks not passed, boards not measured
    baselines: dict = field(default_factory=dict)       # (board, variant) -> Baseline
    limits: dict = field(default_factory=dict)          # board -> item -> settings, recomputed
    files: dict = field(default_factory=dict)           # file of the run -> sha256

    @property
    def refused(self) -> bool:
        return bool(self.disagreements or self.failures or self.policy.unmet)

    def reasons(self) -> list[str]:
        return ([f"disagrees: {d}" for d in self.disagreements] + [f"did not pass: {f}" for f in self.failures]
                + [f"policy: {u}" for u in self.policy.unmet])


def _baselines(result: RunResult, checklist: Checklist, history) -> tuple[dict, list[Disagreement]]:
    """The baseline each regression verdict was judged against, from the history (by the run id it recorded)."""
    found, problems = {}, []
    if "regression" not in checklist.items:
        return found, problems
    for board in result.boards:
        for name, variant in board.variants.items():
            if not variant.baseline:
                continue
            run_id = variant.baseline["run_id"]
            try:
                base = history.load_run(run_id).board(board.name) if history else None
            except HistoryError as exc:
                problems.append(Disagreement("history", board.name, name, "regression", f"baseline run {run_id}",
                                             f"not re-derivable: {exc}"))
                continue
            entry = base.variants.get(name) if base else None
            if entry is None:
                problems.append(Disagreement("history", board.name, name, "regression", f"baseline run {run_id}",
                                             "not in the history: give --history"))
                continue
            series = history.series_before(board.name, name, result.model.name, result.run_id, result.started)
            found[(board.name, name)] = Baseline(run_id, entry, bool(variant.baseline.get("pinned")), series)
    return found, problems


def review(run_dir: Path, *, checklist: Path | None = None, inventory: Path | None = None, history=None,
           now: datetime | None = None) -> Review:
    """Everything signing checks, without signing (`farm signoff --dry-run` prints it)."""
    run_dir = Path(run_dir)
    result = _read_run(run_dir)
    checklist_doc = load_checklist(checklist or result.checklist.get("file") or "")
    inventory_path = Path(inventory or result.inventory or "")
    if not inventory_path.is_file():
        raise ConfigError(f"inventory {inventory_path}: not found: the sign-off judges each board by its "
                          "inventory entry; give --inventory")
    declared = load_inventory(inventory_path)
    outcome = Review(run_dir, result, checklist_doc, check_policy(result, checklist_doc.policy,
                                                                  now or datetime.now(timezone.utc)))
    emulated = {}
    for board in result.boards:
        entry = declared.declared(board.name)
        if entry is None:
            outcome.disagreements.append(Disagreement(str(inventory_path), board.name, None, "board",
                                                      "in the run", "not in the inventory: give --inventory"))
            continue
        emulated[board.name] = entry.emulated_cpu
        outcome.limits[board.name] = limits_for(checklist_doc, entry)
        on_controller = BoardResult(board.name, address=entry.address, standin=entry.standin).on_controller
        for what, stored, truth in (("on the controller", board.on_controller, on_controller),
                                    ("emulated", board.emulated, bool(entry.emulated_cpu)),
                                    ("class", board.board_class, entry.board_class)):
            if stored != truth:
                outcome.disagreements.append(Disagreement(str(inventory_path), board.name, None, what, stored, truth))
        if board.usable:
            outcome.disagreements += audit.limit_disagreements(board.name, board.limits, outcome.limits[board.name],
                                                               "results.json")
    outcome.baselines, missing = _baselines(result, checklist_doc, history)
    outcome.disagreements += missing
    verdicts = audit.recompute(result, outcome.limits, emulated, outcome.baselines)
    outcome.failures = _judged_again(result, verdicts).problems()
    outcome.disagreements += _figures(result, "results.json")
    outcome.disagreements += audit.verdict_disagreements(result, verdicts, "results.json")
    outcome.disagreements += _copies(run_dir, result, verdicts)
    outcome.files = _file_hashes(run_dir)
    return outcome


def _judged_again(result: RunResult, verdicts: dict) -> RunResult:
    """A copy of the run with the recomputed verdicts in place of the stored ones."""
    copy = RunResult.from_json(result.to_json())
    for board in copy.boards:
        for name, variant in board.variants.items():
            variant.checks = verdicts.get(board.name, {}).get(name, [])
    return copy


def _figures(result: RunResult, where: str) -> list[Disagreement]:
    """Latency summaries against their samples; each measured variant against the bytes that were built."""
    found = []
    for board in result.boards:
        for name, variant in board.variants.items():
            found += audit.summary_disagreements(board.name, variant, where)
            built = result.model.variants.get(name)
            if variant.status == "ok" and built and variant.sha256 != built.sha256:
                found.append(Disagreement(where, board.name, name, "sha256", variant.sha256,
                                          f"{built.sha256} (the variant that was built)"))
    return found


def _copies(run_dir: Path, result: RunResult, verdicts: dict) -> list[Disagreement]:
    """junit.xml and boards/*.json against the recomputation and results.json."""
    found = []
    junit = run_dir / "junit.xml"
    if junit.is_file():
        try:
            found += audit.status_disagreements(junit_outcomes(junit), verdicts, "junit.xml")
        except ET.ParseError as exc:
            found.append(Disagreement("junit.xml", "-", None, "file", "unreadable", str(exc)))
    else:
        found.append(Disagreement("junit.xml", "-", None, "file", "absent",
                                  "a run made by `farm run` writes one: the verdicts cannot be compared"))
    for board in result.boards:
        path = run_dir / "boards" / f"{board.name}.json"
        if not path.is_file():
            if board.ok:
                found.append(Disagreement(f"boards/{board.name}.json", board.name, None, "file", "absent",
                                          "written when the board's session ended"))
            continue
        try:
            copy = BoardResult.from_json(json.loads(path.read_text()))
        except (ValueError, KeyError, TypeError) as exc:
            found.append(Disagreement(f"boards/{board.name}.json", board.name, None, "file", "unreadable", str(exc)))
            continue
        found += audit.board_disagreements(board, copy, f"boards/{board.name}.json")
    return found


def _file_hashes(run_dir: Path) -> dict[str, str]:
    names = ["results.json", "junit.xml", "manifest.json", *sorted(f"boards/{p.name}" for p in
                                                                  (run_dir / "boards").glob("*.json"))]
    return {name: file_sha256(run_dir / name) for name in names if (run_dir / name).is_file()}


def build_record(found: Review, *, principal: str, key: str, note: str | None, signed_at: str) -> dict:
    """The record of a review that found nothing against signing."""
    result, checklist = found.result, found.checklist
    return {
        "schema": SCHEMA, "run_id": result.run_id, "signed_at": signed_at, "note": note,
        "signer": {"principal": principal, "key": key, "namespace": checklist.policy["namespace"]},
        "model": {"name": result.model.name, "sha256": result.model.sha256,
                  "variants": {v: e.sha256 for v, e in result.model.variants.items() if e.sha256}},
        "checklist": {"name": checklist.name, "file": checklist.path, "sha256": checklist.sha256,
                      "items": checklist.items},
        "policy": {"rules": checklist.policy, "counted": found.policy.counted, "notes": found.policy.notes},
        "boards": [{"name": b.name, "class": b.board_class, "address": b.address, "host_key": b.host_key,
                    "on_controller": b.on_controller, "emulated": b.emulated, "qemu_cpu": b.qemu_cpu,
                    "facts": b.facts, "limits": found.limits.get(b.name, {}),
                    "verdicts": {v: [c.to_json() for c in e.checks] for v, e in b.variants.items()}}
                   for b in result.boards],
        "run": {"started": result.started, "finished": result.finished, "inventory": result.inventory,
                "provenance": result.provenance},
        "files": found.files,
        "evidence": {"run": result.to_json(),
                     "baselines": [{"board": board, "variant": variant, "run_id": b.run_id, "pinned": b.pinned,
                                    "figures": b.variant.to_json(), "series": list(b.series)}
                                   for (board, variant), b in found.baselines.items()]},
    }


def sign(found: Review, *, key: Path, allowed_signers: Path, principal: str | None = None,
         note: str | None = None) -> tuple[dict, Path]:
    """Sign a review that found nothing against it: signoff.json and signoff.json.sig in the run folder.

    The signer is whom allowed_signers names for the key, in the policy's namespace: a key it
    does not list cannot make a record that verifies, so none is written.
    """
    if found.refused:
        raise SignoffError(f"sign-off refused for run {found.result.run_id}:\n  " + "\n  ".join(found.reasons()))
    namespace = found.checklist.policy["namespace"]
    allowed_signers = sshsig.check_allowed_signers(allowed_signers)
    key_id = sshsig.fingerprint(key)
    # Who the key belongs to, by allowed_signers: a signature over the run id finds out before the record is made.
    probe = found.result.run_id.encode()
    names = sshsig.verify(probe, sshsig.sign(probe, key, namespace), namespace, allowed_signers)
    if not names.principals:
        raise SignoffError(f"sign-off refused: {names.message}")
    if principal and principal not in names.principals:
        raise SignoffError(f"sign-off refused: {allowed_signers} gives key {key_id} to "
                           f"{', '.join(names.principals)}, not {principal}")
    record = build_record(found, principal=principal or names.principals[0], key=key_id, note=note,
                          signed_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    data = canonical(record)
    signature = sshsig.sign(data, key, namespace)
    target = found.run_dir / RECORD
    (found.run_dir / SIGNATURE).write_text(signature)
    target.write_bytes(data)
    return record, target


@dataclass
class Verification:
    record: dict | None
    problems: list[str] = field(default_factory=list)   # any: the record does not verify
    notes: list[str] = field(default_factory=list)      # what could not be compared, and why

    @property
    def verified(self) -> bool:
        return not self.problems


def _record_path(path: Path) -> Path:
    path = Path(path)
    return path / RECORD if path.is_dir() else path


def verify(path: Path, allowed_signers: Path, model: Path | None = None) -> Verification:
    """Signature, signer, the run's files beside the record, and every verdict judged again."""
    path = _record_path(path)
    try:
        data = path.read_bytes()
        record = json.loads(data)
    except (OSError, ValueError) as exc:
        raise SignoffError(f"{path}: not a readable sign-off record ({exc})") from exc
    if record.get("schema") != SCHEMA:
        raise SignoffError(f"{path}: schema {record.get('schema')!r} is not {SCHEMA}: an unsigned record of an "
                           "older farm proves nothing; sign the run again")
    outcome = Verification(record)
    signer = record.get("signer") or {}
    sig_path = path.with_name(path.name + ".sig")
    if not sig_path.is_file():
        outcome.problems.append(f"{sig_path}: no signature beside the record")
    else:
        checked = sshsig.verify(data, sig_path.read_text(), str(signer.get("namespace")),
                                sshsig.check_allowed_signers(allowed_signers))
        if not checked.intact:
            outcome.problems.append(f"{path.name} was changed after signing: its signature does not match its "
                                    f"content ({checked.message})")
        elif not checked.principals:
            outcome.problems.append(f"signed by a key not allowed to sign: {checked.message}")
        elif signer.get("principal") not in checked.principals:
            outcome.problems.append(f"the record names {signer.get('principal')} as signer, the key belongs to "
                                    f"{', '.join(checked.principals)}")
    outcome.problems += [str(d) for d in _rederive(record)]
    outcome.problems += _beside(path.parent, record, outcome.notes)
    if model is not None:
        actual = file_sha256(model)
        signed = record.get("model") or {}
        if actual != signed.get("sha256") and actual not in (signed.get("variants") or {}).values():
            outcome.problems.append(f"{model}: sha256 {actual} is not the signed model {signed.get('sha256')} "
                                    "nor any signed variant")
    return outcome


def _evidence(record: dict) -> tuple[RunResult, dict]:
    evidence = record.get("evidence") or {}
    result = RunResult.from_json(evidence.get("run") or {})
    baselines = {(b["board"], b["variant"]): Baseline(b["run_id"], VariantResult.from_json(
        {**b["figures"], "name": b["variant"]}), bool(b.get("pinned")), tuple(b.get("series") or ()))
        for b in evidence.get("baselines") or []}
    return result, baselines


def _rederive(record: dict) -> list[Disagreement]:
    """The record's verdicts against the record's own figures and limits (and its summary against its evidence)."""
    try:
        result, baselines = _evidence(record)
    except (ValueError, KeyError, TypeError) as exc:
        return [Disagreement("signoff.json", "-", None, "evidence", "unreadable", str(exc))]
    boards = {b["name"]: b for b in record.get("boards") or []}
    limits = {name: b.get("limits") or {} for name, b in boards.items()}
    emulated = {name: b.get("qemu_cpu") if b.get("emulated") else None for name, b in boards.items()}
    verdicts = audit.recompute(result, limits, emulated, baselines)
    found = _figures(result, "signoff.json") + audit.verdict_disagreements(result, verdicts, "signoff.json")
    for board in result.boards:
        shown = boards.get(board.name, {}).get("verdicts") or {}
        for name, variant in board.variants.items():
            if shown.get(name, []) != [c.to_json() for c in variant.checks]:
                found.append(Disagreement("signoff.json", board.name, name, "verdicts",
                                          "the record's summary", "differs from its evidence"))
    return found


def _beside(folder: Path, record: dict, notes: list[str]) -> list[str]:
    """The run's files next to the record: each must hash as signed; an edited results.json is named figure by figure."""
    problems = []
    for name, signed in (record.get("files") or {}).items():
        path = folder / name
        if not path.is_file():
            notes.append(f"{name}: not beside the record, not compared")
            continue
        actual = file_sha256(path)
        if actual == signed:
            continue
        problems.append(f"{name} was changed after signing (sha256 {actual[:16]}..., signed {signed[:16]}...)")
        if name == "results.json":
            problems += [str(d) for d in _edits(path, record)]
    return problems


def _edits(path: Path, record: dict) -> list[Disagreement]:
    """What changed in a results.json since it was signed: board by board, figure by figure, verdict by verdict."""
    try:
        now = RunResult.from_json(json.loads(path.read_text()))
        signed, _ = _evidence(record)
    except (ValueError, KeyError, TypeError) as exc:
        return [Disagreement("results.json", "-", None, "file", "unreadable", str(exc))]
    found = []
    for board in signed.boards:
        edited = now.board(board.name)
        if edited is None:
            found.append(Disagreement("results.json", board.name, None, "board", "absent", "present",
                                      ("now", "signed")))
            continue
        found += [replace(d, labels=("now", "signed")) for d in audit.board_disagreements(board, edited, "results.json")]
        for name, variant in board.variants.items():
            theirs = {c.item: c for c in (edited.variants.get(name) or VariantResult(name)).checks}
            for check in variant.checks:
                other = theirs.get(check.item)
                if other is None or other.to_json() != check.to_json():
                    found.append(Disagreement("results.json", board.name, name, check.item, audit.shown(other),
                                              audit.shown(check), ("now", "signed")))
    return found
