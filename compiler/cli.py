"""The command line: parse arguments, call the library (`api`), print, map to exit codes.

Exit codes: 0 success, 1 blocking findings (or stale outputs with --check),
2 usage or input error, 3 internal error. Whatever stops a command, it answers in the
`--format` it was asked for.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from expc import __version__, api
from expc.diagnostics import printable_lines, promote_warnings
from expc.errors import UsageError
from expc.pipeline.snapshot import Rejected, Snapshot, collection_paused
from expc.render import FORMATS, Report, counted, render, render_failure
from expc.shares import percent

# Modules only one command needs (the check and its jinja2 reports, init, serve,
# simulate, the evaluator) are imported inside that command: `validate` starts faster.

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3


def _print_report(report: Report, fmt: str) -> int:
    """A report on stdout, or in the text format on stderr when it blocks; the exit code."""
    text = render(report, fmt)
    stream = sys.stderr if fmt == "text" and report.blocking else sys.stdout
    if report.diagnostics or fmt != "text":
        stream.write(text)
    return EXIT_FINDINGS if report.blocking else EXIT_OK


def _valid(args: argparse.Namespace) -> Snapshot:
    """The snapshot, for commands that need valid definitions; prints why not."""
    result = api.load(Path(args.definitions), getattr(args, "strict", False))
    if isinstance(result, Rejected):
        _print_report(counted(result.diagnostics), "text")
        raise _StoppedError(EXIT_FINDINGS)
    return result


def _valid_in(args: argparse.Namespace) -> tuple[Snapshot, str | None]:
    """The snapshot and the environment `--env` chose (None without environments)."""
    snapshot = _valid(args)
    return snapshot, api.environment_of(snapshot, args.env)


class _StoppedError(Exception):
    """The command has printed why it stops; exit with `status`."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def cmd_validate(args: argparse.Namespace) -> int:
    validation = api.validate(Path(args.definitions), args.strict)
    status = _print_report(validation.report, args.format)
    if status == EXIT_OK and args.format == "text":
        print(f"ok: {validation.objects} definitions in {args.definitions}")
    return status


def cmd_compile(args: argparse.Namespace) -> int:
    compilation = api.compile_release(
        Path(args.definitions),
        Path(args.out) if args.out else None,
        check_only=args.check,
        targets=args.target,
        source_commit=args.source_commit,
        strict=args.strict,
    )
    if compilation.diagnostics:
        _print_report(counted(compilation.diagnostics), "text")
    if compilation.refused is not None:
        print(f"expc: {compilation.refused}", file=sys.stderr)
    if compilation.blocking:
        print("nothing written: fix the errors above first", file=sys.stderr)
        return EXIT_FINDINGS
    out = compilation.out
    if args.check:
        for name in compilation.written:
            print(f"{out / name}: stale; run 'expc compile' and commit the result")
        if compilation.written:
            return EXIT_FINDINGS
        print(f"ok: {out} is current")
        return EXIT_OK
    print(
        f"compiled {compilation.flags} flags from {args.definitions} into {out} "
        f"({len(compilation.written)} file(s) changed)"
    )
    return EXIT_OK


def cmd_graph(args: argparse.Namespace) -> int:
    from expc.outputs.graph_text import render_dot, render_mermaid

    graph = api.graph(*_valid_in(args))
    sys.stdout.write(render_mermaid(graph) if args.format == "mermaid" else render_dot(graph))
    return EXIT_OK


def cmd_traffic(args: argparse.Namespace) -> int:
    rows = api.traffic(*_valid_in(args))
    print(f"{'experiment':40} {'state':10} {'share':>10}  (of all users, before targeting)")
    for row in rows:
        share = ("<= " if row.at_most and row.serving else "") + percent(row.share, trim=True)
        note = ""
        if not row.serving:
            bound = "at most " if row.at_most else ""
            once = f"; {bound}{percent(row.if_running, trim=True)} once running"
            note = "not serving" + (once if row.state == "draft" else "")
        elif row.at_most:
            note = "at most: it also needs a prerequisite's variant"
        print(f"{row.key:40} {row.state:10} {share:>10}  {note}".rstrip())
    return EXIT_OK


