"""A run of specs in every format but JUnit (`junit`): text (one line per check, then
each failure located, then the counts), JSON (one versioned document), GitHub
annotations on the spec lines, and the markdown paragraph a pull-request comment adds.

Failures are diagnostics, printed by `render` like every other report; what is added
here is the list of checks that ran and the counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from expc.diagnostics import Diagnostic, printable
from expc.render import Report, code_span, escape_markdown, render
from expc.specs.run import SpecRun

# Failures listed in the pull-request comment, each message cut at so many characters
# (the annotations and the log have them whole): the comment stays small.
LISTED = 10
MESSAGE_LIMIT = 300


def summary(run: SpecRun) -> str:
    """`34 passed, 1 failed (3 spec files in production; 100,000 simulated users)`."""
    # The files that ran: with --env or -k, some of those read may run nothing.
    ran = len({outcome.spec for outcome in run.outcomes}) or len(run.files)
    files = f"{ran} spec file{'s' if ran != 1 else ''}"
    where = f" in {', '.join(run.environments)}" if run.environments else ""
    simulated = f"; {run.users:,} simulated users" if run.users else ""
    return f"{run.passed} passed, {run.failed} failed ({files}{where}{simulated})"


def nothing_found(run: SpecRun) -> str:
    searched = ", ".join(run.searched) or "specs"
    return f"no specs: no spec file in {searched} (docs/specs.md says how to write one)"


def report(run: SpecRun) -> Report:
    """The failures with the counts and every check, for `render` (json, github)."""
    results = [
        {
            "spec": printable(outcome.spec),
            "line": outcome.span.line,
            "column": outcome.span.column,
            "environment": outcome.environment,
            "kind": outcome.kind,
            "title": printable(outcome.title),
            "detail": printable(outcome.detail),
            "passed": outcome.passed,
            **({"user": _printable_value(outcome.user)} if outcome.user is not None else {}),
        }
        for outcome in run.outcomes
    ]
    document = {
        "passed": run.passed,
        "failed": run.failed,
        "specs": [printable(path) for path in run.files],
        "environments": list(run.environments),
        "simulated_users": run.users,
        "results": results,
    }
    return Report(run.failures, summary(run), items="failures", document=document)


def _printable_value(value: Any) -> Any:
    """A user's attributes with every text made printable, keys included: they come
    from spec files, and no format prints them raw."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {printable(str(key)): _printable_value(child) for key, child in value.items()}
    if isinstance(value, list):
        return [_printable_value(child) for child in value]
    return value


def render_text(run: SpecRun, quiet: bool = False) -> str:
    """Each check as `ok` or `FAILED` under its spec file (unless `quiet`), then every
    failure with its location, expectation, result and trace, then the counts."""
    if not run.files:
        return nothing_found(run) + "\n"
    lines: list[str] = []
    heading = None
    for outcome in [] if quiet else run.outcomes:
        where = f"{outcome.spec} ({outcome.environment})" if outcome.environment else outcome.spec
        if where != heading:
            heading = where
            lines.append(printable(where))
        mark = "ok    " if outcome.passed else "FAILED"
        detail = f" -- {outcome.detail}" if outcome.detail else ""
        lines.append(f"  {mark}  {printable(outcome.title + detail)}")
    failures = run.failures
    if failures:
        if lines:
            lines.append("")
        lines.append(render(Report(failures, ""), "text").rstrip("\n"))
    lines.append(summary(run))
    return "\n".join(lines) + "\n"


def render_github(run: SpecRun) -> str:
    """An annotation on the spec line of every failure, and the counts."""
    text = render(Report(run.failures, ""), "github") if run.failures else ""
    return text + (summary(run) if run.files else nothing_found(run)) + "\n"


def render_markdown(run: SpecRun) -> str:
    """What the pull-request comment says about the specs: the counts, and where each
    failure is (the annotations and the log have the rest)."""
    if not run.files:
        return f"**Specs** (`expc test`): {escape_markdown(nothing_found(run))}\n"
    if not run.failed:
        return f"**Specs** (`expc test`): ✅ {escape_markdown(summary(run))}\n"
    lines = [f"**Specs** (`expc test`): ❌ {escape_markdown(summary(run))}", ""]
    lines += _failure_table(run.failures)
    return "\n".join(lines) + "\n"


def render_markdown_problems(diagnostics: Sequence[Diagnostic], what: str) -> str:
    """The comment's paragraph when the specs could not run: `what` says why."""
    lines = [f"**Specs** (`expc test`): ⚠️ {escape_markdown(what)}", ""]
    lines += _failure_table(diagnostics)
    return "\n".join(lines) + "\n"


def _failure_table(diagnostics: Sequence[Diagnostic]) -> list[str]:
    lines = ["| where | what |", "|---|---|"]
    for diagnostic in diagnostics[:LISTED]:
        # A table cell ends at any `|`, even inside a code span, unless it is escaped.
        where = code_span(str(diagnostic.span)).replace("|", "\\|")
        message = diagnostic.message
        if len(message) > MESSAGE_LIMIT:
            message = message[: MESSAGE_LIMIT - 3] + "..."
        what = escape_markdown(f"{diagnostic.code.id} {message}")
        lines.append(f"| {where} | {what} |")
    if len(diagnostics) > LISTED:
        lines.append(f"| | and {len(diagnostics) - LISTED} more |")
    return lines
