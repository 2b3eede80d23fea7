"""Full-system emulated Arm boards: qemu-system-aarch64 with a real arm64 kernel and sshd.

For users who need a real Arm kernel and /proc (a qemu-user stand-in shows the
host's). Built once under `<cache>/fullsystem/`: Debian's arm64 kernel, an
initramfs (static busybox + the virtio/ext4 modules the kernel builds as
modules), and a root image (the qemu-user root file system plus openssh-server).
Each board boots that image with `-snapshot` (its writes are thrown away when
it stops) and a small config disk of its own: host key, authorized key, sshd
config, so every board has its own verified host key. The network is QEMU's
user mode, restricted, with only sshd forwarded to a port on 127.0.0.1.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from farm.lab import emulation
from farm.lab.host import cache_dir, run_checked

KERNEL_PACKAGE = "linux-image-arm64"  # the metapackage: its dependency is the current kernel
# crc32c_generic: ext4 asks for crc32c through the crypto API at run time, not in its `depends=`.
MODULES = ("virtio_mmio", "virtio_blk", "crc32c_generic", "ext4", "virtio_net")
# Recursive dependencies of openssh-server a board without package management does not need.
SSH_SKIPPED = ("cdebconf", "dpkg", "install-info", "libdebian-installer4", "libnewt0.52", "libslang2",
               "libtextwrap1", "perl", "perl-base", "libperl5.36", "procps", "sysvinit-utils", "tar")
BOOT_TIMEOUT_S = 180.0

log = logging.getLogger(__name__)

_INITRD_INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in {modules}; do insmod /lib/modules/$m.ko; done
# By label: QEMU's virt machine numbers virtio-mmio disks in reverse command-line order.
for i in $(seq 100); do root=$(findfs LABEL=farmroot 2>/dev/null) && break; sleep 0.1; done
mount -t ext4 -o rw "$root" /newroot
mount --move /dev /newroot/dev
umount /proc /sys
exec switch_root /newroot /sbin/farm-init
"""
_BOARD_INIT = """#!/bin/busybox sh
# PID 1 of a farm full-system board: mount, read this board's config disk, network, sshd.
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t tmpfs -o mode=755 tmpfs /run
/bin/busybox mkdir -p /run/sshd /etc/ssh/farm
/bin/busybox mount -t ext4 -o ro "$(/bin/busybox findfs LABEL=farmconfig)" /etc/ssh/farm
/bin/busybox hostname "$(/bin/busybox cat /etc/ssh/farm/hostname)"
/bin/busybox ip link set lo up
/bin/busybox ip addr add 10.0.2.15/24 dev eth0
/bin/busybox ip link set eth0 up
/bin/busybox ip route add default via 10.0.2.2
while true; do /usr/sbin/sshd -D -e -f /etc/ssh/farm/sshd_config; /bin/busybox sleep 1; done
"""


def ensure_tools() -> None:
    missing = [pkg for tool, pkg in (("qemu-system-aarch64", "qemu-system-arm"), ("cpio", "cpio"),
                                     ("qemu-img", "qemu-utils"), ("mkfs.ext4", "e2fsprogs"))
               if not shutil.which(tool)]
    if missing:
        log.info(f"lab: installing {', '.join(missing)} (once)")
        run_checked(["apt-get", "update", "-qq"], "apt-get update")
        run_checked(["apt-get", "install", "-y", "-qq", *missing], "installing full-system QEMU")


def module_order(modules_root: Path, wanted: tuple[str, ...]) -> list[Path]:
    """Modules and their dependencies, dependencies first, read from each .ko's `depends=` field."""
    index = {p.stem.replace("-", "_"): p for p in modules_root.rglob("*.ko")}
    order: list[str] = []

    def add(name: str) -> None:
        name = name.replace("-", "_")
        if name in order or name not in index:  # absent: built into the kernel
            return
        found = re.search(rb"\x00depends=([^\x00]*)\x00", index[name].read_bytes())
        for dependency in filter(None, (found.group(1).decode() if found else "").split(",")):
            add(dependency)
        order.append(name)

    for name in wanted:
        add(name)
    return [index[name] for name in order]


def _kernel(work: Path, out: Path) -> None:
    depends = run_checked(["apt-cache", "depends", f"{KERNEL_PACKAGE}:arm64"], "apt-cache depends")
    kernel = next(m.group(1) for m in re.finditer(r"Depends: (linux-image-\S+)", depends))
    log.info(f"lab: downloading {kernel} and busybox-static for arm64")
    run_checked(["apt-get", "download", "-qq", kernel if kernel.endswith(":arm64") else f"{kernel}:arm64",
          "busybox-static:arm64"], "apt-get download", cwd=work)
    for deb in work.glob("*.deb"):
        run_checked(["dpkg-deb", "-x", str(deb), str(work / "unpacked")], f"unpacking {deb.name}")
    unpacked = work / "unpacked"
    shutil.copy(next((unpacked / "boot").glob("vmlinuz-*")), out / "vmlinuz")
    initrd = work / "initrd"
    for folder in ("bin", "proc", "sys", "dev", "newroot", "lib/modules"):
        (initrd / folder).mkdir(parents=True, exist_ok=True)
    shutil.copy(unpacked / "bin" / "busybox", initrd / "bin" / "busybox")
    shutil.copy(unpacked / "bin" / "busybox", out / "busybox")
    ordered = module_order(next((unpacked / "lib" / "modules").iterdir()), MODULES)
    for module in ordered:
        shutil.copy(module, initrd / "lib" / "modules" / module.name)
    init = initrd / "init"
    init.write_text(_INITRD_INIT.format(modules=" ".join(m.stem for m in ordered)))
    init.chmod(0o755)
    files = subprocess.run(["find", "."], cwd=initrd, capture_output=True, check=True).stdout
    archive = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=initrd, input=files,
                             capture_output=True, check=True).stdout
    subprocess.run(["gzip", "-1"], input=archive, stdout=open(out / "initrd.gz", "wb"), check=True)


