"""How diagnostics are printed: one set of renderers for every command.

A `Report` is a list of diagnostics with the line that sums them up and the extra
fields of its JSON document; `validate`, `compile` and `check` all print one through
`render`. The pull-request comment of the check (markdown) is `check.report`, built
on the same escaping.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from expc.diagnostics import Diagnostic, Severity, Span, printable, printable_lines

JSON_VERSION = 1
FORMATS = ("text", "json", "github")
# The pull-request comment starts with this, so a bot can find and update its comment.
MARKER = "<!-- expc-check-report -->"
ANNOTATIONS_PER_SEVERITY = 10


@dataclass(frozen=True)
class Report:
    """What a command found, ready to print in any format."""

    diagnostics: Sequence[Diagnostic]
    summary: str  # the last line of the text format
    items: str = "diagnostics"  # the JSON key of the list ("findings" for the check)
    document: Mapping[str, Any] = field(default_factory=dict)  # more JSON fields

    @property
    def blocking(self) -> bool:
        return any(d.blocking for d in self.diagnostics)


def counted(diagnostics: Sequence[Diagnostic]) -> Report:
    """A report summed up by severity, as `validate` and `compile` print it."""
    errors = sum(d.severity is Severity.ERROR for d in diagnostics)
    warnings = sum(d.severity is Severity.WARNING for d in diagnostics)
    return Report(
        diagnostics,
        f"{errors} error(s), {warnings} warning(s)",
        document={"errors": errors, "warnings": warnings},
    )


def diagnostic_text(diagnostic: Diagnostic) -> str:
    """`path:line:col: severity[CODE name] message`, its notes, and for a blocking
    finding of the check what to do instead and the acknowledgement to paste."""
    facts = diagnostic.check
    accepted = f" (accepted: {facts.accepted})" if facts and facts.accepted else ""
    code = diagnostic.code
    lines = [
        f"{diagnostic.span}: {diagnostic.severity}[{code.id} {code.name}] "
        f"{diagnostic.message}{accepted}"
    ]
    lines += [f"    {note}" for note in diagnostic.notes]
    if facts is not None and diagnostic.blocking:
        lines.append(f"    instead: {code.instead}")
        if facts.acceptable:
            lines.append(f"    to accept it knowingly, add to {printable(facts.paste_into)}:")
            lines += ["      " + line for line in facts.snippet(code).splitlines()]
    return "\n".join(lines)


def diagnostic_dict(diagnostic: Diagnostic) -> dict[str, Any]:
    facts = diagnostic.check
    document: dict[str, Any] = {
        "code": diagnostic.code.id,
        "name": diagnostic.code.name,
        "severity": str(diagnostic.severity),
        "message": diagnostic.message,
        "path": printable(diagnostic.span.path),
        "line": diagnostic.span.line,
        "column": diagnostic.span.column,
        "notes": list(diagnostic.notes),
    }
    if facts is not None:
        document.update(
            {
                "object": facts.key,
                "previous": None if facts.previous is None else str(facts.previous),
                "fingerprint": facts.fingerprint,
                "accepted": facts.accepted,
                "instead": diagnostic.code.instead,
            }
        )
        if facts.environments:
            document["environments"] = list(facts.environments)
    return document


def render_text(report: Report) -> str:
    return "".join(diagnostic_text(d) + "\n" for d in report.diagnostics) + report.summary + "\n"


def render_json(report: Report) -> str:
    document = {
        "version": JSON_VERSION,
        report.items: [diagnostic_dict(d) for d in report.diagnostics],
        **report.document,
    }
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _escape_data(text: str) -> str:
    # GitHub's workflow-command escaping: the message part.
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    # Property values additionally escape the separators of the command syntax.
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def github_annotation(level: str, span: Span | None, title: str, body: str) -> str:
    """One workflow-command annotation, every part escaped; without a span it is
    attached to the job rather than to a file."""
    properties = [f"title={_escape_property(title)}"]
    if span is not None:
        properties[:0] = [
            f"file={_escape_property(printable(span.path))}",
            f"line={span.line}",
            f"col={span.column}",
        ]
    return f"::{level} {','.join(properties)}::{_escape_data(printable_lines(body))}"


def render_github(report: Report) -> str:
    """Annotations, at most ten per level (GitHub shows no more); the rest summarised."""
    lines = []
    shown: dict[str, int] = {}
    hidden: dict[str, int] = {}
    for diagnostic in report.diagnostics:
        facts = diagnostic.check
        level = "notice" if facts and facts.accepted else str(diagnostic.severity)
        if shown.get(level, 0) >= ANNOTATIONS_PER_SEVERITY:
            hidden[level] = hidden.get(level, 0) + 1
            continue
        shown[level] = shown.get(level, 0) + 1
        body = [diagnostic.message, *diagnostic.notes]
        if facts is not None:
            body.append(
                f"Accepted: {facts.accepted}"
                if facts.accepted
                else f"Instead: {diagnostic.code.instead}"
            )
        title = f"{diagnostic.code.id} {diagnostic.code.name}"
        lines.append(github_annotation(level, diagnostic.span, title, "\n".join(body)))
    for level, count in sorted(hidden.items()):
        lines.append(f"::{level}::{count} more {level} finding(s) not annotated; see the summary")
    return "\n".join(lines) + ("\n" if lines else "")


RENDERERS = {"text": render_text, "json": render_json, "github": render_github}


def render(report: Report, fmt: str) -> str:
    return RENDERERS[fmt](report)


def render_failure(kind: str, message: str, status: int, fmt: str) -> str:
    """What stdout gets when a command could not run at all (the one line on stderr is
    the command line's): a document in the format that was asked for."""
    message = printable(message)
    label = "internal error" if kind == "internal" else "error"
    if fmt == "json":
        document = {
            "version": JSON_VERSION,
            "error": {"kind": kind, "message": message},
            "exit": status,
        }
        return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    if fmt == "github":
        return github_annotation("error", None, f"expc {label}", message) + "\n"
    if fmt == "markdown":
        return f"{MARKER}\n## expc check ⚠️ {label}\n\n{escape_markdown(message)}\n"
    return ""


# --- markdown (the pull-request comment of the check) ---------------------------

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~>-])")


def escape_markdown(text: Any) -> str:
    """Text shown as markdown prose: no HTML, no emphasis or links, no @mentions."""
    escaped = printable(str(text)).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    escaped = _MARKDOWN_SPECIAL.sub(r"\\\1", escaped)
    return escaped.replace("@", "@\u200b")


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


def diagnostic_from_dict(document: Mapping[str, Any]) -> Diagnostic:
    """The inverse of `diagnostic_dict`, for a diagnostic without check facts (the
    results a cache keeps)."""
    from expc.diagnostics import CODES

    return Diagnostic(
        CODES[document["code"]],
        document["message"],
        Span(document["path"], document["line"], document["column"]),
        Severity(document["severity"]),
        tuple(document["notes"]),
    )
