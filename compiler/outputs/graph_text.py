"""The dependency graph as mermaid or Graphviz dot text."""

from __future__ import annotations

from expc.pipeline.link import GraphView

_SHAPES = {
    "experiment": ('["', '"]'),
    "mutex": ('[["', '"]]'),
    "holdout": ('{{"', '"}}'),
    "cohort": ('(["', '"])'),
}


def _node_id(key: str) -> str:
    # Keys may be mermaid keywords ("end"); a prefix keeps every id plain.
    return "n_" + key.replace("-", "_")


def render_mermaid(graph: GraphView) -> str:
    lines = ["flowchart LR"]
    for key, kind in graph.nodes:
        left, right = _SHAPES[kind]
        lines.append(f"  {_node_id(key)}{left}{key}<br/><i>{kind}</i>{right}")
    for source, target, relation in graph.edges:
        lines.append(f"  {_node_id(source)} -->|{relation}| {_node_id(target)}")
    return "\n".join(lines) + "\n"


def render_dot(graph: GraphView) -> str:
    lines = ["digraph expc {", "  rankdir=LR;"]
    for key, kind in graph.nodes:
        lines.append(f'  "{key}" [label="{key}\\n({kind})"];')
    for source, target, relation in graph.edges:
        lines.append(f'  "{source}" -> "{target}" [label="{relation}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"
