"""Write a synthetic definitions repository: N experiments, one mutex group per ten
experiments (ten 10% slots), and 20 holdouts sharing the groups between them.

    python benchmarks/generate.py 10000 /tmp/defs-10k [--change-percent 1] [--environments]

`--change-percent` edits that share of the experiments (a description and a traffic
raise), so that two generated trees differ like two releases. `--environments`
declares `staging` and `production`, and one experiment in ten ramps its traffic in
production (an `environments:` block), as a team promoting experiments would.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

HOLDOUTS = 20
PER_GROUP = 10


RAMPED_EVERY = 10  # with environments: one experiment in ten ramps in production


def experiment(index: int, changed: bool, environments: bool = False) -> str:
    traffic = 90 if changed else 80
    note = "edited in this release" if changed else "synthetic experiment"
    ramp = ""
    if environments and index % RAMPED_EVERY == 0:
        ramp = "environments:\n  production:\n    traffic: 20\n"
    return (
        f"kind: experiment\nkey: exp-{index:06d}\nname: Experiment {index}\n"
        f"description: {note}\nowners: [team-{index % 37}]\nstate: running\n"
        f"traffic: {traffic}\n"
        "targeting:\n  all:\n    - attribute: country\n      op: in\n"
        "      values: [NO, SE, DE, FR]\n"
        "variants:\n  - key: control\n  - key: treatment\n    payload: {color: blue}\n" + ramp
    )


def group(index: int, members: range) -> str:
    slots = "".join(f"  - percent: 10\n    experiment: exp-{m:06d}\n" for m in members)
    return f"kind: mutex\nkey: group-{index:05d}\nowners: [team-{index % 37}]\nslots:\n{slots}"


def holdout(index: int, groups: list[int]) -> str:
    listed = "".join(f"    - group-{g:05d}\n" for g in groups) or "    []\n"
    return f"kind: holdout\nkey: holdout-{index:02d}\npercent: 2.5\nmembers:\n  groups:\n{listed}"


def generate(
    count: int, root: Path, change_percent: float = 0.0, environments: bool = False
) -> Path:
    definitions = root / "definitions"
    if definitions.exists():
        shutil.rmtree(definitions)
    for folder in ("experiments", "groups", "holdouts"):
        (definitions / folder).mkdir(parents=True)
    declared = "environments: [staging, production]\n" if environments else ""
    (definitions / "project.yaml").write_text("kind: project\nkey: project\n" + declared)
    every = int(100 / change_percent) if change_percent else 0
    for index in range(count):
        changed = bool(every) and index % every == 0
        path = definitions / "experiments" / f"exp-{index:06d}.yaml"
        path.write_text(experiment(index, changed, environments))
    group_count = count // PER_GROUP
    for index in range(group_count):
        members = range(index * PER_GROUP, (index + 1) * PER_GROUP)
        (definitions / "groups" / f"group-{index:05d}.yaml").write_text(group(index, members))
    for index in range(HOLDOUTS):
        covered = list(range(index, group_count, HOLDOUTS))
        (definitions / "holdouts" / f"holdout-{index:02d}.yaml").write_text(holdout(index, covered))
    return definitions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("count", type=int)
    parser.add_argument("root", type=Path)
    parser.add_argument("--change-percent", type=float, default=0.0)
    parser.add_argument("--environments", action="store_true")
    args = parser.parse_args()
    print(generate(args.count, args.root, args.change_percent, args.environments))


if __name__ == "__main__":
    main()
