"""Sign-off as an auditor tries to defeat it: real runs on real sshd stand-ins, real ssh-keygen signatures."""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from helpers import farm, ssh_signer

from farm.config.checklist import load_checklist
from farm.record.signoff import canonical
from farm.util import file_sha256

REPO = Path(__file__).resolve().parents[2]
CHECKLISTS = REPO / "suites" / "checklists"


@pytest.fixture(scope="module")
def runs(tmp_path_factory, shared_dir):
    """Two runs of the digits demo on two classed stand-ins: one passing, one failing its memory item;
    an allowed signer (ada) and a key nobody listed (eve)."""
    cwd = tmp_path_factory.mktemp("signoff")
    (cwd / "lab.yaml").write_text(textwrap.dedent("""
        standins:
          - name: so-a53
            class: cortex-a53
            cores: 1
          - name: so-a72
            class: cortex-a72
            cores: 1
        """))
    # The passing run must pass on any timing: speedup compares two processes' timings (30-50 % apart
    # here between unchanged runs), so its floor is set where no noise reaches, and a busy machine does
    # not make it an error; the sign-off rules are what these tests judge.
    (cwd / "steady.yaml").write_text(textwrap.dedent(f"""
        name: steady
        extends: {CHECKLISTS / "dms-demo.yaml"}
        items:
          speedup:
            min_ratio: 0.01
            board_state: ignore
        """))
    (cwd / "tight.yaml").write_text(textwrap.dedent(f"""
        name: tight
        extends: {cwd / "steady.yaml"}
        items:
          memory:
            max_mb: 1
        """))
    env = {"FARM_LAB_DIR": str(shared_dir / "lab-signoff")}
    found = {}
    for name, checklist in (("good", cwd / "steady.yaml"), ("bad", cwd / "tight.yaml")):
        proc = farm("run", "--inventory", "lab.yaml", "--checklist", str(checklist), "--runs", "20", cwd=cwd, env=env)
        assert proc.returncode == (0 if name == "good" else 1), proc.stdout[-3000:] + proc.stderr[-3000:]
        found[name] = (cwd / "results" / "latest").resolve()
    ssh_signer(cwd, "ada", "ada@example.com")
    ssh_signer(cwd, "eve")
    return cwd, found


def copy_run(runs, which: str, tmp_path: Path) -> tuple[Path, str]:
    """A fresh copy of a run in its own results folder: each test edits its own."""
    cwd, found = runs
    out = tmp_path / "results"
    shutil.copytree(found[which], out / found[which].name)
    for name in ("lab.yaml", "steady.yaml", "tight.yaml", "allowed_signers", "ada", "ada.pub", "eve", "eve.pub"):
        shutil.copy(cwd / name, tmp_path / name)
    shutil.copy(cwd / "results" / "history.sqlite", out / "history.sqlite")
    project(tmp_path)
    return out / found[which].name, found[which].name


def project(folder: Path, *lines: str) -> None:
    """The project's farm.toml: the inventory and checklist its sign-offs hold runs to (never the run's own)."""
    (folder / "farm.toml").write_text(f'inventory = "lab.yaml"\nchecklist = "{folder / "steady.yaml"}"\n'
                                      + "".join(f"{line}\n" for line in lines))


def edit_json(path: Path, change) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc, indent=1))


def check(doc: dict, board: str, variant: str, item: str) -> dict:
    entry = next(b for b in doc["boards"] if b["name"] == board)["variants"][variant]
    return next(c for c in entry["checks"] if c["item"] == item)


def demo_with_policy(folder: Path, *rules: str) -> str:
    """The demo's checklist with more sign-off rules (each `key: value`)."""
    path = folder / "release.yaml"
    path.write_text(f"name: release\nextends: {folder / 'steady.yaml'}\nitems: {{}}\nsignoff:\n"
                    + "".join(f"  {rule}\n" for rule in rules))
    return str(path)


def sign(cwd: Path, run_id: str, *extra: str):
    return farm("signoff", "sign", run_id, "--signing-key", "ada", *extra, cwd=cwd)


