"""Emulated Arm boards: an arm64 root file system run under qemu-user with a chosen CPU model.

The root file system (Python 3.11, numpy and onnxruntime for aarch64) is built
once from Debian's arm64 packages and PyPI's aarch64 wheels, without debootstrap,
and cached under `<cache>/arm64-rootfs` (`host.cache_dir`). A stand-in's sshd chroots its sessions
into it (bind-mounted on /srv in a private mount namespace, /proc only:
onnxruntime segfaults under QEMU when /sys is mounted too) and sets QEMU_CPU, so
the agent runs unchanged on an emulated Cortex-A53 / A72 / A76.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import sys
import tempfile
from pathlib import Path

from farm.errors import ConfigError
from farm.lab.host import cache_dir, run_checked

ROOTFS_PACKAGES = ("python3.11-minimal", "libpython3.11-stdlib", "libstdc++6", "libgomp1", "bash", "dash",
                   "coreutils", "base-files")
# Recursive dependencies a measuring board does not need (alternatives and package tooling).
SKIPPED = ("dpkg", "install-info", "gawk", "original-awk", "perl", "perl-base", "perl-modules-5.36")
WHEEL_PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_27_aarch64", "manylinux_2_28_aarch64")
CHROOT = "/srv"
BINFMT = Path("/proc/sys/fs/binfmt_misc")

log = logging.getLogger(__name__)


def ensure_qemu() -> None:
    """qemu-user-static registered with binfmt (PF flags: usable inside a chroot)."""
    if os.geteuid() != 0:
        raise ConfigError("emulated Arm stand-ins need root (chroot, mount namespaces, binfmt)")
    if not Path("/usr/bin/qemu-aarch64-static").exists():
        log.info("lab: installing qemu-user-static and binfmt-support (once)")
        run_checked(["apt-get", "update", "-qq"], "apt-get update")
        run_checked(["apt-get", "install", "-y", "-qq", "qemu-user-static", "binfmt-support"], "installing QEMU")
    if not (BINFMT / "register").exists():
        run_checked(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], "mounting binfmt_misc")
    if not (BINFMT / "qemu-aarch64").exists():
        run_checked(["update-binfmts", "--enable", "qemu-aarch64"], "registering qemu-aarch64")


def _arm64_packages() -> list[str]:
    if "arm64" not in run_checked(["dpkg", "--print-foreign-architectures"], "dpkg").split():
        run_checked(["dpkg", "--add-architecture", "arm64"], "dpkg --add-architecture arm64")
        run_checked(["apt-get", "update", "-qq"], "apt-get update")
    out = run_checked(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts",
                "--no-breaks", "--no-replaces", "--no-enhances", *(f"{p}:arm64" for p in ROOTFS_PACKAGES)],
               "apt-cache depends")
    names = {line.strip() for line in out.splitlines() if line and not line.startswith((" ", "<"))}
    return sorted(n for n in names if n.endswith(":arm64") and n.split(":")[0] not in SKIPPED)


def _install_wheels(rootfs: Path, work: Path) -> None:
    import numpy
    import onnxruntime

    wanted = [f"numpy=={numpy.__version__}", f"onnxruntime=={onnxruntime.__version__}"]
    platforms = [arg for p in WHEEL_PLATFORMS for arg in ("--platform", p)]
    common = ["--only-binary=:all:", *platforms, "--python-version", "3.11", "--implementation", "cp",
              "--abi", "cp311", "--no-deps"]
    pip = [sys.executable, "-m", "pip"]
    run_checked([*pip, "download", "-q", *common, "-d", str(work / "wheels"), *wanted], "downloading aarch64 wheels")
    run_checked([*pip, "install", "-q", "--no-index", "--find-links", str(work / "wheels"), *common,
          "--target", str(rootfs / "usr/local/lib/python3.11/dist-packages"), *wanted], "installing aarch64 wheels")


def _finish(rootfs: Path, user: str) -> None:
    """What debootstrap's second stage would do, reduced to what a measuring board needs."""
    links = {"bin/sh": "dash", "usr/bin/python3": "python3.11"}
    for link, target in links.items():
        path = rootfs / link
        if not path.exists():
            path.symlink_to(target)
    entry = pwd.getpwnam(user)
    (rootfs / "etc/passwd").write_text(f"root:x:0:0:root:/root:/bin/sh\n"
                                       f"{user}:x:{entry.pw_uid}:{entry.pw_gid}::/home/{user}:/bin/sh\n")
    (rootfs / "etc/group").write_text(f"root:x:0:\n{user}:x:{entry.pw_gid}:\n")
    for folder, mode in (("tmp", 0o1777), ("proc", 0o555), ("dev", 0o755), (f"home/{user}", 0o755)):
        (rootfs / folder).mkdir(parents=True, exist_ok=True)
        (rootfs / folder).chmod(mode)
    os.chown(rootfs / f"home/{user}", entry.pw_uid, entry.pw_gid)
    for name, major, minor in (("null", 1, 3), ("zero", 1, 5), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)):
        node = rootfs / "dev" / name
        if not node.exists():
            os.mknod(node, 0o666 | 0o020000, os.makedev(major, minor))
            node.chmod(0o666)
    # A non-root login cannot write .pyc files: compile once, or every start is twice as slow.
    run_checked(["python3", "-m", "compileall", "-q", "-s", str(rootfs), "-p", "/", str(rootfs / "usr/lib/python3.11"),
          str(rootfs / "usr/local/lib/python3.11")], "compileall")


def rootfs_path() -> Path:
    return cache_dir() / "arm64-rootfs"


def ensure_rootfs(user: str) -> Path:
    """The cached arm64 root file system, built on first use (about a minute)."""
    cache = cache_dir()
    rootfs = rootfs_path()
    if (rootfs / ".farm-complete").exists():
        return rootfs
    log.info(f"lab: building the arm64 root file system in {rootfs} (once)")
    partial = cache / "arm64-rootfs.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="farm-arm64-") as tmp:
        work = Path(tmp)
        packages = _arm64_packages()
        log.info(f"lab: downloading {len(packages)} arm64 packages")
        run_checked(["apt-get", "download", "-qq", *packages], "apt-get download", cwd=work)
        for deb in sorted(work.glob("*.deb")):
            run_checked(["dpkg-deb", "-x", str(deb), str(partial)], f"unpacking {deb.name}")
        log.info("lab: installing numpy and onnxruntime aarch64 wheels")
        _install_wheels(partial, work)
    _finish(partial, user)
    partial.chmod(0o755)  # ChrootDirectory: root-owned, not group/world writable
    (partial / ".farm-complete").write_text("ok\n")
    shutil.rmtree(rootfs, ignore_errors=True)
    partial.rename(rootfs)
    return rootfs


def chrooted_sshd(rootfs: Path, sshd: str, config: Path) -> list[str]:
    """sshd in a private mount namespace with the rootfs on /srv and /proc (not /sys) mounted."""
    Path(CHROOT).mkdir(exist_ok=True)
    script = 'mount --bind "$1" /srv && mount -t proc proc /srv/proc && exec "$2" -D -e -f "$3"'
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", str(rootfs), sshd, str(config)]


def sshd_settings(qemu_cpu: str) -> list[str]:
    return [f"ChrootDirectory {CHROOT}", f"SetEnv QEMU_CPU={qemu_cpu}"]
