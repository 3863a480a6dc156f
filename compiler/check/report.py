"""How `expc check` reports: text, JSON, GitHub annotations, a pull-request comment.

Text from definitions (keys, messages quoting names) is escaped in every format that
could interpret it: markdown and HTML in the comment, `%`, newlines and separators in
workflow commands, quotes in mermaid labels.
"""

from __future__ import annotations

import json
import re
from typing import Any

import jinja2
from expc.check.run import CheckResult, Finding, as_json
from expc.check.views import View, percent, range_share
from expc.diagnostics import GITHUB_LEVEL, Diagnostic, github_annotation, printable
from expc.diagnostics import render_github as render_github_diagnostics
from expc.outputs.bundle import HELD_OUT

MARKER = "<!-- expc-check-report -->"
COMMENT_LIMIT = 65_000
ANNOTATIONS_PER_SEVERITY = 10
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~>-])")


def escape_markdown(text: Any) -> str:
    escaped = printable(str(text)).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    escaped = _MARKDOWN_SPECIAL.sub(r"\\\1", escaped)
    return escaped.replace("\n", " ").replace("\r", " ").replace("@", "@\u200b")


def code_span(text: Any) -> str:
    """`text` as a markdown code span, shown exactly as it is.

    Inside a code span backslash escapes are not interpreted (escaping the text would
    show the backslashes), so the text is only made printable and fenced with more
    backticks than it contains.
    """
    body = printable(str(text))
    fence = "`" * (max((len(run) for run in re.findall(r"`+", body)), default=0) + 1)
    padding = " " if body.startswith("`") or body.endswith("`") else ""
    return f"{fence}{padding}{body}{padding}{fence}"


def escape_mermaid(text: Any) -> str:
    return printable(str(text)).replace('"', "#quot;")


def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("expc", "templates"),
        autoescape=False,  # markdown, not HTML: every value goes through `md` instead
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    environment.filters["md"] = escape_markdown
    environment.filters["code"] = code_span
    environment.filters["mermaid"] = escape_mermaid
    return environment


def render_text(result: CheckResult) -> str:
    lines = []
    for f in result.findings:
        accepted = " (accepted: " + f.accepted + ")" if f.accepted else ""
        lines.append(f"{f.span}: {f.severity}[{f.rule.code} {f.rule.name}] {f.message}{accepted}")
        if f.deleted_from is not None:
            lines.append(f"    this file is in {printable(f.deleted_from)}; the change deletes it")
        elif f.previous_span is not None and f.previous_span != f.span:
            lines.append(f"    previous: {f.previous_span}")
        if f.blocking:
            lines.append(f"    instead: {f.instead}")
            lines.append(f"    to accept it knowingly, add to {printable(f.paste_into)}:")
            lines.extend("      " + line for line in f.snippet().splitlines())
    blocking = sum(f.blocking for f in result.findings)
    verdict = "blocked" if result.blocking else "safe"
    lines.append(
        f"{verdict}: {blocking} blocking, {len(result.findings) - blocking} other finding(s) "
        f"against {result.previous.label}"
    )
    return "\n".join(lines) + "\n"


def render_json(result: CheckResult) -> str:
    return json.dumps(as_json(result), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render_github(result: CheckResult) -> str:
    """Workflow-command annotations, at most ten per severity, the rest summarised."""
    lines = []
    shown: dict[str, int] = {}
    hidden: dict[str, int] = {}
    for f in result.findings:
        level = "notice" if f.accepted else GITHUB_LEVEL[f.severity]
        if shown.get(level, 0) >= ANNOTATIONS_PER_SEVERITY:
            hidden[level] = hidden.get(level, 0) + 1
            continue
        shown[level] = shown.get(level, 0) + 1
        body = f.message + (
            "\nAccepted: " + f.accepted if f.accepted else f"\nInstead: {f.instead}"
        )
        lines.append(github_annotation(level, f.span, f"{f.rule.code} {f.rule.name}", body))
    for level, count in sorted(hidden.items()):
        lines.append(f"::{level}::{count} more {level} finding(s) not annotated; see the summary")
    return "\n".join(lines) + ("\n" if lines else "")


def _groups(result: CheckResult) -> list[dict[str, Any]]:
    groups = []
    for index, key in enumerate(result.affected_groups()):
        view = result.after.get(key) or result.before.get(key)
        if view is None:
            continue
        slots = []
        for name, start, end in view.ranges:
            slots.append(
                {
                    "share": percent(range_share(((name, start, end),))),
                    "label": _slot_label(result, view, name),
                }
            )
        groups.append({"key": key, "id": f"g{index}", "rows": result.shares(key), "slots": slots})
    return groups


def _slot_label(result: CheckResult, view: View, name: str) -> str:
    """What a slot of a group, or a side of a holdout, holds, in words."""
    if view.kind == "holdout":
        if name == HELD_OUT:
            return "held out: in none of its experiments"
        side = result.after if view.key in result.after else result.before
        covered = sorted(
            k for k, v in side.items() if v.kind == "experiment" and view.key in v.holdouts
        )
        return f"not held out: {', '.join(covered) or 'no experiments'}"
    members = sorted(view.members.get(name, frozenset()))
    return f"{name}: {', '.join(members) or 'empty'}"


def render_failure(label: str, message: str) -> str:
    """The pull-request comment when the check could not run at all."""
    return f"{MARKER}\n## expc check ⚠️ {label}\n\n{escape_markdown(message)}\n"


def render_invalid(diagnostics: list[Diagnostic], fmt: str, against: str) -> str:
    """The check's report when the current definitions do not validate."""
    if fmt == "json":
        document = {
            "version": 1,
            "against": printable(against),
            "blocking": True,
            "valid": False,
            "diagnostics": [d.to_dict() for d in diagnostics],
            "findings": [],
        }
        return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    if fmt == "github":
        return render_github_diagnostics(diagnostics)
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

    def render(summary_only: bool, limit: int | None) -> str:
        findings: list[Finding] = result.findings if limit is None else result.findings[:limit]
        return template.render(
            marker=MARKER,
            result=result,
            changes=result.changed_objects(),
            groups=_groups(result),
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
