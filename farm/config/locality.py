"""Whether a board is the controller itself: what its address resolves to here, and the kernel it runs on.

A release policy does not count boards that share the controller's CPU (stand-ins), and
a stand-in is one whatever it is called: `127.1`, `0.0.0.0`, `localhost.`, `::ffff:127.0.0.1`
and this machine's own host name all reach this machine. So the host is resolved
(getaddrinfo) and every address compared with loopback, the unspecified address and every
address of this machine's interfaces (/proc/net); and a board whose kernel boot id (probed
on the board) is the controller's is the controller, however it was reached.
"""

from __future__ import annotations

import ipaddress
import socket
from functools import lru_cache
from pathlib import Path

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")  # one per kernel boot: the same in every process it runs


def controller_boot_id() -> str | None:
    try:
        return BOOT_ID.read_text().strip() or None
    except OSError:
        return None


def host_of(address: str | None) -> str:
    """The host of an inventory address: `user@host:port`, `[v6]:port`, `v6`."""
    host = (address or "").rpartition("@")[2]
    if host.startswith("["):
        return host[1:].partition("]")[0]
    if host.count(":") == 1:  # host:port (an IPv6 address has more colons)
        host = host.partition(":")[0]
    return host


def _interface_addresses() -> set[Address]:
    """Every address of this machine's interfaces (Linux: /proc/net's local routes and IPv6 addresses)."""
    found: set[Address] = set()
    try:
        lines = Path("/proc/net/fib_trie").read_text().splitlines()
    except OSError:
        lines = []
    for above, line in zip(lines, lines[1:]):
        if line.strip() == "/32 host LOCAL":
            found.add(ipaddress.ip_address(above.split()[-1]))
    try:
        for line in Path("/proc/net/if_inet6").read_text().splitlines():
            found.add(ipaddress.ip_address(":".join(line.split()[0][i:i + 4] for i in range(0, 32, 4))))
    except (OSError, IndexError, ValueError):
        pass
    return found


@lru_cache(maxsize=1)
def local_addresses() -> frozenset:
    """This machine's addresses: its interfaces', and what its own host names resolve to."""
    found = _interface_addresses()
    for name in {socket.gethostname(), socket.getfqdn()}:
        found |= _resolved(name)
    return frozenset(found)


def _resolved(host: str) -> set[Address]:
    try:
        infos = socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError, OSError):
        return set()
    found = set()
    for info in infos:
        try:
            address = ipaddress.ip_address(str(info[4][0]).partition("%")[0])
        except ValueError:
            continue
        found.add(getattr(address, "ipv4_mapped", None) or address)
    return found


def is_this_machine(host: str) -> bool:
    """`host` reaches this machine: a localhost name, or an address (once resolved) that is loopback,
    unspecified (0.0.0.0, ::) or one of this machine's own."""
    name = host.strip().rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):  # RFC 6761: always loopback
        return True
    if not name:
        return False
    mine = local_addresses()
    return any(a.is_loopback or a.is_unspecified or a in mine for a in _resolved(name))


def on_controller(address: str | None, standin: bool, boot_id: str | None = None,
                  controller_boot_ids: set | frozenset = frozenset()) -> bool:
    """A stand-in, the local transport, an address of this machine, or a board running the controller's kernel."""
    if standin or address == "local":
        return True
    if boot_id and boot_id in controller_boot_ids:
        return True
    return is_this_machine(host_of(address))
