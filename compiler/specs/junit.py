"""A run of specs as JUnit XML, the report CI systems show as test results (GitHub
test reporters, GitLab, Jenkins, Azure): one `testsuite` per spec file and
environment, one `testcase` per check, a `failure` with the full text of each failed
one. Specs that cannot run, or definitions that do not validate, are one `testcase`
with an `error` per problem.

Every text is made printable first (XML 1.0 cannot hold most control characters, even
escaped), then escaped by the XML writer. No timestamps or durations: the same run
gives the same bytes.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence

from expc.diagnostics import Diagnostic, printable, printable_lines
from expc.render import diagnostic_text
from expc.specs.run import Outcome, SpecRun

SUITES = "expc test"


def _document(root: ET.Element) -> str:
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, "unicode") + "\n"


def _counts(element: ET.Element, tests: int, failures: int, errors: int = 0) -> None:
    element.set("tests", str(tests))
    element.set("failures", str(failures))
    element.set("errors", str(errors))
    element.set("skipped", "0")


def render_junit(run: SpecRun) -> str:
    root = ET.Element("testsuites", name=SUITES)
    _counts(root, len(run.outcomes), run.failed)
    suites: dict[tuple[str, str | None], list[Outcome]] = {}
    for outcome in run.outcomes:
        suites.setdefault((outcome.spec, outcome.environment), []).append(outcome)
    for (spec, environment), outcomes in suites.items():
        name = printable(f"{spec} ({environment})" if environment else spec)
        suite = ET.SubElement(root, "testsuite", name=name)
        _counts(suite, len(outcomes), sum(not o.passed for o in outcomes))
        for outcome in outcomes:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=name,
                name=printable(outcome.title),
                file=printable(outcome.spec),
                line=str(outcome.span.line),
            )
            for failure in outcome.failures:
                element = ET.SubElement(
                    case,
                    "failure",
                    message=failure.message,
                    type=f"{failure.code.id} {failure.code.name}",
                )
                element.text = printable_lines(diagnostic_text(failure))
            if outcome.detail:
                ET.SubElement(case, "system-out").text = printable(outcome.detail)
    return _document(root)


def render_junit_problems(diagnostics: Sequence[Diagnostic], what: str) -> str:
    """Specs that could not run (or definitions that do not validate) as one errored
    test, so that a CI reporter shows why rather than nothing."""
    root = ET.Element("testsuites", name=SUITES)
    _counts(root, 1, 0, 1)
    suite = ET.SubElement(root, "testsuite", name=SUITES)
    _counts(suite, 1, 0, 1)
    case = ET.SubElement(suite, "testcase", classname=SUITES, name=printable(what))
    if not diagnostics:  # a usage error: `what` says it all
        ET.SubElement(case, "error", message=printable(what), type="usage")
    for diagnostic in diagnostics:
        element = ET.SubElement(
            case,
            "error",
            message=f"{diagnostic.span}: {diagnostic.message}",
            type=f"{diagnostic.code.id} {diagnostic.code.name}",
        )
        element.text = printable_lines(diagnostic_text(diagnostic))
    return _document(root)