# A holdout's two variants say which side of it a user is on; "on" alone reads as if
# the holdout applied to the user, the opposite of what it means.
HOLDOUT_OUTCOMES = {"holdout": "held out", "on": "not held out"}


def _outcome(kind: str, variant: str | None) -> str:
    if variant is None:
        return "-"
    return HOLDOUT_OUTCOMES.get(variant, variant) if kind == "holdout" else variant


def cmd_eval(args: argparse.Namespace) -> int:
    from expc.diagnostics import printable

    bundle_file = Path(args.bundle) if args.bundle else None
    if bundle_file is not None:
        evaluator = api.evaluator_for(None, bundle_file, args.env)
    else:
        snapshot, environment = _valid_in(args)
        evaluator = api.evaluator_for(snapshot, None, environment)
    user = api.parse_user(args.user)
    if args.flag and args.flag not in evaluator.flag_keys:
        raise UsageError(f"no flag '{args.flag}' in the bundle")
    results, steps = evaluator.explain(user, args.flag)
    kinds = {flag.key: flag.kind for flag in evaluator.prepared_flags}
    for key in [args.flag] if args.flag else list(results):
        result = results[key]
        print(f"{key:40} {_outcome(kinds[key], result.variant):24} {result.reason}")
        if args.explain:
            for step in steps:
                if step.flag == key:
                    print(f"    {step.what:9} {printable(step.detail)}")
    return EXIT_OK


def cmd_simulate(args: argparse.Namespace) -> int:
    snapshot, environment = _valid_in(args)
    run = api.simulate(snapshot, args.users, environment)
    print(f"{run.users:,} synthetic users, targeting off; share observed vs expected (z = 4)")
    print(f"{'object':36} {'what':9} {'observed':>9} {'expected':>9}  interval")
    for share in run.shares:
        expected = "-" if share.expected is None else f"{float(share.expected):.2%}"
        low, high = share.interval
        mark = "" if share.ok else "  OUTSIDE"
        print(
            f"{share.key:36} {share.what:9} {share.share:>9.2%} {expected:>9}  "
            f"[{low:.2%}, {high:.2%}]{mark}"
        )
    for violation in run.violations:
        print(f"violation: {violation}")
    exclusive = "no user in two experiments of one group" if not run.violations else "VIOLATED"
    print(f"exclusivity and holdouts: {exclusive}")
    return EXIT_OK if run.ok else EXIT_FINDINGS


CHECK_FORMATS = [*FORMATS, "markdown"]


def cmd_check(args: argparse.Namespace) -> int:
    from expc.check import report
    from expc.check.run import InvalidDefinitionsError

    try:
        result = api.check(Path(args.definitions), args.against)
    except InvalidDefinitionsError as invalid:
        # Every format still gets its document: a CI job parsing JSON gets JSON.
        diagnostics = invalid.rejected.diagnostics
        if args.format == "markdown":
            sys.stdout.write(report.render_invalid(diagnostics))
        else:
            summary = counted(diagnostics)
            document = {**summary.document, "against": args.against, "blocking": True}
            invalid_report = Report(
                diagnostics, summary.summary, document={**document, "valid": False, "findings": []}
            )
            _print_report(invalid_report, args.format)
        return EXIT_FINDINGS
    findings = result.report()
    if args.strict:
        findings = dataclasses.replace(findings, diagnostics=promote_warnings(findings.diagnostics))
    if args.format == "markdown":
        sys.stdout.write(report.render_markdown(result))
    else:
        sys.stdout.write(render(findings, args.format))
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if args.format == "github" and step_summary:
        with Path(step_summary).open("a", encoding="utf-8") as stream:
            stream.write(report.render_markdown(result))
    return EXIT_FINDINGS if findings.blocking else EXIT_OK


