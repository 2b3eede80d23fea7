"""Stand-in boards on this machine: real sshd servers, qemu-user and full-system Arm emulation
(optional on a real lab)."""
