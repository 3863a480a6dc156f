"""The command line: parse arguments, call the library, print, map to exit codes.

Exit codes: 0 success, 1 blocking findings (or stale outputs with --check),
2 usage or input error, 3 internal error.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from compiler import __version__, api
from compiler.diagnostics import (
    Diagnostic,
    Severity,
    promote_warnings,
    render_github,
    render_json,
    render_text,
)
from compiler.evaluate import BundleError, Evaluator
from compiler.files import write_outputs
from compiler.previous import read_ledger
from compiler.render_graph import render_dot, render_mermaid
from compiler.traffic import format_share

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
    if any(d.blocking for d in diagnostics):
        _report(diagnostics, "text")
        print("nothing written: fix the errors above first", file=sys.stderr)
        return EXIT_FINDINGS
    if diagnostics:
        _report(diagnostics, "text")
    out_dir = Path(args.out) if args.out else Path(args.definitions).parent / "generated"
    commit = _source_commit(args.source_commit, Path(args.definitions))
    try:
        files = api.outputs(snapshot, commit, args.target, read_ledger(out_dir / "ledger.json"))
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
    written = write_outputs(out_dir, files)
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
    for key, share in api.traffic_report(snapshot).items():
        definition = snapshot.objects[key].definition
        state = getattr(definition, "state", "")
        print(f"{key:40} {state:10} {format_share(share):>10}")
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
    shown = [args.flag] if args.flag else list(results)
    for key in shown:
        result = results[key]
        print(f"{key:40} {result.variant or '-':24} {result.reason}")
        if args.explain:
            for step in steps:
                if step.flag == key:
                    print(f"    {step.what:9} {step.detail}")
    return EXIT_OK


def cmd_simulate(args: argparse.Namespace) -> int:
    from compiler.simulate import simulate

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
    from compiler import check, report

    renderers = {
        "text": report.render_text,
        "json": report.render_json,
        "github": report.render_github,
        "markdown": report.render_markdown,
    }
    try:
        result = check.run(Path(args.definitions), args.against)
    except check.InvalidDefinitionsError as invalid:
        _report(invalid.snapshot.diagnostics, "text")
        raise _DefinitionsError from None
    sys.stdout.write(renderers[args.format](result))
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if args.format == "github" and summary:
        with Path(summary).open("a", encoding="utf-8") as stream:
            stream.write(report.render_markdown(result))
    warned = any(f.severity is Severity.WARNING and not f.accepted for f in result.findings)
    return EXIT_FINDINGS if result.blocking or (args.strict and warned) else EXIT_OK


def cmd_rules(args: argparse.Namespace) -> int:
    from compiler import rules

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
    from compiler.init import init

    written = init(Path(args.directory), args.action)
    for path in written:
        print(f"created {path}")
    print(f"next: cd {args.directory} && expc compile && git init && git add -A")
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from compiler.serve import make_server

    directory = Path(args.directory)
    if not directory.is_dir():
        raise api.UsageError(f"{directory}: no such directory; run 'expc compile' first")
    try:
        server = make_server(directory, args.host, args.port)
    except OSError as error:
        raise api.UsageError(
            f"cannot listen on {args.host}:{args.port}: {error.strerror}"
        ) from error
    host, port = str(server.server_address[0]), int(server.server_address[1])
    print(f"serving {directory} at http://{host}:{port}/bundle.json (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return EXIT_OK


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
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
    scaffold.add_argument("--action", help="the expc action to use (owner/repo@ref)")
    scaffold.set_defaults(run=cmd_init)

    serving = commands.add_parser("serve", help="serve generated/ over HTTP with ETags")
    serving.add_argument("directory", nargs="?", default="generated")
    serving.add_argument("--port", type=int, default=8000)
    serving.add_argument("--host", default="127.0.0.1", help="loopback by default")
    serving.set_defaults(run=cmd_serve)

    simulation = command("simulate", "evaluate synthetic users; compare shares with DESIGN §4")
    simulation.add_argument("-n", "--users", type=int, default=100_000, help="users (100,000)")
    simulation.set_defaults(run=cmd_simulate)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # One short-lived run that keeps alive everything it allocates: the cyclic garbage
    # collector would only rescan millions of live objects (a third of the run time).
    gc.disable()
    try:
        status: int = args.run(args)
    except api.UsageError as error:
        print(f"expc: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except _DefinitionsError:
        return EXIT_FINDINGS
    except KeyboardInterrupt:
        return EXIT_INTERNAL
    except Exception as error:  # the one place a bug becomes an exit code, not a traceback
        print(f"expc: internal error: {error!r}; please report it", file=sys.stderr)
        if os.environ.get("EXPC_DEBUG"):
            traceback.print_exc()
        return EXIT_INTERNAL
    return status


if __name__ == "__main__":
    sys.exit(main())