def cmd_rules(args: argparse.Namespace) -> int:
    found = api.rules(args.code)
    if args.code:
        (code,) = found
        print(f"{code.id} {code.name} ({code.severity})\n")
        print(code.doc)
        return EXIT_OK
    for code in found:
        print(f"{code.id}  {code.name:38} {code.severity!s:8} {code.summary}")
    return EXIT_OK


def cmd_envs(args: argparse.Namespace) -> int:
    found = api.environments_table(_valid(args))
    width = 32
    print(f"{'experiment':40} " + "".join(f"{name:{width}}" for name in found.names).rstrip())
    print((f"{'':40} " + f"{'state     traffic  share':{width}}" * len(found.names)).rstrip())
    for row in found.rows:
        cells = ""
        for cell in row.cells:
            share = ("<= " if cell.at_most and cell.share else "") + percent(cell.share, trim=True)
            cells += f"{cell.state:9} {cell.traffic:>6}% {share:>8}      "[:width].ljust(width)
        mark = "*" if row.differs else ""
        print(f"{row.key:40} {cells}{mark}".rstrip())
    differing = sum(row.differs for row in found.rows)
    print(
        f"* differs between environments ({differing} of {len(found.rows)}); share: of all "
        "users now, before targeting"
    )
    if found.varying:
        print("also set per environment:")
        for key, where, fields in found.varying:
            print(f"  {key} ({where}): {', '.join(fields)}")
    return EXIT_OK


def cmd_promote(args: argparse.Namespace) -> int:
    outcome = api.promote(
        Path(args.definitions), args.key, args.source, args.target, dry_run=args.dry_run
    )
    if isinstance(outcome, Rejected):
        _print_report(counted(outcome.diagnostics), "text")
        return EXIT_FINDINGS
    promotion = outcome.promotion
    what = f"'{args.key}' from {args.source} to {args.target}"
    if not promotion.changes:
        print(
            f"nothing to promote: '{args.key}' is the same in {args.source} and "
            f"{args.target} (overrides and pinned name test users: never promoted)"
        )
        return EXIT_OK
    sys.stdout.write(printable_lines(promotion.diff()))
    fields = ", ".join(
        [*promotion.copied, *(f"{name} (as the base)" for name in promotion.inherited)]
    )
    if outcome.refused:
        _print_report(counted(outcome.refused), "text")
        print(
            f"refused: promoting {what} ({fields}) {outcome.problem}; nothing written",
            file=sys.stderr,
        )
        return EXIT_FINDINGS
    if args.dry_run:
        print(f"would promote {what}: {fields} (--dry-run: nothing written)")
    else:
        print(f"promoted {what}: {fields} in {promotion.shown}")
    return EXIT_OK


TEST_FORMATS = [*FORMATS, "junit"]


def cmd_test(args: argparse.Namespace) -> int:
    from expc.specs import junit, report
    from expc.specs.run import Invalid

    fmt = args.format
    try:
        outcome = api.run_specs(
            Path(args.definitions),
            [Path(path) for path in args.specs],
            environment=args.env,
            pattern=args.k,
            users=args.users,
            strict=args.strict,
        )
    except UsageError as error:
        # The one line on stderr and a JSON or GitHub document come from `main`; a
        # JUnit reader and the pull-request comment get theirs here.
        if fmt == "junit":
            sys.stdout.write(junit.render_junit_problems([], f"expc test could not run: {error}"))
        _write_summary(args.summary, report.render_markdown_problems([], f"{error}"))
        raise
    if isinstance(outcome, Rejected | Invalid):
        status = EXIT_FINDINGS if isinstance(outcome, Rejected) else EXIT_USAGE
        what = (
            "the definitions do not validate; fix them first"
            if isinstance(outcome, Rejected)
            else "the specs cannot run; fix these first"
        )
        problems = counted(outcome.diagnostics)
        if fmt == "junit":
            sys.stdout.write(junit.render_junit_problems(outcome.diagnostics, what))
        elif fmt == "text":
            _print_report(problems, fmt)
            print(f"expc test: {what}", file=sys.stderr)
        else:
            document = {**problems.document, "ran": False, "why": what}
            _print_report(Report(problems.diagnostics, problems.summary, document=document), fmt)
        markdown = report.render_markdown_problems(outcome.diagnostics, what)
        _write_summary(args.summary, markdown)
        if fmt == "github":
            _write_summary(os.environ.get("GITHUB_STEP_SUMMARY"), markdown, append=True)
        return status
    if fmt == "junit":
        sys.stdout.write(junit.render_junit(outcome))
    elif fmt == "text":
        sys.stdout.write(report.render_text(outcome, args.quiet))
    elif fmt == "github":
        sys.stdout.write(report.render_github(outcome))
    else:
        sys.stdout.write(render(report.report(outcome), fmt))
    markdown = report.render_markdown(outcome)
    _write_summary(args.summary, markdown)
    if fmt == "github":
        _write_summary(os.environ.get("GITHUB_STEP_SUMMARY"), markdown, append=True)
    return EXIT_FINDINGS if outcome.failed else EXIT_OK


