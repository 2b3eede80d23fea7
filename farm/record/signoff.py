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
with `ssh-keygen -Y sign` (signoff.json.sig).

`verify` takes nothing on the record's word (docs/signoff.md): the signature in farm's namespace
(or the pinned release policy's), the signer against allowed_signers, the policy it was signed
under against the pinned one, its signing time, every verdict, and (unless `record_only`) the
run folder it sits in: the same run id, every run file as signed.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from farm.config import locality
from farm.config.checklist import POLICY, Checklist
from farm.config.inventory import load_inventory
from farm.errors import ConfigError, HistoryError, SignoffError
from farm.judge import audit
from farm.judge.audit import Disagreement
from farm.judge.items import limits_for
from farm.judge.policy import PolicyOutcome, check_policy, signing_time_problems
from farm.record import sshsig
from farm.record.rundir import run_file_problem
from farm.results import Baseline, BoardResult, BoardStatus, CheckStatus, RunResult, VariantResult
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


def junit_outcomes(path: Path) -> dict[tuple[str, str, str], CheckStatus]:
    """(board, variant, item) -> pass / fail / error / skip, from the JUnit file's test cases."""
    outcomes = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        if not {"board", "variant", "item"} <= set(props):
            continue
        kinds = {child.tag for child in case}
        outcome = (CheckStatus.ERROR if "error" in kinds else CheckStatus.FAIL if "failure" in kinds else
                   CheckStatus.SKIP if "skipped" in kinds else CheckStatus.PASS)
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


def review(run_dir: Path, *, checklist: Checklist, inventory: Path, history=None,
           now: datetime | None = None) -> Review:
    """Everything signing checks, without signing (`farm signoff sign --dry-run` prints it).

    The checklist and inventory are the signer's (named, or pinned in the project), never the
    ones results.json names: whoever made the run chose those.
    """
    run_dir = Path(run_dir)
    result = _read_run(run_dir)
    inventory_path = Path(inventory)
    if not inventory_path.is_file():
        raise ConfigError(f"inventory {inventory_path}: not found: the sign-off judges each board by its "
                          "inventory entry; give --inventory")
    declared = load_inventory(inventory_path)
    outcome = Review(run_dir, result, checklist, PolicyOutcome())
    controller = {i for i in (locality.controller_boot_id(), result.provenance.get("controller_boot_id")) if i}
    emulated = {}
    for board in result.boards:
        entry = declared.declared(board.name)
        if entry is None:
            outcome.disagreements.append(Disagreement(str(inventory_path), board.name, None, "board",
                                                      "in the run", "not in the inventory: give --inventory"))
            continue
        emulated[board.name] = entry.emulated_cpu
        outcome.limits[board.name] = limits_for(checklist, entry)
        # A stand-in under any name: the entry's address resolved here, and the board's kernel against ours.
        here = locality.on_controller(entry.address, entry.standin, board.kernel_boot_id, controller)
        if here and not board.on_controller:
            outcome.disagreements.append(Disagreement(str(inventory_path), board.name, None, "on the controller",
                                                      False, True))
        board.on_controller = board.on_controller or here
        for what, stored, truth in (("emulated", board.emulated, bool(entry.emulated_cpu)),
                                    ("class", board.board_class, entry.board_class)):
            if stored != truth:
                outcome.disagreements.append(Disagreement(str(inventory_path), board.name, None, what, stored, truth))
        if board.usable:
            outcome.disagreements += audit.limit_disagreements(board.name, board.limits, outcome.limits[board.name],
                                                               "results.json")
    outcome.policy = check_policy(result, checklist.policy, now or datetime.now(timezone.utc))
    outcome.baselines, missing = _baselines(result, checklist, history)
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
            if variant.status == BoardStatus.OK and built and variant.sha256 != built.sha256:
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
    record_only: bool = False                           # the run's folder was not compared (asked for)
    release: Checklist | None = None                    # the pinned release policy it was held to, if any

    @property
    def verified(self) -> bool:
        return not self.problems

    @property
    def policy(self) -> str:
        """The policy the record was signed under: the checklist's name and sha256."""
        checklist = (self.record or {}).get("checklist") or {}
        return f"{checklist.get('name')} (sha256 {checklist.get('sha256')})"


def _record_path(path: Path) -> Path:
    path = Path(path)
    return path / RECORD if path.is_dir() else path


def verify(path: Path, allowed_signers: Path, model: Path | None = None, *, release: Checklist | None = None,
           record_only: bool = False, now: datetime | None = None) -> Verification:
    """Signature (in farm's namespace, never the record's word for it), signer, the record's policy against
    the pinned release policy, its time, every verdict judged again and, unless `record_only`, the run
    folder it sits in: the same run id, every run file as signed."""
    path = _record_path(path)
    try:
        data = path.read_bytes()
        record = json.loads(data)
    except (OSError, ValueError) as exc:
        raise SignoffError(f"{path}: not a readable sign-off record ({exc})") from exc
    if not isinstance(record, dict) or record.get("schema") != SCHEMA:
        raise SignoffError(f"{path}: schema {record.get('schema') if isinstance(record, dict) else None!r} is not "
                           f"{SCHEMA}: an unsigned record of an older farm proves nothing; sign the run again")
    outcome = Verification(record, record_only=record_only, release=release)
    outcome.problems += _signature(path, data, record, allowed_signers,
                                   release.policy["namespace"] if release else POLICY["namespace"])
    outcome.problems += _policy(record, release, now or datetime.now(timezone.utc))
    outcome.problems += [str(d) for d in _rederive(record)]
    if record_only:
        outcome.notes.append("record only: the run folder beside the record was not compared with it")
    else:
        outcome.problems += _in_its_folder(path.parent, record)
    if model is not None:
        actual = file_sha256(model)
        signed = record.get("model") or {}
        if actual != signed.get("sha256") and actual not in (signed.get("variants") or {}).values():
            outcome.problems.append(f"{model}: sha256 {actual} is not the signed model {signed.get('sha256')} "
                                    "nor any signed variant")
    return outcome


def _signature(path: Path, data: bytes, record: dict, allowed_signers: Path, namespace: str) -> list[str]:
    """The signature over the record, checked in `namespace` (farm's, or the pinned policy's) only."""
    signer = record.get("signer") or {}
    sig_path = path.with_name(path.name + ".sig")
    problems = []
    if signer.get("namespace") != namespace:
        problems.append(f"the record says it was signed in namespace {signer.get('namespace')!r}; sign-offs verify "
                        f"in {namespace!r} only (a signature made for git commits or files is not a sign-off)")
    if not sig_path.is_file():
        return problems + [f"{sig_path}: no signature beside the record"]
    checked = sshsig.verify(data, sig_path.read_text(), namespace, sshsig.check_allowed_signers(allowed_signers))
    if not checked.intact:
        problems.append(f"{path.name} was changed after signing: its signature does not match its content in "
                        f"namespace {namespace!r} ({checked.message})")
    elif not checked.principals:
        problems.append(f"signed by a key not allowed to sign: {checked.message}")
    elif signer.get("principal") not in checked.principals:
        problems.append(f"the record names {signer.get('principal')} as signer, the key belongs to "
                        f"{', '.join(checked.principals)}")
    return problems


def _policy(record: dict, release: Checklist | None, now: datetime) -> list[str]:
    """The policy the record says it was signed under: what it hashes to, the pinned release policy, and its
    rules (the run's age, the boards that count) judged again at the time it was signed."""
    checklist, rules = record.get("checklist") or {}, (record.get("policy") or {}).get("rules") or {}
    problems = []
    meant = Checklist(str(checklist.get("name")), str(checklist.get("file")), checklist.get("items") or {},
                      rules).sha256
    if meant != checklist.get("sha256"):
        problems.append(f"the record's checklist and policy hash to {meant}, not the sha256 it names "
                        f"({checklist.get('sha256')})")
    if release is not None and checklist.get("sha256") != release.sha256:
        problems.append(f"signed under policy {checklist.get('name')} (sha256 {checklist.get('sha256')}), not the "
                        f"pinned release policy {release.name} (sha256 {release.sha256}): not a release sign-off")
    try:
        result, _ = _evidence(record)
    except (ValueError, KeyError, TypeError):
        return problems  # _rederive names the unreadable evidence
    problems += signing_time_problems(record.get("signed_at"), result.finished, now)
    try:
        signed_at = datetime.fromisoformat(str(record.get("signed_at")))
    except ValueError:
        return problems
    controller = result.provenance.get("controller_boot_id")
    for board in result.boards:
        if not board.on_controller and controller and board.kernel_boot_id == controller:
            problems.append(f"{board.name} runs the controller's kernel (boot id {controller}) but the record does "
                            "not count it as on the controller")
            board.on_controller = True
    try:
        unmet = check_policy(result, {**POLICY, **rules}, signed_at).unmet
    except (TypeError, KeyError, ValueError) as exc:
        unmet = [f"the record's rules cannot be read ({exc})"]
    return problems + [f"policy at signing: {u}" for u in unmet]


def _in_its_folder(folder: Path, record: dict) -> list[str]:
    """The record against the run folder it sits in: the same run, and each run file as signed
    (an edited results.json is named figure by figure)."""
    problems = []
    here = folder.resolve().name
    if here != record.get("run_id"):
        problems.append(f"the record is for run {record.get('run_id')}, it sits in the folder of {here!r}: a record "
                        "copied from another run says nothing about this one (--record-only: check the record alone)")
    signed_files = record.get("files") or {}
    for name, signed in signed_files.items():
        bad = run_file_problem(name)
        if bad:
            problems.append(f"the record lists a file {name!r}: {bad}")
            continue
        path = folder / name
        if not path.is_file():
            problems.append(f"{name}: signed, not beside the record (--record-only: check the record alone)")
            continue
        actual = file_sha256(path)
        if actual == signed:
            continue
        problems.append(f"{name} was changed after signing (sha256 {actual[:16]}..., signed {signed[:16]}...)")
        if name == "results.json":
            problems += [str(d) for d in _edits(path, record)]
    problems += [f"{name}: beside the record, not signed" for name in _file_hashes(folder) if name not in signed_files]
    return problems


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
        found += [replace(d, labels=("now", "signed"))
                  for d in audit.board_disagreements(board, edited, "results.json")]
        for name, variant in board.variants.items():
            theirs = {c.item: c for c in (edited.variants.get(name) or VariantResult(name)).checks}
            for check in variant.checks:
                other = theirs.get(check.item)
                if other is None or other.to_json() != check.to_json():
                    found.append(Disagreement("results.json", board.name, name, check.item, audit.shown(other),
                                              audit.shown(check), ("now", "signed")))
    return found
