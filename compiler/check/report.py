"""The pull-request comment of `expc check` (markdown, from a jinja2 template): what
changed, the traffic of every affected group before and after, a mermaid picture of
their slots, and the findings. The text, JSON and GitHub formats are `render`'s, like
every command's; this builds on the same escaping (`render.escape_markdown`,
`render.code_span`, `render.escape_mermaid`).
"""

from __future__ import annotations

from typing import Any

import jinja2

from expc.check.pairing import Comparison
from expc.check.run import CheckResult
from expc.check.views import View, range_share
from expc.diagnostics import Diagnostic
from expc.outputs.bundle import HELD_OUT
from expc.render import MARKER, code_span, escape_markdown, escape_mermaid
from expc.shares import percent

COMMENT_LIMIT = 65_000


def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("expc", "templates"),
        autoescape=False,  # markdown, not HTML: every value goes through a filter instead
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    environment.filters["md"] = escape_markdown
    environment.filters["code"] = code_span
    environment.filters["mermaid"] = escape_mermaid
    return environment


def _sections(result: CheckResult) -> list[dict[str, Any]]:
    """One section per environment (one unnamed section without environments): its
    changes and the groups they affect."""
    return [
        {
            "name": comparison.name,
            "new": comparison.new,
            "changes": comparison.changed_objects(),
            "groups": _groups(comparison, f"e{number}"),
        }
        for number, comparison in enumerate(result.comparisons)
    ]


def _groups(comparison: Comparison, prefix: str) -> list[dict[str, Any]]:
    groups = []
    for index, key in enumerate(comparison.affected_groups()):
        view = comparison.after.get(key) or comparison.before.get(key)
        if view is None:
            continue
        slots = []
        for name, start, end in view.ranges:
            slots.append(
                {
                    "share": percent(range_share(((name, start, end),))),
                    "label": _slot_label(comparison, view, name),
                }
            )
        number = f"{prefix}g{index}" if comparison.name is not None else f"g{index}"
        rows = comparison.shares(key)
        groups.append({"key": key, "id": number, "rows": rows, "slots": slots})
    return groups


def _slot_label(comparison: Comparison, view: View, name: str) -> str:
    """What a slot of a group, or a side of a holdout, holds, in words."""
    if view.kind == "holdout":
        if name == HELD_OUT:
            return "held out: in none of its experiments"
        side = comparison.after if view.key in comparison.after else comparison.before
        covered = sorted(
            k for k, v in side.items() if v.kind == "experiment" and view.key in v.holdouts
        )
        return f"not held out: {', '.join(covered) or 'no experiments'}"
    members = sorted(view.members.get(name, frozenset()))
    return f"{name}: {', '.join(members) or 'empty'}"


def render_invalid(diagnostics: tuple[Diagnostic, ...]) -> str:
    """The comment when the current definitions do not validate."""
    lines = [
        MARKER,
        "## expc check ❌ the definitions do not validate",
        "",
        "Fix these first; `expc validate` prints them too.",
        "",
    ]
    lines += [
        f"- **{d.severity}** {code_span(f'{d.code.id} {d.code.name}')} in "
        f"{code_span(d.span)}: {escape_markdown(d.message)}"
        for d in diagnostics
    ]
    return "\n".join(lines) + "\n"


def render_markdown(result: CheckResult) -> str:
    template = _environment().get_template("check.md.j2")
    sections = _sections(result)

    def render(summary_only: bool, limit: int | None) -> str:
        findings = result.findings if limit is None else result.findings[:limit]
        return template.render(
            marker=MARKER,
            result=result,
            changes=result.changed_objects(),
            sections=sections,
            listed=len(sections) if limit is None else limit,
            findings=findings,
            hidden=len(result.findings) - len(findings),
            summary_only=summary_only,
        )

    text = render(False, None)
    if len(text) <= COMMENT_LIMIT:
        return text
    limit = 50
    text = render(True, limit)
    while len(text) > COMMENT_LIMIT and limit > 0:
        limit //= 2
        text = render(True, limit)
    return text