def test_a_run_signed_with_an_allowed_key_verifies_and_the_history_finds_it_by_model_sha(runs, tmp_path):
    run_dir, run_id = copy_run(runs, "good", tmp_path)
    signed = sign(tmp_path, run_id, "--note", "release 1.4")
    assert signed.returncode == 0, signed.stdout + signed.stderr
    record = json.loads((run_dir / "signoff.json").read_text())
    assert record["signer"]["principal"] == "ada@example.com" and record["signer"]["key"].startswith("ED25519 SHA256:")
    assert {b["name"] for b in record["boards"]} == {"so-a53", "so-a72"}
    assert all(b["host_key"].startswith("ssh-ed25519 SHA256:") for b in record["boards"])
    assert record["checklist"]["sha256"] and record["files"]["results.json"] == file_sha256(run_dir / "results.json")
    assert "stand-ins count" in " ".join(record["policy"]["notes"]), "the record says stand-ins were allowed"
    assert "ada@example.com" in (run_dir / "signoff.html").read_text()

    verified = farm("signoff", "verify", str(run_dir), "--model", str(REPO / "models" / "digits" / "digits.onnx"),
                    cwd=tmp_path)
    assert verified.returncode == 0 and "verified: signed by ada@example.com" in verified.stdout, verified.stdout

    listed = farm("history", "--signoffs", "--model", record["model"]["sha256"][:12], cwd=tmp_path)
    assert run_id in listed.stdout and "ada@example.com" in listed.stdout
    other = farm("history", "--signoffs", "--model", "0123456789ab", cwd=tmp_path)
    assert run_id not in other.stdout


def test_a_verdict_edited_to_pass_before_signing_is_refused_naming_board_variant_item_and_both_verdicts(runs, tmp_path):
    run_dir, run_id = copy_run(runs, "bad", tmp_path)

    def forge(doc):
        memory = check(doc, "so-a53", "fp32", "memory")
        memory.update(status="pass", why="peak RSS (VmHWM)")
    edit_json(run_dir / "results.json", forge)
    refused = sign(tmp_path, run_id, "--checklist", "tight.yaml")
    assert refused.returncode == 1
    assert "disagrees: results.json: so-a53 fp32 memory: stored pass" in refused.stdout
    assert "recomputed fail" in refused.stdout
    assert "did not pass: so-a53 fp32 memory: fail" in refused.stdout
    assert not (run_dir / "signoff.json").exists() and not (run_dir / "signoff.json.sig").exists()


def test_junit_and_board_files_that_disagree_with_the_recomputation_are_named(runs, tmp_path):
    run_dir, run_id = copy_run(runs, "good", tmp_path)
    junit = run_dir / "junit.xml"
    text = junit.read_text()
    marker = '<property name="item" value="latency" />'
    at = text.index(marker)
    end = text.index("</testcase>", at)
    junit.write_text(text[:end] + '<failure message="slow">slow</failure>' + text[end:])
    edit_json(run_dir / "boards" / "so-a72.json",
              lambda doc: doc["variants"]["int8_static"].update(peak_rss_mb=499.0))
    refused = sign(tmp_path, run_id)
    assert refused.returncode == 1
    assert "junit.xml: so-a53 fp32 latency: stored fail, recomputed pass" in refused.stdout, refused.stdout
    assert "boards/so-a72.json: so-a72 int8_static peak_rss_mb: stored 499.0" in refused.stdout


def test_a_latency_percentile_edited_without_its_samples_is_named(runs, tmp_path):
    run_dir, run_id = copy_run(runs, "good", tmp_path)

    def faster(doc):
        entry = next(b for b in doc["boards"] if b["name"] == "so-a53")["variants"]["fp32"]
        entry["latency_ms"]["p95"] = 0.0001
    edit_json(run_dir / "results.json", faster)
    dry = farm("signoff", "sign", run_id, "--dry-run", cwd=tmp_path)
    assert dry.returncode == 1 and "would be refused" in dry.stdout
    assert "results.json: so-a53 fp32 latency_ms.p95: stored 0.0001, recomputed" in dry.stdout


def test_results_edited_after_signing_fail_verify_naming_the_edited_figure(runs, tmp_path):
    run_dir, run_id = copy_run(runs, "good", tmp_path)
    assert sign(tmp_path, run_id).returncode == 0

    def lighter(doc):
        entry = next(b for b in doc["boards"] if b["name"] == "so-a72")["variants"]["int8_dynamic"]
        entry["peak_rss_mb"] = 12.5
        next(c for c in entry["checks"] if c["item"] == "memory")["value"] = 12.5
    edit_json(run_dir / "results.json", lighter)
    verified = farm("signoff", "verify", str(run_dir / "signoff.json"), cwd=tmp_path)
    assert verified.returncode == 1
    assert "results.json was changed after signing" in verified.stdout
    assert "results.json: so-a72 int8_dynamic peak_rss_mb: now 12.5, signed" in verified.stdout
    assert "results.json: so-a72 int8_dynamic memory: now pass (12.5 vs 500 MB), signed pass" in verified.stdout


