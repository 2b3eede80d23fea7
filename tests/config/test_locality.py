"""Controller-local means what it says: every spelling of this machine, and its kernel, is the controller."""

from __future__ import annotations

import socket

import pytest

from farm.config import locality


@pytest.mark.parametrize("address", ["127.0.0.1", "127.1", "u@127.1:2201", "0.0.0.0", "::", "[::1]:22", "localhost",
                                     "localhost.", "LocalHost", "pi.localhost", "::ffff:127.0.0.1",
                                     socket.gethostname()])
def test_every_spelling_of_this_machine_is_the_controller(address):
    assert locality.on_controller(address, standin=False)


def test_every_address_of_this_machines_interfaces_is_the_controller():
    mine = [a for a in locality.local_addresses() if not a.is_loopback and not a.is_link_local]
    if not mine:
        pytest.skip("this machine has no address besides loopback")
    assert all(locality.on_controller(f"ci@{a}" if a.version == 4 else str(a), standin=False) for a in mine)


@pytest.mark.parametrize("address", ["192.0.2.77", "ci@10.255.0.9:22", "pi1.lab.invalid", "2001:db8::7"])
def test_other_machines_are_not_the_controller(address):
    assert not locality.on_controller(address, standin=False)


def test_a_board_running_the_controllers_kernel_is_the_controller_whatever_its_address():
    mine = locality.controller_boot_id()
    assert mine and len(mine) == 36
    assert locality.on_controller("pi1.lab.invalid", standin=False, boot_id=mine, controller_boot_ids={mine})
    assert not locality.on_controller("pi1.lab.invalid", standin=False, boot_id="other", controller_boot_ids={mine})
    assert locality.on_controller("pi1.lab.invalid", standin=True) and locality.on_controller("local", standin=False)