def _write_summary(path: str | None, markdown: str, append: bool = False) -> None:
    """`expc test --summary FILE`: the paragraph the pull-request comment adds."""
    if not path:
        return
    from expc.outputs.files import write_atomic

    try:
        if append:  # GitHub's job summary: other steps write to it too
            with Path(path).open("a", encoding="utf-8") as stream:
                stream.write(markdown)
        elif not Path(path).parent.is_dir():
            raise UsageError(f"{path}: no such folder to write it in")
        else:  # whole or not at all, like every file expc writes
            write_atomic(Path(path), markdown)
    except OSError as error:
        raise UsageError(f"{path}: cannot be written ({error.strerror})") from error


def cmd_init(args: argparse.Namespace) -> int:
    written = api.init(Path(args.directory), args.action)
    for path in written.scaffold:
        print(f"created {path}")
    print(f"compiled {written.flags} flags into {written.out} ({len(written.generated)} files)")
    print(f"next: cd {args.directory} && git init && git add -A && git commit -m 'expc init'")
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    import contextlib
    import gc
    import logging

    from expc.tools.serve import open_serving

    serving = open_serving(
        Path(args.directory),
        args.host,
        args.port,
        environment=args.env,
        token_file=Path(args.token_file) if args.token_file else None,
        bucketing_attribute=args.bucketing_attribute,
    )
    # A server lives on: the collector, paused for the short commands, must run again
    # (the event loop makes reference cycles), and what was loaded so far is frozen out
    # of its scans.
    gc.enable()
    gc.freeze()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    for name, level in (("expc.serve", logging.INFO), ("uvicorn", logging.WARNING)):
        logger = logging.getLogger(name)
        if not logger.handlers:
            logger.addHandler(handler)
            logger.setLevel(level)
            logger.propagate = False
    print(f"serving {args.directory} at {serving.url} (Ctrl-C stops)", flush=True)
    if serving.ofrep_url is None:
        print(f"OFREP is off: {serving.ofrep_off}", flush=True)
    elif serving.content_id is None:
        print(
            f"OFREP at {serving.ofrep_url}: no {serving.bundle} yet; it answers 503 "
            "until a compile writes one",
            flush=True,
        )
    else:
        print(
            f"OFREP at {serving.ofrep_url}: evaluating {serving.bundle} "
            f"({serving.content_id}); a new compile replaces it",
            flush=True,
        )
    for note in serving.notes:
        print(f"note: {note}", file=sys.stderr)
    if args.token_file:
        print(f"every request needs: Authorization: Bearer <the token in {args.token_file}>")
    if not serving.loopback:
        print(
            f"note: {serving.url} is not loopback: other machines can reach it with the token",
            file=sys.stderr,
        )
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: the server has shut down
        serving.run()
    return EXIT_OK