def test_a_record_edited_and_rewritten_canonically_fails_its_signature_and_the_figure_is_named(runs, tmp_path):
    run_dir, run_id = copy_run(runs, "good", tmp_path)
    assert sign(tmp_path, run_id).returncode == 0
    path = run_dir / "signoff.json"
    record = json.loads(path.read_text())
    evidence = next(b for b in record["evidence"]["run"]["boards"] if b["name"] == "so-a53")["variants"]["fp32"]
    evidence["latency_ms"]["p95"] = 0.001
    path.write_bytes(canonical(record))  # farm's own canonical form: no unkeyed hash to recompute any more
    verified = farm("signoff", "verify", str(path), cwd=tmp_path)
    assert verified.returncode == 1
    assert "signoff.json was changed after signing: its signature does not match its content" in verified.stdout
    assert "signoff.json: so-a53 fp32 latency_ms.p95: stored 0.001" in verified.stdout


def test_a_record_signed_by_a_key_not_in_allowed_signers_fails_verify_and_such_a_key_cannot_sign(runs, tmp_path):
    run_dir, run_id = copy_run(runs, "good", tmp_path)
    refused = farm("signoff", "sign", run_id, "--signing-key", "eve", cwd=tmp_path)
    assert refused.returncode == 1 and "is not in" in refused.stdout and "allowed_signers" in refused.stdout
    assert not (run_dir / "signoff.json").exists()

    assert sign(tmp_path, run_id).returncode == 0
    path = run_dir / "signoff.json"
    record = json.loads(path.read_text())
    record["note"] = "approved by eve"
    path.write_bytes(canonical(record))
    (run_dir / "signoff.json.sig").unlink()  # eve signs the edited record herself, as ssh-keygen lets anyone
    subprocess.run(["ssh-keygen", "-Y", "sign", "-q", "-f", str(tmp_path / "eve"), "-n", "farm-signoff", str(path)],
                   check=True)
    verified = farm("signoff", "verify", str(path), cwd=tmp_path)
    assert verified.returncode == 1
    assert "signed by a key not allowed to sign" in verified.stdout and "is not in" in verified.stdout


def test_a_policy_requiring_a_class_the_run_lacks_is_refused_with_that_class_named(runs, tmp_path):
    run_dir, run_id = copy_run(runs, "good", tmp_path)
    release = demo_with_policy(tmp_path, "classes: [cortex-a53, jetson-orin]")
    refused = sign(tmp_path, run_id, "--checklist", release)
    assert refused.returncode == 1
    assert "policy: classes: jetson-orin needs 1 counted board(s), the run has 0" in refused.stdout
    assert "cortex-a53 needs" not in refused.stdout
    assert not (run_dir / "signoff.json").exists()


def test_standin_only_runs_are_refused_under_the_default_policy(runs, tmp_path):
    run_dir, run_id = copy_run(runs, "good", tmp_path)
    refused = sign(tmp_path, run_id, "--checklist", str(CHECKLISTS / "dms.yaml"))
    assert refused.returncode == 1
    assert "so-a53 is a stand-in on the controller" in refused.stdout
    assert "policy: boards: no board of the run counts under the policy" in refused.stdout
    assert not (run_dir / "signoff.json").exists()


def test_dry_run_lists_every_unmet_rule_and_writes_nothing(runs, tmp_path):
    run_dir, run_id = copy_run(runs, "good", tmp_path)
    strict = demo_with_policy(tmp_path, "min_rounds: 3", "model: facemesh")
    dry = farm("signoff", "sign", run_id, "--checklist", strict, "--dry-run", cwd=tmp_path)
    assert dry.returncode == 1
    assert "MISSING: policy: model: the policy is for 'facemesh', the run measured 'digits'" in dry.stdout
    assert dry.stdout.count("MISSING: policy: min_rounds:") == 6, "two boards x three variants"
    assert "nothing written" in dry.stdout and not (run_dir / "signoff.json").exists()


# -- what verify checks against the record's word: namespace, folder, time, policy -----------------------------

