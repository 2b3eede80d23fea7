"""The inventory's power: field, validated like every field: one line naming board and field, exit 2."""

from __future__ import annotations

import pytest

from farm.config.inventory import Power, load_inventory
from farm.errors import ConfigError


def _load(tmp_path, power: str):
    path = tmp_path / "lab.yaml"
    path.write_text(f"boards:\n  - name: b1\n    host: 10.0.0.1\n    power: {power}\n")
    return load_inventory(path).boards[0]


@pytest.mark.parametrize("text, expected", [
    ("{pdudaemon: pdu.lab, pdu: rack1, outlet: 3}", Power(pdudaemon="pdu.lab", pdu="rack1", outlet="3")),
    ("{pdudaemon: 127.0.0.1, port: 8080, pdu: r, outlet: a1, off_s: 2, boot_s: 30}",
     Power(pdudaemon="127.0.0.1", port=8080, pdu="r", outlet="a1", off_s=2.0, boot_s=30.0)),
    ("{on_command: [usbrelay, R1_1=1], off_command: [usbrelay, R1_1=0]}",
     Power(on=("usbrelay", "R1_1=1"), off=("usbrelay", "R1_1=0"))),
    ("none", None)])
def test_power_loads_as_an_outlet_commands_or_none(tmp_path, text, expected):
    assert _load(tmp_path, text).power == expected


@pytest.mark.parametrize("text, field, words", [
    ("{pdudaemon: 'pdu/x?y', pdu: r, outlet: 1}", "power.pdudaemon", "is not a host name"),
    ("{pdudaemon: h, outlet: 1}", "power.pdu", "pdudaemon needs pdu"),
    ("{pdudaemon: h, pdu: r, outlet: 1, on_command: [x]}", "power", "choose one"),
    ("{on_command: [x]}", "power", "both on_command and off_command"),
    ("{on_command: 'x y', off_command: [x]}", "power.on_command", "argument list"),
    ("{pdudaemon: h, pdu: r, outlet: 1, port: 70000}", "power.port", "expected a port number"),
    ("{pdudaemon: h, pdu: r, outlet: 1, boot_s: -1}", "power.boot_s", "0 to 3600 seconds"),
    ("{pdudeamon: h}", "power.pdudeamon", "did you mean 'pdudaemon'?"),
    ("sometimes", "power", "expected none or a mapping")])
def test_a_bad_power_entry_names_the_board_and_the_field(tmp_path, text, field, words):
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, text)
    message = str(caught.value)
    assert f"board 'b1', field '{field}'" in message and words in message and "\n" not in message, message
