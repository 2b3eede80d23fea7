"""Content-addressed push: `<workdir>/blobs/<sha256>`, sending only what a board lacks.

One round-trip asks the board to hash the blobs it should have (a present but
corrupted blob counts as missing) and clears what interrupted pushes left (the
run holds the board's lock: no other push is under way); missing ones are
uploaded to a temporary name and renamed; the uploads are hashed on the board; a
mismatch is sent once more, then the board errors. An unchanged re-run sends 0
bytes. Each run records which blobs it used (`<workdir>/runs/<run>`), so
`farm boards clean` can free what no recent run needs.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from pathlib import Path

from farm.board.transport import Transport
from farm.errors import BoardError
from farm.statuses import BoardStatus
from farm.util import file_sha256

# Fixed scripts; folders and hashes arrive as positional parameters, never spliced in.
_HASH_PRESENT = ('d=$1; shift; mkdir -p "$d" && cd "$d" || exit 3; rm -f ./*.partial-*; '
                 'for h; do [ -f "$h" ] && sha256sum "$h"; done; exit 0')
_RECORD_RUN = 'd=$1; run=$2; shift 2; mkdir -p "$d" && printf "%s\\n" "$@" > "$d/$run"'
# After a failed upload: drop what it left (the run holds the lock: no other push is under way), then say
# what the board has free, which is what it had before the push.
_DROP_PARTIAL_FREE_KB = 'rm -f "$1"/*.partial-*; df -Pk "$1" | awk \'NR == 2 {print $4}\''
# Keep the blobs the `keep` newest runs used; delete other blobs (64 hex digits, nothing else) and older run
# records. Runs while holding the board's lock, so no push is under way.
_CLEAN = r'''
d=$1; keep=$2
cd "$d" 2>/dev/null || { echo "freed 0"; exit 0; }
mkdir -p runs blobs
ls -t runs | tail -n +$((keep + 1)) | while read -r old; do rm -f -- "runs/$old"; done
cat runs/* 2>/dev/null | sort -u > .keep
freed=0
for blob in blobs/*; do
  name=${blob#blobs/}
  case "$name" in *[!0-9a-f]*|"") continue ;; esac
  [ ${#name} -eq 64 ] || continue
  grep -qx "$name" .keep && continue
  size=$(wc -c < "$blob") && rm -f -- "$blob" && freed=$((freed + size))
done
for partial in blobs/*.partial-*; do  # what an interrupted push left: freed too, and counted
  [ -f "$partial" ] || continue
  size=$(wc -c < "$partial") && rm -f -- "$partial" && freed=$((freed + size))
done
rm -f .keep
echo "freed $freed"
'''


@dataclass(frozen=True)
class Artifact:
    """A local file to place on boards under its content hash."""

    path: Path
    sha256: str

    @classmethod
    def of(cls, path: str | Path) -> Artifact:
        return cls(Path(path), file_sha256(Path(path)))

    @property
    def size(self) -> int:
        return self.path.stat().st_size


@dataclass
class PushReport:
    bytes_sent: int = 0
    uploaded: list[str] = field(default_factory=list)
    already_there: list[str] = field(default_factory=list)
    resent: list[str] = field(default_factory=list)


def blob_dir(workdir: str) -> str:
    return f"{workdir.rstrip('/')}/blobs"


def blob_path(workdir: str, artifact: Artifact) -> str:
    return f"{blob_dir(workdir)}/{artifact.sha256}"


def _valid_blobs(connection: Transport, workdir: str, hashes: list[str]) -> set[str]:
    result = connection.run(["sh", "-c", _HASH_PRESENT, "sh", blob_dir(workdir), *hashes], deadline_s=300)
    if not result.ok:
        status = BoardStatus.PERMISSION_DENIED if "ermission denied" in result.tail() else BoardStatus.PUSH_FAILED
        raise BoardError(f"{connection.board.name}: cannot use {blob_dir(workdir)}: {result.tail()}", status)
    valid = set()
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == parts[1].lstrip("*"):
            valid.add(parts[0])
    return valid


def runs_dir(workdir: str) -> str:
    return f"{workdir.rstrip('/')}/runs"


def _upload_error(connection: Transport, workdir: str, artifact: Artifact, exc: OSError) -> BoardError:
    """disk-full with the board's free space, or permission-denied with the path; else push-failed.

    The partial blob the upload left is removed first: the board is not left full, and the free space
    said is what the board had, not what the failed push left."""
    board, target = connection.board.name, blob_path(workdir, artifact)
    if exc.errno in (errno.EACCES, errno.EPERM) or "ermission denied" in str(exc):
        user = connection.board.user or "the login user"
        return BoardError(f"{board}: permission denied writing {target}: let {user}"
                          f" write {blob_dir(workdir)}, or choose another workdir", BoardStatus.PERMISSION_DENIED)
    free = connection.run(["sh", "-c", _DROP_PARTIAL_FREE_KB, "sh", blob_dir(workdir)], deadline_s=30).stdout.strip()
    if exc.errno == errno.ENOSPC or (free.isdigit() and int(free) * 1024 < artifact.size):
        shown = f"{int(free) / 1024:.1f} MB free" if free.isdigit() else "no space left"
        return BoardError(f"{board}: disk full: {shown} in {blob_dir(workdir)}, {artifact.path.name} needs "
                          f"{artifact.size / 1e6:.1f} MB; `farm boards clean` frees old blobs", BoardStatus.DISK_FULL)
    return BoardError(f"{board}: pushing {artifact.path.name} to {target} failed: {exc}", BoardStatus.PUSH_FAILED)


def push(connection: Transport, workdir: str, artifacts: list[Artifact], run_id: str | None = None,
         stopped=lambda: False) -> PushReport:
    """Make every artifact present and intact on the board; `stopped()` (a cancel) ends it early."""
    unique = list({a.sha256: a for a in artifacts}.values())
    report = PushReport()
    present = _valid_blobs(connection, workdir, [a.sha256 for a in unique])
    report.already_there = [a.sha256 for a in unique if a.sha256 in present]
    pending = [a for a in unique if a.sha256 not in present]
    for attempt in (1, 2):
        if not pending:
            break
        for artifact in pending:
            try:
                report.bytes_sent += connection.put(artifact.path, blob_path(workdir, artifact), stopped=stopped)
            except OSError as exc:
                raise _upload_error(connection, workdir, artifact, exc) from exc
            if attempt == 1:
                report.uploaded.append(artifact.sha256)
            else:
                report.resent.append(artifact.sha256)
        arrived = _valid_blobs(connection, workdir, [a.sha256 for a in pending])
        pending = [a for a in pending if a.sha256 not in arrived]
    if pending:
        names = ", ".join(a.path.name for a in pending)
        raise BoardError(f"{connection.board.name}: {names} arrived corrupted twice (sha256 mismatch on the board)",
                         BoardStatus.PUSH_FAILED)
    if run_id:
        connection.run(["sh", "-c", _RECORD_RUN, "sh", runs_dir(workdir), run_id, *(a.sha256 for a in unique)],
                       deadline_s=30)
    return report


def clean(connection: Transport, workdir: str, keep_runs: int) -> int:
    """Free board disk: blobs no run among the `keep_runs` newest used. Returns the bytes freed."""
    result = connection.run(["sh", "-c", _CLEAN, "sh", workdir, str(keep_runs)], deadline_s=300)
    words = result.stdout.split()
    if not result.ok or words[:1] != ["freed"]:
        denied = "ermission denied" in result.tail()
        raise BoardError(f"{connection.board.name}: cleaning {workdir} failed: {result.tail()}",
                         BoardStatus.PERMISSION_DENIED if denied else BoardStatus.AGENT_ERROR)
    return int(words[1])
