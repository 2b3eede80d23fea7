"""The CPU toolchain: the variants every board measures, on the providers its class lists. Nothing new."""

from __future__ import annotations

from farm.build.toolchains.base import Toolchain


class CpuToolchain(Toolchain):
    name = "cpu"
