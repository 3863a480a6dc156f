"""The command line: parse arguments, call the library, print, map to exit codes.

Exit codes: 0 success, 1 blocking findings (or stale outputs with --check),
2 usage or input error, 3 internal error.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from expc import __version__, api
from expc.diagnostics import (
    Diagnostic,
    Severity,
    github_annotation,
    printable,
    promote_warnings,
    render_github,
    render_json,
    render_text,
)
from expc.outputs.files import OutputError, write_outputs
from expc.outputs.graph_text import render_dot, render_mermaid
from expc.pipeline.traffic import format_share
from expc.sdk.evaluate import BundleError, Evaluator

# Modules only one command needs (the check and its jinja2 reports, init, serve,
# simulate) are imported inside that command: `validate` starts faster without them.

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3

RENDERERS = {"text": render_text, "json": render_json, "github": render_github}


def _snapshot(args: argparse.Namespace) -> tuple[api.Snapshot, list[Diagnostic]]:
    snapshot = api.load_snapshot(Path(args.definitions), api.display_root(args.definitions))
    diagnostics = snapshot.diagnostics
    if getattr(args, "strict", False):
        diagnostics = promote_warnings(diagnostics)
    return snapshot, diagnostics


class _DefinitionsError(Exception):
    """The definitions have errors (already printed): exit 1."""


def _valid_snapshot(args: argparse.Namespace) -> api.Snapshot:
    """The snapshot, for commands that need valid definitions; prints errors if not."""
    snapshot, diagnostics = _snapshot(args)
    if any(d.blocking for d in diagnostics):
        _report(diagnostics, "text")
        raise _DefinitionsError
    return snapshot


def _report(diagnostics: list[Diagnostic], fmt: str) -> int:
    output = RENDERERS[fmt](diagnostics)
    blocking = any(d.blocking for d in diagnostics)
    stream = sys.stderr if fmt == "text" and blocking else sys.stdout
    if diagnostics or fmt != "text":
        stream.write(output)
    return EXIT_FINDINGS if blocking else EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    _snapshot_, diagnostics = _snapshot(args)
    status = _report(diagnostics, args.format)
    if status == EXIT_OK and args.format == "text":
        print(f"ok: {len(_snapshot_.objects)} definitions in {args.definitions}")
    return status


def _source_commit(requested: str | None, root: Path) -> str | None:
    if requested != "auto":
        return requested
    try:
        result = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return result.stdout.strip() or None


def cmd_compile(args: argparse.Namespace) -> int:
    snapshot, diagnostics = _snapshot(args)
    definitions = Path(args.definitions)
    out_dir = Path(args.out) if args.out else api.default_out_dir(definitions)
    history, problems = api.current_ledger(out_dir)
    diagnostics = [*diagnostics, *problems]
    if any(d.blocking for d in diagnostics):
        _report(diagnostics, "text")
        print("nothing written: fix the errors above first", file=sys.stderr)
        return EXIT_FINDINGS
    if diagnostics:
        _report(diagnostics, "text")
    commit = _source_commit(args.source_commit, definitions)
    try:
        files = api.outputs(snapshot, commit, args.target, history)
    except api.TargetError as error:
        print(f"expc: {error}", file=sys.stderr)
        print("nothing written", file=sys.stderr)
        return EXIT_FINDINGS
    if args.check:
        stale = api.stale_files(out_dir, files)
        for name in stale:
            print(f"{out_dir / name}: stale; run 'expc compile' and commit the result")
        if stale:
            return EXIT_FINDINGS
        print(f"ok: {out_dir} is current")
        return EXIT_OK
    try:
        written = write_outputs(out_dir, files)
    except OutputError as error:
        raise api.UsageError(f"{error}; nothing written") from error
    flags = sum(1 for o in snapshot.objects.values() if o.definition.kind != "cohort") - (
        snapshot.project is not None
    )
    print(f"compiled {flags} flags from {args.definitions} into {out_dir}", end="")
    print(f" ({len(written)} file(s) changed)")
    return EXIT_OK


def cmd_graph(args: argparse.Namespace) -> int:
    snapshot = _valid_snapshot(args)
    render = render_mermaid if args.format == "mermaid" else render_dot
    sys.stdout.write(render(snapshot))
    return EXIT_OK


def cmd_traffic(args: argparse.Namespace) -> int:
    snapshot = _valid_snapshot(args)
    print(f"{'experiment':40} {'state':10} {'share':>10}  (of all users, before targeting)")
    for row in api.traffic_table(snapshot):
        share = ("<= " if row.at_most and row.serving else "") + format_share(row.share)
        note = ""
        if not row.serving:
            bound = "at most " if row.at_most else ""
            note = "not serving" + (
                f"; {bound}{format_share(row.if_running)} once running"
                if row.state == "draft"
                else ""
            )
        elif row.at_most:
            note = "at most: it also needs a prerequisite's variant"
        print(f"{row.key:40} {row.state:10} {share:>10}  {note}".rstrip())
    return EXIT_OK


def _evaluator(args: argparse.Namespace) -> Evaluator:
    if args.bundle:
        try:
            return Evaluator.load(args.bundle)
        except BundleError as error:
            raise api.UsageError(f"{args.bundle}: {error}") from error
    return Evaluator.from_compiled(api.bundle(_valid_snapshot(args)))


def _user(text: str) -> dict[str, object]:
    """USER is a JSON object, or the path of a file holding one."""
    source = text
    if not text.lstrip().startswith(("{", "[", '"')):
        try:
            source = Path(text).read_text(encoding="utf-8")
        except OSError as error:
            raise api.UsageError(f"{text}: not a JSON object and not a readable file") from error
    try:
        user = json.loads(source)
    except ValueError as error:
        raise api.UsageError(f"USER is not valid JSON: {error}") from error
    if not isinstance(user, dict):
        raise api.UsageError(
            'USER must be a JSON object of attributes, e.g. \'{"user_id": "u-1"}\''
        )
    return user


def cmd_eval(args: argparse.Namespace) -> int:
    evaluator = _evaluator(args)
    user = _user(args.user)
    if args.flag and args.flag not in evaluator.flag_keys:
        raise api.UsageError(f"no flag '{args.flag}' in the bundle")
    results, steps = evaluator.explain(user, args.flag)
    kinds = {flag.key: flag.kind for flag in evaluator.prepared_flags}
    shown = [args.flag] if args.flag else list(results)
    for key in shown:
        result = results[key]
        print(f"{key:40} {_outcome(kinds[key], result.variant):24} {result.reason}")
        if args.explain:
            for step in steps:
                if step.flag == key:
                    print(f"    {step.what:9} {printable(step.detail)}")
    return EXIT_OK


# A holdout's two variants say which side of it a user is on; "on" alone reads as if
# the holdout applied to the user, the opposite of what it means.
HOLDOUT_OUTCOMES = {"holdout": "held out", "on": "not held out"}


def _outcome(kind: str, variant: str | None) -> str:
    if variant is None:
        return "-"
    return HOLDOUT_OUTCOMES.get(variant, variant) if kind == "holdout" else variant


def cmd_simulate(args: argparse.Namespace) -> int:
    from expc.tools.simulate import simulate

    snapshot = _valid_snapshot(args)
    assert snapshot.catalog is not None
    if args.users < 1:
        raise api.UsageError("-n must be at least 1")
    run = simulate(snapshot.catalog, api.bundle(snapshot), args.users)
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


CHECK_FORMATS = ["github", "json", "markdown", "text"]


def cmd_check(args: argparse.Namespace) -> int:
    from expc.check import report
    from expc.check import run as check

    renderers = {
        "text": report.render_text,
        "json": report.render_json,
        "github": report.render_github,
        "markdown": report.render_markdown,
    }
    try:
        result = check.run(Path(args.definitions), args.against)
    except check.InvalidDefinitionsError as invalid:
        # Every format still gets its document: a CI job parsing JSON gets JSON.
        diagnostics = invalid.snapshot.diagnostics
        if args.format == "text":
            _report(diagnostics, "text")
        else:
            sys.stdout.write(report.render_invalid(diagnostics, args.format, args.against))
        raise _DefinitionsError from None
    sys.stdout.write(renderers[args.format](result))
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if args.format == "github" and summary:
        with Path(summary).open("a", encoding="utf-8") as stream:
            stream.write(report.render_markdown(result))
    warned = any(f.severity is Severity.WARNING and not f.accepted for f in result.findings)
    return EXIT_FINDINGS if result.blocking or (args.strict and warned) else EXIT_OK


def cmd_rules(args: argparse.Namespace) -> int:
    from expc.check import rules

    if args.code:
        found = rules.find(args.code)
        if found is None:
            raise api.UsageError(f"no rule '{args.code}'; `expc rules` lists them")
        print(f"{found.code} {found.name} ({found.severity})\n")
        print(found.doc)
        return EXIT_OK
    for code, found in sorted(rules.RULES.items()):
        print(f"{code}  {found.name:38} {found.severity!s:8} {found.summary}")
    return EXIT_OK


def cmd_init(args: argparse.Namespace) -> int:
    from expc.tools.init import GENERATED, init

    written = init(Path(args.directory), args.action)
    for path in written.scaffold:
        print(f"created {path}")
    generated = Path(args.directory) / GENERATED
    print(f"compiled {written.flags} flags into {generated} ({len(written.generated)} files)")
    print(f"next: cd {args.directory} && git init && git add -A && git commit -m 'expc init'")
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    import logging

    from expc.tools.serve import LOG, make_server, printable

    if not 0 <= args.port <= 65535:
        raise api.UsageError(f"--port {args.port}: a port is 0-65535 (0: any free port)")
    directory = Path(args.directory)
    if not directory.is_dir():
        raise api.UsageError(f"{directory}: no such directory; run 'expc compile' first")
    try:
        server = make_server(directory, args.host, args.port)
    except (OSError, ValueError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise api.UsageError(
            f"--host '{printable(args.host)}' --port {args.port}: cannot listen there: {reason}"
        ) from error
    if not LOG.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        LOG.addHandler(handler)
        LOG.setLevel(logging.INFO)
        LOG.propagate = False
    print(f"serving {directory} at {server.url} (Ctrl-C stops)", flush=True)
    if not server.loopback:
        warning = f"note: {server.url} is not loopback: other machines can read {directory}"
        print(warning, file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return EXIT_OK


def parser() -> argparse.ArgumentParser:
    root = _Parser(
        prog="expc", description="Compile experiment definitions into a bundle SDKs evaluate."
    )
    root.add_argument("--version", action="version", version=f"expc {__version__}")
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument(
            "--definitions" if name == "eval" else "definitions",
            nargs=None if name == "eval" else "?",
            default="definitions",
            help="definitions directory",
        )
        sub.add_argument("--strict", action="store_true", help="warnings block too")
        return sub

    validate = command("validate", "check every definition and print all diagnostics")
    validate.add_argument("--format", choices=sorted(RENDERERS), default="text")
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

    graph = command("graph", "print the dependency graph")
    graph.add_argument("--format", choices=["mermaid", "dot"], default="mermaid")
    graph.set_defaults(run=cmd_graph)

    traffic = command("traffic", "print each experiment's expected share of all users")
    traffic.set_defaults(run=cmd_traffic)

    evaluate = command("eval", "evaluate every flag (or one) for a user and say why")
    evaluate.add_argument("user", help="a JSON object of attributes, or a file holding one")
    evaluate.add_argument("--flag", help="only this flag")
    evaluate.add_argument("--explain", action="store_true", help="print every decision")
    evaluate.add_argument("--bundle", help="evaluate this bundle file instead of compiling DIR")
    evaluate.set_defaults(run=cmd_eval)

    checking = command("check", "compare with a previous release; fail on unsafe changes")
    checking.add_argument(
        "--against", required=True, help="a git revision, a definitions directory, or a bundle file"
    )
    checking.add_argument("--format", choices=CHECK_FORMATS, default="text")
    checking.set_defaults(run=cmd_check)

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

    serving = commands.add_parser("serve", help="serve generated/ over HTTP with ETags")
    serving.add_argument("directory", nargs="?", default="generated")
    serving.add_argument("--port", type=int, default=8000, help="0-65535; 0: any free port")
    serving.add_argument("--host", default="127.0.0.1", help="loopback by default")
    serving.set_defaults(run=cmd_serve)

    simulation = command("simulate", "evaluate synthetic users; compare shares with DESIGN §4")
    simulation.add_argument("-n", "--users", type=int, default=100_000, help="users (100,000)")
    simulation.set_defaults(run=cmd_simulate)
    return root


class _ArgumentError(api.UsageError):
    """argparse's complaint about the command line, raised instead of printed."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _ArgumentError(f"{message}; see `{self.prog} --help`")


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
    message = printable(message)
    label = "internal error" if kind == "internal" else "error"
    print(f"expc: {label}: {message}", file=sys.stderr)
    if fmt == "json":
        document = {"version": 1, "error": {"kind": kind, "message": message}, "exit": status}
        print(json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False))
    elif fmt == "github":
        print(github_annotation("error", None, f"expc {label}", message))
    elif fmt == "markdown":
        from expc.check.report import render_failure

        sys.stdout.write(render_failure(label, message))
    return status


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    fmt = _requested_format(arguments)
    try:
        args = parser().parse_args(arguments)
    except api.UsageError as error:
        return _fail(EXIT_USAGE, "usage", str(error), fmt)
    # One short-lived run that keeps alive everything it allocates: the cyclic garbage
    # collector would only rescan millions of live objects (a third of the run time).
    # It is switched back on afterwards, for callers that run expc in-process.
    with api.collection_paused():
        try:
            status: int = args.run(args)
        except api.UsageError as error:
            return _fail(EXIT_USAGE, "usage", str(error), fmt)
        except _DefinitionsError:
            return EXIT_FINDINGS
        except KeyboardInterrupt:
            return _fail(EXIT_INTERNAL, "internal", "interrupted", fmt)
        except Exception as error:  # the one place a bug becomes an exit code, not a traceback
            if os.environ.get("EXPC_DEBUG"):
                traceback.print_exc()
            return _fail(EXIT_INTERNAL, "internal", f"{error!r}; please report it", fmt)
    return status


if __name__ == "__main__":
    sys.exit(main())
