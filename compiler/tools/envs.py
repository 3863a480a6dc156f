"""`expc envs`: every experiment's state, traffic and expected share in each declared
environment, side by side, with the rows that differ marked; and the groups, holdouts
and cohorts that set values of their own per environment (their pins and audiences
change who is placed where, not an experiment's row)."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from expc.errors import UsageError
from expc.pipeline.snapshot import Snapshot
from expc.pipeline.traffic import traffic_rows
from expc.reading.model import Experiment, Project


@dataclass(frozen=True)
class Cell:
    """An experiment in one environment."""

    state: str
    traffic: int
    share: Fraction  # of all users, now (0 when it serves nobody), before targeting
    at_most: bool  # with prerequisites the share is an upper bound


@dataclass(frozen=True)
class EnvironmentRow:
    key: str
    cells: tuple[Cell, ...]  # in promotion order

    @property
    def differs(self) -> bool:
        return len(set(self.cells)) > 1


@dataclass(frozen=True)
class EnvironmentTable:
    names: tuple[str, ...]
    rows: tuple[EnvironmentRow, ...]
    # other objects setting values per environment -> the fields they set, and where
    varying: tuple[tuple[str, str, tuple[str, ...]], ...]


def table(snapshot: Snapshot) -> EnvironmentTable:
    if not snapshot.names:
        raise UsageError(
            "the definitions declare no environments; `expc traffic` shows the one release"
        )
    columns = []
    for environment in snapshot.environments:
        catalog = environment.catalog
        columns.append(
            {
                row.key: Cell(
                    row.state, catalog.experiment(row.key).traffic, row.share, row.at_most
                )
                for row in traffic_rows(catalog)
            }
        )
    keys = sorted(columns[0])
    rows = tuple(EnvironmentRow(key, tuple(column[key] for column in columns)) for key in keys)
    varying = []
    for key in sorted(snapshot.objects):
        definition = snapshot.objects[key].definition
        if isinstance(definition, Experiment | Project) or not definition.environments:
            continue
        blocks = definition.environments
        fields = sorted({name for values in blocks.values() for name in values.changes()})
        where = ", ".join(name for name in snapshot.names if name in blocks)
        varying.append((key, where, tuple(fields)))
    return EnvironmentTable(snapshot.names, rows, tuple(varying))
