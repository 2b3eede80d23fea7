"""`farm serve`: the lab dashboard over the history (and the queue), in a browser."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import re
import socket
from pathlib import Path

from farm.config import options
from farm.config.project import find_project_config
from farm.config.settings import history_url
from farm.errors import ConfigError

log = logging.getLogger(__name__)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


HOST_NAME = re.compile(r"^(\*\.)?[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$|^\[[0-9A-Fa-f:.]+\]$")


def allowed_hosts(given: list[str] | None, bind: str) -> tuple[str, ...]:
    """The Host names the dashboard answers to: loopback's; off loopback, the bind address and this machine's
    names too; and each --allowed-host."""
    from farm.ui.web.app import LOOPBACK_HOSTS

    names = list(LOOPBACK_HOSTS)
    if not _loopback(bind):
        names += [socket.gethostname().lower(), socket.getfqdn().lower()]
        if bind not in ("0.0.0.0", "::"):
            names.append(f"[{bind}]" if ":" in bind else bind)
    for name in given or []:
        if not HOST_NAME.match(name):
            raise ConfigError(f"--allowed-host {name!r}: not a host name (`dash.lab.example`, `*.lab.example`, "
                              "`10.0.0.5`, `[fd00::5]`): the names a browser puts in the Host header, and no `*` "
                              "alone (any name lets DNS rebinding in)")
        names.append(name.lower())
    return tuple(dict.fromkeys(names))


def cmd_serve(args: argparse.Namespace) -> int:
    from farm.record.history import History, sqlite_path
    from farm.ui.web.app import serve
    from farm.ui.web.data import Sources

    found = options.resolve(lambda name: getattr(args, name, None), project=find_project_config(),
                            options=(options.OUT, options.BY_NAME["history"]) + options.QUEUE_OPTIONS
                            + options.SIGNOFF_OPTIONS[1:])
    token = args.token or os.environ.get("FARM_SERVE_TOKEN") or None
    if not _loopback(args.host) and not token:
        raise ConfigError(f"--host {args.host} is reachable from other machines: give --token (or FARM_SERVE_TOKEN), "
                          "or serve on 127.0.0.1 behind your own proxy")
    url = history_url(found["out"].value, found["history"].value)
    if url is None:
        raise ConfigError("--history none: the dashboard shows the history; give one")
    path = sqlite_path(url)
    if path is not None and not path.is_file():  # a typo in --out must not leave an empty history behind
        raise ConfigError(f"no history at {path}: the dashboard reads one and makes none; record runs there first "
                          "(`farm run`), or give --history / --out where they are")
    hosts = allowed_hosts(args.allowed_host, args.host)
    queue = None
    if found["queue"].value:
        from farm.queue.store import Store

        queue = Store(found["queue"].value)
    if bool(args.tls_cert) != bool(args.tls_key):
        raise ConfigError("--tls-cert and --tls-key go together: give both (a PEM certificate and its key), or neither")
    for given in (args.tls_cert, args.tls_key):
        if given and not Path(given).is_file():
            raise ConfigError(f"{given}: no such file (--tls-cert / --tls-key: PEM files)")
    signers = found["allowed_signers"].value
    sources = Sources(History(url), Path(found["out"].value), queue, Path(signers) if signers else None)
    tls = (args.tls_cert, args.tls_key) if args.tls_cert else None
    log.info(f"dashboard on http{'s' if tls else ''}://{args.host}:{args.port}/ for Host {', '.join(hosts)} "
             "(Ctrl-C stops it)")
    serve(sources, args.host, args.port, token, hosts, tls)
    return 0


def register(sub) -> None:
    serve = sub.add_parser("serve", help="the lab dashboard: boards, runs, trends, sign-offs, queue; /api/, /metrics")
    options.add_to_argparse(serve, (options.OUT, options.BY_NAME["history"]) + options.QUEUE_OPTIONS
                            + options.SIGNOFF_OPTIONS[1:])
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--token", help="required from every client when --host is not loopback; prefer the "
                                       "environment: a command line is seen by every local user [env FARM_SERVE_TOKEN]")
    serve.add_argument("--tls-cert", help="PEM certificate: serve https (the token cookie is then Secure)")
    serve.add_argument("--tls-key", help="the certificate's PEM private key")
    serve.add_argument("--allowed-host", action="append", metavar="NAME",
                       help="a Host name clients reach the dashboard by, besides loopback's (repeatable; "
                            "`*.lab.example` for a domain): any other Host header is refused, so a web page "
                            "that rebinds its DNS name to this machine reaches nothing")
    serve.set_defaults(func=cmd_serve)
