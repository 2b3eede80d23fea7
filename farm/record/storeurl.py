"""Store URLs (the history's, the queue's) as farm prints and passes them: never a password in argv, a log or a message.

libpq's own parser (psycopg's conninfo_to_dict) says what the password is,
however it is given (`user:pass@`, `?password=`, percent-encoded); the URL is
then written again from what it parsed, less the password. Without psycopg a
pattern does the same for the two usual forms.
"""

from __future__ import annotations

import re

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
    except Exception:
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
