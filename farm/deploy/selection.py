"""The boards a run is for: inventory boards and stand-ins, chosen by pool, tag and name glob.

Stand-ins declared in the inventory are started for the run and stopped after
it; a lab brought up by hand (`farm lab up`) stays up.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Iterator

from farm.config.inventory import Board, load_inventory
from farm.errors import ConfigError, FarmError
from farm.lab.standins import Lab

log = logging.getLogger(__name__)


class Selection:
    def __init__(self, inventory: Path, pools: list[str] = (), tags: list[str] = (), names: list[str] = (),
                 unfit: dict[str, dict] | None = None):
        """`unfit`: boards the history marks bad or retired (board -> its health row): left out, saying why."""
        self.inventory_path = Path(inventory)
        inventory_doc = load_inventory(inventory)
        self.standin_specs = inventory_doc.select_standins(pools, tags, names)
        self.boards: dict[str, Board] = {b.name: b for b in inventory_doc.select(pools, tags, names)}
        self.names = [*self.boards, *(s.name for s in self.standin_specs)]
        if not self.names:
            raise ConfigError(f"{inventory}: no board matches the selection (pools {list(pools) or 'any'}, "
                              f"tags {list(tags) or 'any'}, boards {list(names) or 'any'})")
        left_out = {name: (unfit or {})[name] for name in self.names if name in (unfit or {})}
        for name, row in left_out.items():
            log.warning(f"{name}: left out: {row['state']} since {row['since']}: {row['reason']} "
                f"(`farm health --board {name}` checks it again; `farm boards restore {name}` clears it)")
        if left_out and len(left_out) == len(self.names):  # the one line a queued job's status shows: with why
            why = "; ".join(f"{name} {row['state']} since {row['since']}: {row['reason']}"
                            for name, row in left_out.items())
            raise FarmError(f"every selected board is bad or retired ({why}): nothing to measure; "
                            "`farm health` checks them again, `farm boards restore` clears one")
        self.names = [name for name in self.names if name not in left_out]
        self.boards = {name: b for name, b in self.boards.items() if name not in left_out}
        self.standin_specs = [spec for spec in self.standin_specs if spec.name not in left_out]

    @contextlib.contextmanager
    def standins_up(self) -> Iterator[list[Board]]:
        """The selected boards, with the declared stand-ins running for the duration."""
        lab, started = None, []
        try:
            if self.standin_specs:
                lab = Lab()
                boards, started = lab.up(self.standin_specs, owned=True)
                self.boards.update({b.name: b for b in boards})
            yield [self.boards[name] for name in self.names]
        finally:
            if lab and started:
                lab.down(started)
