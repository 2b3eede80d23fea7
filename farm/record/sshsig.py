"""SSH signatures: OpenSSH's `ssh-keygen -Y`, the mechanism git uses for signed commits.

Only the holder of a private key can make a signature that verifies, and an
`allowed_signers` file (kept in the project, reviewed like code) says whose
keys may sign, for which namespace. Keys never pass through farm: ssh-keygen
reads them (or asks ssh-agent, given a .pub), and asks for a passphrase itself.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from farm.errors import ConfigError, SignoffError

ALLOWED_SIGNERS_FORMAT = ('one line per signer: `ada@example.com namespaces="farm-signoff" ssh-ed25519 AAAA...` '
                          '(the principal, the namespaces it may sign, the key as in its .pub)')


def _keygen() -> str:
    found = shutil.which("ssh-keygen")
    if found is None:
        raise ConfigError("ssh-keygen is not installed: sign-offs are OpenSSH signatures "
                          "(apt-get install openssh-client)")
    return found


def _run(argv: list[str], data: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([_keygen(), *argv], input=data, capture_output=True, timeout=120, check=False)


def fingerprint(key: Path) -> str:
    """`ED25519 SHA256:...` of a private or public key file."""
    done = _run(["-l", "-f", str(key)])
    if done.returncode != 0:
        raise ConfigError(f"signing key {key}: not a readable SSH key ({done.stderr.decode().strip()})")
    parts = done.stdout.decode().split()
    return f"{parts[-1].strip('()')} {parts[1]}"


def sign(data: bytes, key: Path, namespace: str) -> str:
    """The armored signature of `data` (ssh-keygen asks for a passphrase on the terminal if it needs one)."""
    if not Path(key).is_file():
        raise ConfigError(f"signing key {key}: no such file: give --signing-key (or FARM_SIGNING_KEY, or "
                          "signing_key in [tool.farm])")
    done = subprocess.run([_keygen(), "-Y", "sign", "-q", "-f", str(key), "-n", namespace], input=data,
                          capture_output=True, timeout=300, check=False)
    if done.returncode != 0 or b"BEGIN SSH SIGNATURE" not in done.stdout:
        raise SignoffError(f"ssh-keygen could not sign with {key}: {done.stderr.decode().strip() or 'no signature'}")
    return done.stdout.decode()


@dataclass(frozen=True)
class Verified:
    """What a signature says: valid for the data or not, by which key, and whom allowed_signers names."""

    intact: bool              # the signature matches the data (whoever made it)
    key: str | None           # `ED25519 SHA256:...` of the signing key
    principals: tuple = ()    # who allowed_signers says holds that key, for this namespace
    message: str = ""


def verify(data: bytes, signature: str, namespace: str, allowed_signers: Path) -> Verified:
    """Check `signature` over `data`, then whom `allowed_signers` lets sign with that key in `namespace`."""
    with tempfile.TemporaryDirectory(prefix="farm-sig-") as folder:
        sig = Path(folder) / "record.sig"
        sig.write_text(signature)
        check = _run(["-Y", "check-novalidate", "-n", namespace, "-s", str(sig)], data)
        said = (check.stdout + check.stderr).decode()
        found = re.search(r"with (\S+) key (SHA256:\S+)", said)
        key = f"{found.group(1)} {found.group(2)}" if found else None
        if check.returncode != 0:
            return Verified(False, key, (), said.strip().splitlines()[-1] if said.strip() else "invalid signature")
        candidates = _run(["-Y", "find-principals", "-s", str(sig), "-f", str(allowed_signers)])
        principals = []
        for principal in candidates.stdout.decode().split():
            # find-principals ignores namespaces: `verify` holds each candidate to them.
            done = _run(["-Y", "verify", "-f", str(allowed_signers), "-I", principal, "-n", namespace,
                         "-s", str(sig)], data)
            if done.returncode == 0:
                principals.append(principal)
    message = "" if principals else (f"key {key} is not in {allowed_signers} for namespace {namespace!r}: "
                                     f"{ALLOWED_SIGNERS_FORMAT}")
    return Verified(True, key, tuple(principals), message)


def check_allowed_signers(path: Path) -> Path:
    """The allowed_signers file, or an error saying how to write one."""
    if not Path(path).is_file():
        raise ConfigError(f"allowed signers {path}: no such file: create it, {ALLOWED_SIGNERS_FORMAT}; or give "
                          "--allowed-signers (FARM_ALLOWED_SIGNERS, allowed_signers in [tool.farm])")
    return Path(path)
