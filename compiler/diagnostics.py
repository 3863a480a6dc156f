"""The one type for everything that can go wrong for a user, and its text forms."""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


def printable(text: str) -> str:
    """`text` with every character that is not printable written as an escape.

    Text from definitions reaches terminals, CI logs and reports. A newline could start
    a line that GitHub Actions runs as a workflow command (`::error::...`), an escape
    sequence could rewrite the terminal, a bidirectional control could make a line read
    differently from what it says, and a lone surrogate cannot be written at all. So
    controls, format characters, separators other than the space, and surrogates are
    shown as `\\n`, `\\x1b`, `\\u202e` and the like, in every output format.
    """
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else _escape(char) for char in text)


def _escape(char: str) -> str:
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char)
    if named is not None:
        return named
    code = ord(char)
    return (
        f"\\x{code:02x}"
        if code < 0x100
        else f"\\u{code:04x}"
        if code < 0x10000
        else f"\\U{code:08x}"
    )


def printable_lines(text: str) -> str:
    """Like `printable`, but keeps line breaks (the annotation format escapes them)."""
    return "\n".join(printable(line) for line in text.split("\n"))


class Severity(enum.StrEnum):
    ERROR = "error"
    WARNING = "warning"
    NOTICE = "notice"


@dataclass(frozen=True, order=True)
class Span:
    """A place in a definitions file; line and column are 1-based."""

    path: str
    line: int = 1
    column: int = 1

    def __str__(self) -> str:
        return f"{printable(self.path)}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Code:
    """A stable diagnostic code with its kebab-case name; codes are never reused."""

    id: str
    name: str
    severity: Severity
    summary: str


@dataclass(frozen=True)
class Diagnostic:
    code: Code
    message: str
    span: Span
    severity: Severity
    notes: tuple[str, ...] = field(default=())

    @property
    def blocking(self) -> bool:
        return self.severity is Severity.ERROR

    def sort_key(self) -> tuple[str, int, int, str, str]:
        return (self.span.path, self.span.line, self.span.column, self.code.id, self.message)

    def to_text(self) -> str:
        head = f"{self.span}: {self.severity}[{self.code.id} {self.code.name}] {self.message}"
        return "\n".join([head, *(f"    {note}" for note in self.notes)])

    def to_dict(self) -> dict[str, object]:
        return {
            "code": self.code.id,
            "name": self.code.name,
            "severity": str(self.severity),
            "message": self.message,
            "path": printable(self.span.path),
            "line": self.span.line,
            "column": self.span.column,
            "notes": list(self.notes),
        }


def make(code: Code, message: str, span: Span, notes: Sequence[str] = ()) -> Diagnostic:
    """A diagnostic; its message and notes are made printable here, once, so that no
    output format can receive raw control characters from definitions."""
    return Diagnostic(
        code, printable(message), span, code.severity, tuple(printable(n) for n in notes)
    )


def sorted_diagnostics(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    unique = {(d.sort_key(), d.notes): d for d in diagnostics}
    return [unique[k] for k in sorted(unique)]


def promote_warnings(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    """`--strict`: every warning blocks."""
    return [
        Diagnostic(d.code, d.message, d.span, Severity.ERROR, d.notes)
        if d.severity is Severity.WARNING
        else d
        for d in diagnostics
    ]


# --- output formats -------------------------------------------------------------

JSON_REPORT_VERSION = 1


def render_text(diagnostics: Sequence[Diagnostic]) -> str:
    lines = [d.to_text() for d in diagnostics]
    errors = sum(d.severity is Severity.ERROR for d in diagnostics)
    warnings = sum(d.severity is Severity.WARNING for d in diagnostics)
    lines.append(f"{errors} error(s), {warnings} warning(s)")
    return "\n".join(lines) + "\n"


def render_json(diagnostics: Sequence[Diagnostic]) -> str:
    document = {
        "version": JSON_REPORT_VERSION,
        "diagnostics": [d.to_dict() for d in diagnostics],
        "errors": sum(d.severity is Severity.ERROR for d in diagnostics),
        "warnings": sum(d.severity is Severity.WARNING for d in diagnostics),
    }
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _escape_data(text: str) -> str:
    # GitHub's workflow-command escaping: the message part.
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    # Property values additionally escape the separators of the command syntax.
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


GITHUB_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.NOTICE: "notice"}


def github_annotation(level: str, span: Span | None, title: str, body: str) -> str:
    """One workflow-command annotation, every part escaped (`validate` and `check`);
    without a span it is attached to the job, not to a file."""
    properties = [f"title={_escape_property(title)}"]
    if span is not None:
        properties[:0] = [
            f"file={_escape_property(printable(span.path))}",
            f"line={span.line}",
            f"col={span.column}",
        ]
    return f"::{level} {','.join(properties)}::{_escape_data(printable_lines(body))}"


def render_github(diagnostics: Sequence[Diagnostic]) -> str:
    lines = [
        github_annotation(
            GITHUB_LEVEL[d.severity],
            d.span,
            f"{d.code.id} {d.code.name}",
            "\n".join([d.message, *d.notes]),
        )
        for d in diagnostics
    ]
    return "\n".join(lines) + ("\n" if lines else "")
