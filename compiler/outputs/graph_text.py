"""The dependency graph as mermaid or Graphviz dot text."""

from __future__ import annotations

from expc.api import Snapshot, graph_edges

_SHAPES = {
    "experiment": ('["', '"]'),
    "mutex": ('[["', '"]]'),
    "holdout": ('{{"', '"}}'),
    "cohort": ('(["', '"])'),
}


def _node_id(key: str) -> str:
    # Keys may be mermaid keywords ("end"); a prefix keeps every id plain.
    return "n_" + key.replace("-", "_")


def render_mermaid(snapshot: Snapshot) -> str:
    lines = ["flowchart LR"]
    for key in sorted(snapshot.catalog.graph.nodes if snapshot.catalog else []):
        kind = snapshot.objects[key].definition.kind
        left, right = _SHAPES[kind]
        lines.append(f"  {_node_id(key)}{left}{key}<br/><i>{kind}</i>{right}")
    for source, target, relation in graph_edges(snapshot):
        lines.append(f"  {_node_id(source)} -->|{relation}| {_node_id(target)}")
    return "\n".join(lines) + "\n"


def render_dot(snapshot: Snapshot) -> str:
    lines = ["digraph expc {", "  rankdir=LR;"]
    for key in sorted(snapshot.catalog.graph.nodes if snapshot.catalog else []):
        kind = snapshot.objects[key].definition.kind
        lines.append(f'  "{key}" [label="{key}\\n({kind})"];')
    for source, target, relation in graph_edges(snapshot):
        lines.append(f'  "{source}" -> "{target}" [label="{relation}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"