class _ArgumentError(UsageError):
    """argparse's complaint about the command line, raised instead of printed."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _ArgumentError(f"{message}; see `{self.prog} --help`")


def parser() -> argparse.ArgumentParser:
    root = _Parser(
        prog="expc", description="Compile experiment definitions into a bundle SDKs evaluate."
    )
    root.add_argument("--version", action="version", version=f"expc {__version__}")
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        # Commands with a positional argument of their own take the folder as an option.
        as_option = name in ("eval", "promote", "test")
        sub.add_argument(
            "--definitions" if as_option else "definitions",
            nargs=None if as_option else "?",
            default="definitions",
            help="definitions directory",
        )
        sub.add_argument("--strict", action="store_true", help="warnings block too")
        return sub

    validate = command("validate", "check every definition and print all diagnostics")
    validate.add_argument("--format", choices=FORMATS, default="text")
    validate.set_defaults(run=cmd_validate)

    compile_ = command("compile", "write the bundle and schemas into the output directory")
    compile_.add_argument("--out", help="output directory (default: generated/ beside DIR)")
    compile_.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if outputs are stale"
    )
    compile_.add_argument(
        "--source-commit",
        default=os.environ.get("EXPC_SOURCE_COMMIT"),
        help="record this commit in the bundle ('auto': git HEAD); default $EXPC_SOURCE_COMMIT",
    )
    compile_.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="NAME",
        help="also write this target (amplitude); repeatable; project.yaml can list targets",
    )
    compile_.set_defaults(run=cmd_compile)

    def one_environment(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--env",
            metavar="NAME",
            help="the environment to look at (required when project.yaml declares them)",
        )

    graph = command("graph", "print the dependency graph")
    one_environment(graph)
    graph.add_argument("--format", choices=["mermaid", "dot"], default="mermaid")
    graph.set_defaults(run=cmd_graph)

    traffic = command("traffic", "print each experiment's expected share of all users")
    one_environment(traffic)
    traffic.set_defaults(run=cmd_traffic)

    evaluate = command("eval", "evaluate every flag (or one) for a user and say why")
    evaluate.add_argument("user", help="a JSON object of attributes, or a file holding one")
    evaluate.add_argument("--flag", help="only this flag")
    evaluate.add_argument("--explain", action="store_true", help="print every decision")
    evaluate.add_argument("--bundle", help="evaluate this bundle file instead of compiling DIR")
    one_environment(evaluate)
    evaluate.set_defaults(run=cmd_eval)

    checking = command("check", "compare with a previous release; fail on unsafe changes")
    checking.add_argument(
        "--against", required=True, help="a git revision, a definitions directory, or a bundle file"
    )
    checking.add_argument("--format", choices=CHECK_FORMATS, default="text")
    checking.set_defaults(run=cmd_check)

    environments = command(
        "envs", "print every experiment's state, traffic and share in each environment"
    )
    environments.set_defaults(run=cmd_envs)

    promoting = command(
        "promote", "copy an object's runtime fields from one environment to the next"
    )
    promoting.add_argument("key", help="the experiment, group, holdout or cohort")
    promoting.add_argument("--from", dest="source", required=True, metavar="ENV")
    promoting.add_argument("--to", dest="target", required=True, metavar="ENV")
    promoting.add_argument("--dry-run", action="store_true", help="print the change; write nothing")
    promoting.set_defaults(run=cmd_promote)

    listing = commands.add_parser("rules", help="list the safety rules, or print one")
    listing.add_argument("code", nargs="?", help="a rule code or name")
    listing.set_defaults(run=cmd_rules)

    scaffold = commands.add_parser("init", help="scaffold a new configuration repository")
    scaffold.add_argument("directory", nargs="?", default=".")
    scaffold.add_argument(
        "--action",
        metavar="OWNER/REPO@REF",
        help="where the workflow, pre-commit and README take expc from (default: this release)",
    )
    scaffold.set_defaults(run=cmd_init)

    serving = commands.add_parser(
        "serve", help="answer OFREP from the bundle and serve generated/ with ETags"
    )
    serving.add_argument("directory", nargs="?", default="generated")
    serving.add_argument("--port", type=int, default=8000, help="0-65535; 0: any free port")
    serving.add_argument(
        "--host", default="127.0.0.1", help="loopback by default; any other needs --token-file"
    )
    serving.add_argument(
        "--env", metavar="NAME", help="the environment whose bundle OFREP evaluates"
    )
    serving.add_argument(
        "--token-file", metavar="PATH", help="a file holding the bearer token every request needs"
    )
    serving.add_argument(
        "--bucketing-attribute",
        metavar="NAME",
        default="user_id",
        help="the attribute OFREP's targeting key is the value of (default user_id)",
    )
    serving.set_defaults(run=cmd_serve)

    testing = command("test", "run the specs: prove what users get from the current definitions")
    testing.add_argument(
        "specs",
        nargs="*",
        metavar="SPECS",
        help="spec files or folders (default: project.yaml's specs, else specs/ beside DIR)",
    )
    testing.add_argument(
        "--env", metavar="NAME", help="only the specs of this environment (default: every spec)"
    )
    testing.add_argument("--format", choices=TEST_FORMATS, default="text")
    testing.add_argument("-k", metavar="PATTERN", help="only checks whose spec or title holds it")
    testing.add_argument(
        "-n", "--users", type=int, default=100_000, help="simulated users for shares (100,000)"
    )
    testing.add_argument("-q", "--quiet", action="store_true", help="print failures only")
    testing.add_argument(
        "--summary",
        metavar="FILE",
        help="also write a markdown paragraph (counts, failures) for a pull-request comment",
    )
    testing.set_defaults(run=cmd_test)

    simulation = command("simulate", "evaluate synthetic users; compare shares with DESIGN §4")
    simulation.add_argument("-n", "--users", type=int, default=100_000, help="users (100,000)")
    one_environment(simulation)
    simulation.set_defaults(run=cmd_simulate)
    return root


def _requested_format(argv: Sequence[str]) -> str:
    """The --format the command line asks for, found even when parsing it fails, so
    that a CI job that parses JSON gets a JSON document for every outcome."""
    for index, word in enumerate(argv):
        if word.startswith("--format="):
            return word.split("=", 1)[1]
        if word == "--format" and index + 1 < len(argv):
            return argv[index + 1]
    return "text"


def _fail(status: int, kind: str, message: str, fmt: str) -> int:
    """Report a problem that stopped the command, in the format that was asked for."""
    from expc.diagnostics import printable

    label = "internal error" if kind == "internal" else "error"
    print(f"expc: {label}: {printable(message)}", file=sys.stderr)
    sys.stdout.write(render_failure(kind, message, status, fmt))
    return status


def main(argv: Sequence[str] | None = None, *, restore_collector: bool = True) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    fmt = _requested_format(arguments)
    try:
        args = parser().parse_args(arguments)
    except UsageError as error:
        return _fail(EXIT_USAGE, "usage", str(error), fmt)
    # One short-lived run that keeps alive everything it allocates: the cyclic garbage
    # collector would only rescan millions of live objects (a third of the run time).
    # It is switched back on afterwards, for callers that run expc in-process (`run`,
    # the command itself, leaves before that).
    with collection_paused(restore_collector):
        try:
            status: int = args.run(args)
        except UsageError as error:
            return _fail(EXIT_USAGE, "usage", str(error), fmt)
        except _StoppedError as stop:
            return stop.status
        except KeyboardInterrupt:
            return _fail(EXIT_INTERNAL, "internal", "interrupted", fmt)
        except Exception as error:  # the one place a bug becomes an exit code, not a traceback
            if os.environ.get("EXPC_DEBUG"):
                traceback.print_exc()
            return _fail(EXIT_INTERNAL, "internal", f"{error!r}; please report it", fmt)
    return status


def run() -> NoReturn:
    """The `expc` command (and `python -m expc`): `main`, then leave the process at once.

    A run keeps alive everything it built (the collector is paused for that reason),
    and switching the collector back on, or letting the interpreter free millions of
    objects one by one on the way out, costs a tenth of a large compile for nothing:
    the operating system takes the memory back. Output is flushed first; every file
    expc writes is complete before it is renamed into place.
    """
    status = main(restore_collector=False)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    run()