def resign(path: Path, key: Path, namespace: str = "farm-signoff", change=None) -> None:
    """The record, edited by `change` and signed again with `key` in `namespace`, as ssh-keygen lets a key holder."""
    record = json.loads(path.read_text())
    if change:
        change(record)
    path.write_bytes(canonical(record))
    path.with_name("signoff.json.sig").unlink()
    subprocess.run(["ssh-keygen", "-Y", "sign", "-q", "-f", str(key), "-n", namespace, str(path)], check=True)


@pytest.mark.parametrize("namespace", ["git", "file"])
def test_a_record_signed_in_another_namespace_by_a_key_allowed_every_namespace_is_refused(runs, tmp_path,
                                                                                           namespace):
    run_dir, run_id = copy_run(runs, "good", tmp_path)
    public = " ".join((tmp_path / "ada.pub").read_text().split()[:2])
    (tmp_path / "allowed_signers").write_text(f"ada@example.com {public}\n")  # no namespaces= restriction
    assert sign(tmp_path, run_id).returncode == 0
    path = run_dir / "signoff.json"
    resign(path, tmp_path / "ada", namespace, lambda r: r["signer"].update(namespace=namespace))
    verified = farm("signoff", "verify", str(path), cwd=tmp_path)
    assert verified.returncode == 1, verified.stdout
    assert f"signed in namespace {namespace!r}; sign-offs verify in 'farm-signoff' only" in verified.stdout
    assert "does not match its content in namespace 'farm-signoff'" in verified.stdout
    assert "verified:" not in verified.stdout


def test_a_record_and_its_signature_copied_into_another_run_folder_are_refused_unless_record_only(runs, tmp_path):
    run_dir, run_id = copy_run(runs, "good", tmp_path)
    assert sign(tmp_path, run_id).returncode == 0
    other_dir, other_id = copy_run(runs, "bad", tmp_path)
    for folder in (other_dir, run_dir.parent / "20990101T000000Z-beef"):
        folder.mkdir(exist_ok=True)
        for name in ("signoff.json", "signoff.json.sig"):
            shutil.copy(run_dir / name, folder / name)
    empty = farm("signoff", "verify", str(run_dir.parent / "20990101T000000Z-beef"), cwd=tmp_path)
    assert empty.returncode == 1, empty.stdout
    assert f"the record is for run {run_id}, it sits in the folder of '20990101T000000Z-beef'" in empty.stdout
    assert "FAILS: results.json: signed, not beside the record" in empty.stdout
    other = farm("signoff", "verify", str(other_dir), cwd=tmp_path)
    assert other.returncode == 1 and f"it sits in the folder of {other_id!r}" in other.stdout
    assert "results.json was changed after signing" in other.stdout

    alone = farm("signoff", "verify", str(run_dir.parent / "20990101T000000Z-beef"), "--record-only", cwd=tmp_path)
    assert alone.returncode == 0, alone.stdout
    assert "verified (record only: the run folder was not compared)" in alone.stdout


def test_a_signing_time_in_the_future_or_past_the_policys_age_is_refused_at_verify(runs, tmp_path):
    run_dir, run_id = copy_run(runs, "good", tmp_path)
    assert sign(tmp_path, run_id).returncode == 0
    path, key = run_dir / "signoff.json", tmp_path / "ada"
    signed = datetime.fromisoformat(json.loads(path.read_text())["signed_at"])
    resign(path, key, change=lambda r: r.update(signed_at=(signed + timedelta(days=3)).isoformat()))
    future = farm("signoff", "verify", str(path), cwd=tmp_path)
    assert future.returncode == 1 and "is in the future" in future.stdout, future.stdout

    def stale(record):  # the run ended 30 days before it was signed: the policy allows 14
        record["signed_at"] = signed.isoformat()
        record["evidence"]["run"]["finished"] = (signed - timedelta(days=30)).isoformat()
    resign(path, key, change=stale)
    old = farm("signoff", "verify", str(path), "--record-only", cwd=tmp_path)
    assert old.returncode == 1, old.stdout
    assert "FAILS: policy at signing: max_age_days: the run ended 30.0 days ago, the policy allows 14" in old.stdout


def pin(folder: Path, checklist: Path) -> str:
    """The project pins `checklist` as its release policy; its sha256."""
    sha = load_checklist(checklist).sha256
    project(folder, f'release_policy = {{path = "{checklist}", sha256 = "{sha}"}}')
    return sha


