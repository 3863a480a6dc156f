"""The one type for everything that can go wrong for a user, and the one registry of
codes it carries: compile-time codes (`codes`) and the safety check's rules
(`check.rules`) alike. How diagnostics are printed is `render`.
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace


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
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable_lines(text: str) -> str:
    """Like `printable`, but keeps line breaks (formats that escape them themselves)."""
    return "\n".join(printable(line) for line in text.split("\n"))


class Severity(enum.StrEnum):
    ERROR = "error"
    WARNING = "warning"
    NOTICE = "notice"


@dataclass(frozen=True, order=True)
class Span:
    """A place in a file; line and column are 1-based."""

    path: str
    line: int = 1
    column: int = 1

    def __str__(self) -> str:
        return f"{printable(self.path)}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Code:
    """A stable code with its kebab-case name; codes are never reused. `doc` is the
    long documentation (`expc rules CODE`): a rule's docstring, with its "breaks" and
    "instead" examples."""

    id: str
    name: str
    severity: Severity
    summary: str
    doc: str = ""

    @property
    def instead(self) -> str:
        """The "instead:" paragraph of the documentation, on one line."""
        if "instead:" not in self.doc:
            return ""
        return " ".join(self.doc.split("instead:", 1)[1].split())


CODES: dict[str, Code] = {}


def register(code: Code) -> Code:
    """Add a code to the one registry; a code or name used twice fails at import."""
    if code.id in CODES or any(known.name == code.name for known in CODES.values()):
        raise RuntimeError(f"diagnostic code {code.id} {code.name} registered twice")
    CODES[code.id] = code
    return code


def define(id_: str, name: str, severity: Severity, summary: str, doc: str = "") -> Code:
    return register(Code(id_, name, severity, summary, inspect.cleandoc(doc)))


def find_code(code_or_name: str) -> Code | None:
    """A code by its id or name, in any case (`c101`, `C101`, `live-group-slots-changed`)."""
    wanted = code_or_name.strip().lower()
    for code in CODES.values():
        if wanted in (code.id.lower(), code.name):
            return code
    return None


@dataclass(frozen=True)
class CheckFacts:
    """What a finding of the safety check adds to a diagnostic."""

    key: str  # the object the finding is about
    fingerprint: str  # what an acknowledgement must name (rule, object, before/after)
    paste_into: str  # the file an acknowledgement of it goes into
    previous: Span | None = None  # the object in the previous release
    accepted: str | None = None  # the reason of the acknowledgement that accepts it
    acceptable: bool = True  # whether an acknowledgement can accept it at all
    environments: tuple[str, ...] = ()  # where it holds; none without environments

    def snippet(self, code: Code) -> str:
        """What to paste to accept the finding knowingly; the fingerprint is quoted so
        that one made only of digits stays a string."""
        return (
            "acknowledge:\n"
            f"  - rule: {code.id}\n"
            f'    fingerprint: "{self.fingerprint}"\n'
            "    reason: <why this is acceptable>"
        )


@dataclass(frozen=True)
class Diagnostic:
    code: Code
    message: str
    span: Span
    severity: Severity
    notes: tuple[str, ...] = field(default=())
    check: CheckFacts | None = None  # set on the findings of `expc check`

    @property
    def blocking(self) -> bool:
        accepted = self.check is not None and self.check.accepted is not None
        return self.severity is Severity.ERROR and not accepted

    def sort_key(self) -> tuple[str, int, int, str, str]:
        return (self.span.path, self.span.line, self.span.column, self.code.id, self.message)


def make(
    code: Code,
    message: str,
    span: Span,
    notes: Sequence[str] = (),
    check: CheckFacts | None = None,
    severity: Severity | None = None,
) -> Diagnostic:
    """A diagnostic; its message and notes are made printable here, once, so that no
    output format can receive raw control characters from definitions."""
    return Diagnostic(
        code,
        printable(message),
        span,
        severity or code.severity,
        tuple(printable(note) for note in notes),
        check,
    )


def sorted_diagnostics(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    unique = {(d.sort_key(), d.notes): d for d in diagnostics}
    return [unique[k] for k in sorted(unique)]


def promote_warnings(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    """`--strict`: every warning blocks."""
    return [
        replace(d, severity=Severity.ERROR) if d.severity is Severity.WARNING else d
        for d in diagnostics
    ]
