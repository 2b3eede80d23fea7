"""Small helpers every layer uses: time stamps, run ids, file hashes, atomic JSON writes."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import secrets
import shutil
import threading
from pathlib import Path

# Board and stand-in names become folder and file names: a letter or digit first, so never `.` or `..`.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def new_run_id() -> str:
    """UTC time plus randomness: sorts by time, and two controllers never collide."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json_atomic(path: Path, doc: dict) -> None:
    """Write to a temporary name, then rename: a reader never sees half a document."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    partial.write_text(json.dumps(doc, indent=1) + "\n")
    partial.replace(path)


def remove_tree(path: Path, inside: Path) -> None:
    """Delete a folder farm made, and only that: a direct child of `inside`, named as farm names things.

    A stand-in named `..` once had the lab dir's parent emptied; nothing here
    follows a link or leaves `inside`.
    """
    path, inside = Path(path), Path(inside)
    if not NAME_RE.match(path.name) or path.parent.resolve() != inside.resolve() or path.is_symlink():
        raise ValueError(f"refusing to delete {path}: not a folder farm made directly in {inside}")
    if path.exists():
        shutil.rmtree(path)


# -- database URLs: never a password in argv, a log or a message ---------------------------------------------------
SECRET_PARAMS = ("password", "sslpassword")
_USERINFO_RE = re.compile(r"(//[^/:@\s]*):[^@/\s]*@")
_PASSWORD_PARAM_RE = re.compile(r"((?:^|[?&\s])(?:ssl)?password=)[^&\s]*", re.IGNORECASE)


def _conninfo(url: str) -> dict[str, str] | None:
    """libpq's own reading of a URL or `key=value` string (psycopg), None where psycopg is missing or it is not one."""
    try:
        from psycopg.conninfo import conninfo_to_dict
    except ImportError:
        return None
    try:
        return {key: str(value) for key, value in conninfo_to_dict(url).items()}
    except Exception:  # noqa: BLE001 - psycopg's ProgrammingError for what is not a conninfo: redact by pattern
        return None


def _as_url(params: dict[str, str], password: str | None) -> str:
    from urllib.parse import quote, urlencode

    rest = {key: value for key, value in params.items() if key not in ("user", "dbname", *SECRET_PARAMS)}
    host, port = rest.get("host", ""), rest.get("port", "")
    netloc = ""
    if "," not in host and not host.startswith("/") and "," not in port:
        rest.pop("host", None), rest.pop("port", None)
        netloc = (f"[{host}]" if ":" in host else host) + (f":{port}" if port else "")
    user = quote(params.get("user", ""), safe="")
    if user or password:
        netloc = f"{user}{':' + password if password else ''}@{netloc}"
    query = f"?{urlencode(sorted(rest.items()))}" if rest else ""
    return f"postgresql://{netloc}/{quote(params.get('dbname', ''), safe='')}{query}"


def redact_url(url: str) -> str:
    """A store URL fit to print: a password, as `user:pass@` or `?password=`, shown as ***; any other text unchanged."""
    text = str(url)
    if text.startswith(("postgresql://", "postgres://")) and (params := _conninfo(text)) is not None:
        if not any(key in params for key in SECRET_PARAMS):
            return text
        return _as_url(params, "***" if "password" in params else None)
    return _PASSWORD_PARAM_RE.sub(r"\1***", _USERINFO_RE.sub(r"\1:***@", text))


def split_password(url: str) -> tuple[str, str | None]:
    """A postgresql:// URL without its password, and the password (for the environment or a PGPASSFILE)."""
    params = _conninfo(url) if url.startswith(("postgresql://", "postgres://")) else None
    if params is None or "password" not in params:
        return url, None
    return _as_url({k: v for k, v in params.items() if k != "password"}, None), params["password"]


def scrub(text: str, url: str) -> str:
    """A message about `url` (a driver's error, say) with the URL's password, wherever it appears, as ***."""
    password = split_password(url)[1]
    text = text.replace(url, redact_url(url))
    return text.replace(password, "***") if password else text