def test_a_record_signed_under_the_demo_policy_does_not_verify_as_the_pinned_release_policy(runs, tmp_path):
    run_dir, run_id = copy_run(runs, "good", tmp_path)
    assert sign(tmp_path, run_id).returncode == 0  # under the project's checklist: the demo's, nothing pinned
    demo = load_checklist(tmp_path / "steady.yaml").sha256
    unpinned = farm("signoff", "verify", str(run_dir), cwd=tmp_path)
    assert unpinned.returncode == 0 and f"policy: signed under steady (sha256 {demo})" in unpinned.stdout
    assert "no release policy pinned" in unpinned.stdout

    release = pin(tmp_path, CHECKLISTS / "dms.yaml")
    verified = farm("signoff", "verify", str(run_dir), cwd=tmp_path)
    assert verified.returncode == 1, verified.stdout
    assert (f"FAILS: signed under policy steady (sha256 {demo}), not the pinned release policy dms "
            f"(sha256 {release})") in verified.stdout


def test_signing_holds_the_run_to_the_pinned_release_policy_not_the_checklist_the_run_names(runs, tmp_path):
    run_dir, run_id = copy_run(runs, "good", tmp_path)  # its results.json names the demo's checklist
    release = pin(tmp_path, CHECKLISTS / "dms.yaml")
    dry = farm("signoff", "sign", run_id, "--dry-run", cwd=tmp_path)
    assert dry.returncode == 1, dry.stdout
    assert f"policy: dms (sha256 {release})" in dry.stdout
    assert "MISSING: policy: boards: no board of the run counts under the policy" in dry.stdout

    lenient = tmp_path / "release.yaml"  # a release policy that lets stand-ins count: what it signs verifies
    lenient.write_text(f"name: release\nextends: {tmp_path / 'steady.yaml'}\nitems: {{}}\nsignoff:\n"
                       "  min_rounds: 1\n")
    sha = pin(tmp_path, lenient)
    assert sign(tmp_path, run_id).returncode == 0
    verified = farm("signoff", "verify", str(run_dir), cwd=tmp_path)
    assert verified.returncode == 0, verified.stdout
    assert f"policy: signed under release (sha256 {sha})" in verified.stdout
    assert "verified as a release: signed by ada@example.com" in verified.stdout


def test_a_pinned_release_policy_whose_file_changed_is_a_one_line_error(runs, tmp_path):
    copy_run(runs, "good", tmp_path)
    lenient = tmp_path / "release.yaml"
    lenient.write_text(f"name: release\nextends: {tmp_path / 'steady.yaml'}\nitems: {{}}\n")
    pin(tmp_path, lenient)
    lenient.write_text(lenient.read_text() + "signoff:\n  max_age_days: 400\n")
    proc = farm("signoff", "verify", "results", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "farm.toml:3, field 'release_policy.sha256'" in proc.stderr and "the policy changed" in proc.stderr
    assert f'pin sha256 = "{load_checklist(lenient).sha256}"' in proc.stderr


def test_a_standin_reached_as_127_1_without_standin_true_is_on_the_controller_for_the_release_policy(lab, tmp_path):
    _, boards = lab
    board = boards["t1"]
    known = tmp_path / "known_hosts"
    known.write_text(Path(board.known_hosts).read_text().replace("[127.0.0.1]:", "[127.1]:"))
    (tmp_path / "real.yaml").write_text(textwrap.dedent(f"""
        boards:
          - name: bench-01
            host: "127.1"
            port: {board.port}
            user: {board.user}
            identity_file: {board.identity_file}
            known_hosts: {known}
            python: {board.python}
            workdir: {board.workdir}
        """))
    ran = farm("run", "--inventory", "real.yaml", "--checklist", str(CHECKLISTS / "dms.yaml"), "--runs", "20",
               cwd=tmp_path)
    assert ran.returncode in (0, 1), ran.stdout[-2000:] + ran.stderr[-2000:]
    dry = farm("signoff", "sign", "latest", "--dry-run", "--inventory", "real.yaml", "--checklist",
               str(CHECKLISTS / "dms.yaml"), cwd=tmp_path)
    assert "note: bench-01 is a stand-in on the controller (" in dry.stdout, dry.stdout
    assert "MISSING: policy: boards: no board of the run counts under the policy" in dry.stdout
    assert dry.returncode == 1
    result = json.loads((tmp_path / "results" / "latest" / "results.json").read_text())
    assert result["boards"][0]["status"] == "ok" and result["boards"][0]["on_controller"] is True
