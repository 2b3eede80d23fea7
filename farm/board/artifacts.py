"""Content-addressed push: `<workdir>/blobs/<sha256>`, sending only what a board lacks.

One round-trip asks the board to hash the blobs it should have (a present but
corrupted blob counts as missing); missing ones are uploaded to a temporary name
and renamed; the uploads are hashed on the board; a mismatch is sent once more,
then the board errors. An unchanged re-run sends 0 bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from farm.board.transport import Transport
from farm.errors import BoardError
from farm.util import file_sha256

# Fixed script; the folder and hashes arrive as positional parameters, never spliced in.
_HASH_PRESENT = 'd=$1; shift; mkdir -p "$d" && cd "$d" || exit 3; for h; do [ -f "$h" ] && sha256sum "$h"; done; exit 0'


@dataclass(frozen=True)
class Artifact:
    """A local file to place on boards under its content hash."""

    path: Path
    sha256: str

    @classmethod
    def of(cls, path: str | Path) -> "Artifact":
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
        raise BoardError(f"{connection.board.name}: cannot list blobs in {blob_dir(workdir)}: {result.tail()}",
                             "push-failed")
    valid = set()
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == parts[1].lstrip("*"):
            valid.add(parts[0])
    return valid


def push(connection: Transport, workdir: str, artifacts: list[Artifact]) -> PushReport:
    """Make every artifact present and intact on the board."""
    unique = list({a.sha256: a for a in artifacts}.values())
    report = PushReport()
    present = _valid_blobs(connection, workdir, [a.sha256 for a in unique])
    report.already_there = [a.sha256 for a in unique if a.sha256 in present]
    pending = [a for a in unique if a.sha256 not in present]
    for attempt in (1, 2):
        if not pending:
            break
        for artifact in pending:
            report.bytes_sent += connection.put(artifact.path, blob_path(workdir, artifact))
            if attempt == 1:
                report.uploaded.append(artifact.sha256)
            else:
                report.resent.append(artifact.sha256)
        arrived = _valid_blobs(connection, workdir, [a.sha256 for a in pending])
        pending = [a for a in pending if a.sha256 not in arrived]
    if pending:
        names = ", ".join(a.path.name for a in pending)
        raise BoardError(f"{connection.board.name}: {names} arrived corrupted twice (sha256 mismatch on the board)",
                             "push-failed")
    return report