def _root_image(work: Path, out: Path, user: str) -> None:
    rootfs = emulation.ensure_rootfs(user)
    root = work / "root"
    # cp -a, not shutil.copytree: the latter reads /dev/zero as a file until the disk is full.
    run_checked(["cp", "-a", str(rootfs), str(root)], "copying the root file system")
    out_deps = run_checked(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts",
                     "--no-breaks", "--no-replaces", "--no-enhances", "openssh-server:arm64"], "apt-cache depends")
    packages = sorted({line.strip() for line in out_deps.splitlines()
                       if line.endswith(":arm64") and not line.startswith((" ", "<"))
                       and line.split(":")[0] not in SSH_SKIPPED})
    log.info(f"lab: adding openssh-server ({len(packages)} arm64 packages) to the board image")
    debs = work / "ssh-debs"
    debs.mkdir()
    run_checked(["apt-get", "download", "-qq", *packages], "apt-get download", cwd=debs)
    for deb in debs.glob("*.deb"):
        run_checked(["dpkg-deb", "-x", str(deb), str(root)], f"unpacking {deb.name}")
    shutil.copy(out / "busybox", root / "bin" / "busybox")
    with open(root / "etc" / "passwd", "a") as passwd:
        passwd.write("sshd:x:101:65534::/run/sshd:/usr/sbin/nologin\n")
    with open(root / "etc" / "group", "a") as group:
        group.write("nogroup:x:65534:\n")
    (root / "run").mkdir(exist_ok=True)
    init = root / "sbin" / "farm-init"
    init.write_text(_BOARD_INIT)
    init.chmod(0o755)
    log.info("lab: writing the board image (ext4)")
    run_checked(["mkfs.ext4", "-q", "-F", "-L", "farmroot", "-d", str(root), str(out / "root.img"), "1200M"],
                "mkfs.ext4")


def ensure_base(user: str) -> Path:
    """Kernel, initramfs and root image, built once (about a minute)."""
    ensure_tools()
    base = cache_dir() / "fullsystem"
    if (base / ".farm-complete").exists():
        return base
    log.info(f"lab: building the full-system arm64 board in {base} (once)")
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="farm-fullsystem-") as tmp:
        _kernel(Path(tmp), base)
        _root_image(Path(tmp), base, user)
    (base / ".farm-complete").write_text("ok\n")
    return base


def config_disk(state: Path, name: str, host_key: Path, authorized: Path, user: str) -> Path:
    """The board's own small disk: its host key, the lab's client key, its sshd config."""
    folder = state / "config-disk"
    folder.mkdir()
    shutil.copy(host_key, folder / "host_key")
    (folder / "host_key").chmod(0o600)
    shutil.copy(authorized, folder / "authorized_keys")
    (folder / "hostname").write_text(name + "\n")
    (folder / "sshd_config").write_text("\n".join([
        "Port 22", "HostKey /etc/ssh/farm/host_key", "AuthorizedKeysFile /etc/ssh/farm/authorized_keys",
        f"AllowUsers {user}", "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no",
        "StrictModes no", "PermitRootLogin no", "Subsystem sftp internal-sftp", ""]))
    disk = state / "config.img"
    run_checked(["mkfs.ext4", "-q", "-F", "-L", "farmconfig", "-d", str(folder), str(disk), "4M"],
                "mkfs.ext4 (config disk)")
    return disk


def qemu_argv(base: Path, disk: Path, qemu_cpu: str, cores: int | None, memory_mb: int | None, port: int,
              console: Path) -> list[str]:
    """qemu-system-aarch64 for one board: its CPU model, only sshd forwarded to 127.0.0.1:port."""
    return ["qemu-system-aarch64", "-M", "virt", "-cpu", qemu_cpu, "-smp", str(cores or 2),
            "-m", str(memory_mb or 1024), "-display", "none", "-monitor", "none", "-serial", f"file:{console}",
            "-kernel", str(base / "vmlinuz"), "-initrd", str(base / "initrd.gz"),
            "-append", "console=ttyAMA0 rdinit=/init", "-snapshot",
            "-drive", f"file={base / 'root.img'},if=none,format=raw,id=root", "-device", "virtio-blk-device,drive=root",
            "-drive", f"file={disk},if=none,format=raw,id=config", "-device", "virtio-blk-device,drive=config",
            "-netdev", f"user,id=net,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:22",
            "-device", "virtio-net-device,netdev=net"]
