"""The front door: one function per command. Each reads what it needs, returns data,
and never prints; `cli` only parses arguments, calls one of these, renders the result
and maps it to an exit code.

Problems with the call itself (a folder that holds no definitions, a bad revision, an
output that cannot be written) raise `UsageError` (exit 2); problems in the
definitions are diagnostics in what is returned (exit 1).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expc.diagnostics import Code, Diagnostic, promote_warnings
from expc.errors import TargetError, UsageError
from expc.outputs.layout import Layout, repository_root
from expc.pipeline.cache import ReleaseMemo
from expc.pipeline.link import GraphView
from expc.pipeline.snapshot import (
    Gathered,
    Rejected,
    Snapshot,
    gather,
    read_gathered,
    shown_path,
)
from expc.render import Report, counted, diagnostic_dict, diagnostic_from_dict

# The modules only some commands need are imported by those commands: `validate`
# runs in every pre-commit and starts faster without the compile stage and its outputs.
if TYPE_CHECKING:
    from expc.check.run import CheckResult
    from expc.pipeline.traffic import TrafficRow
    from expc.sdk.evaluate import Evaluator
    from expc.specs.run import Invalid, SpecRun
    from expc.tools.envs import EnvironmentTable
    from expc.tools.init import Written
    from expc.tools.promote import Promotion
    from expc.tools.simulate import Simulation

__all__ = ["TargetError", "UsageError"]


def load(definitions: Path, strict: bool = False) -> Snapshot | Rejected:
    """The definitions read, validated, linked and linted; under `strict` a warning
    rejects them too. Paths in diagnostics are relative to the working directory."""
    return _loaded(gather(definitions, shown_path(str(definitions))), strict)


def _loaded(gathered: Gathered, strict: bool) -> Snapshot | Rejected:
    result = read_gathered(gathered)
    if not strict or isinstance(result, Rejected):
        return result
    promoted = tuple(promote_warnings(result.diagnostics))
    if any(d.blocking for d in promoted):
        return Rejected(result.root, promoted, result.objects)
    return result


def _release_parts(gathered: Gathered) -> list[str | bytes]:
    """Everything read from the definitions folder, for the key of a memo."""
    parts: list[str | bytes] = [gathered.display_prefix]
    for relative, _display, raw in gathered.files:
        parts += [relative, raw]
    for relative, _loaded_nothing, problems in gathered.unreadable:
        parts += [relative, *(d.message for d in problems)]
    return parts


def _records(diagnostics: Sequence[Diagnostic]) -> list[dict[str, Any]]:
    return [diagnostic_dict(d) for d in diagnostics]


def _from_records(records: Sequence[dict[str, Any]]) -> tuple[Diagnostic, ...]:
    return tuple(diagnostic_from_dict(record) for record in records)


# --- validate -----------------------------------------------------------------------


@dataclass(frozen=True)
class Validation:
    definitions: Path
    report: Report
    objects: int


def validate(definitions: Path, strict: bool = False) -> Validation:
    gathered = gather(definitions, shown_path(str(definitions)))
    memo = ReleaseMemo.for_definitions(definitions, "validate")
    key = memo.key(*_release_parts(gathered), str(strict))
    stored = memo.get(key)
    if stored is not None:
        return Validation(
            definitions, counted(_from_records(stored["diagnostics"])), stored["objects"]
        )
    result = _loaded(gathered, strict)
    memo.put(key, {"diagnostics": _records(result.diagnostics), "objects": len(result.objects)})
    return Validation(definitions, counted(result.diagnostics), len(result.objects))


# --- compile ------------------------------------------------------------------------


@dataclass(frozen=True)
class Compilation:
    """What `expc compile` did: with `diagnostics` blocking, or `refused` (a target
    that cannot express the definitions), nothing was written."""

    out: Path
    diagnostics: tuple[Diagnostic, ...]
    flags: int = 0
    # written or removed; with --check: the stale files (to write or remove) instead
    written: tuple[str, ...] = ()
    refused: str | None = None

    @property
    def blocking(self) -> bool:
        return self.refused is not None or any(d.blocking for d in self.diagnostics)


def compile_release(
    definitions: Path,
    out: Path | None = None,
    *,
    check_only: bool = False,
    targets: Sequence[str] = (),
    source_commit: str | None = None,
    strict: bool = False,
) -> Compilation:
    """Write every output into `out` (default `generated/` beside the definitions), all
    or none; with `check_only`, write nothing and list the files that are stale. An
    unchanged release (same files, ledger, options and code) takes the last result
    from the memo instead of compiling again."""
    from expc.outputs.files import OutputError, changed_files, write_outputs

    out_dir = out if out is not None else Layout.beside(definitions).root
    layout = Layout(out_dir)
    gathered = gather(definitions, shown_path(str(definitions)))
    commit = resolve_source_commit(source_commit, definitions)
    within = definitions.resolve().relative_to(repository_root(definitions)).as_posix()
    try:
        history_bytes: bytes | None = layout.ledger.read_bytes()
    except OSError:
        history_bytes = None  # missing (or unreadable: reading it again below says so)
    memo = ReleaseMemo.for_definitions(definitions, "compile")
    key = memo.key(
        *_release_parts(gathered),
        str(strict),
        history_bytes,
        commit,
        within,
        "\0".join(sorted(targets)),
    )
    stored = memo.get(key)
    if stored is not None:
        diagnostics, flags = _from_records(stored["diagnostics"]), stored["flags"]
        files, refused = stored["files"], stored["refused"]
    else:
        diagnostics, flags, files, refused = _compiled(gathered, layout, strict, commit, targets)
        record = {"diagnostics": _records(diagnostics), "flags": flags}
        memo.put(key, {**record, "files": files, "refused": refused})
    if files is None or refused is not None:
        return Compilation(out_dir, diagnostics, refused=refused)
    retired = layout.retired(files)
    if check_only:
        stale = (*changed_files(out_dir, files), *retired)
        return Compilation(out_dir, diagnostics, flags, stale)
    try:
        written = tuple(write_outputs(out_dir, files, retired))
    except OutputError as error:
        raise UsageError(f"{error}; nothing written") from error
    return Compilation(out_dir, diagnostics, flags, written)


def _compiled(
    gathered: Gathered, layout: Layout, strict: bool, commit: str | None, targets: Sequence[str]
) -> tuple[tuple[Diagnostic, ...], int, dict[str, str] | None, str | None]:
    """(diagnostics, flags, the output files or None when something blocks, why a
    target refused)."""
    from expc.outputs.release import read_history, release_files

    result = _loaded(gathered, strict)
    history, problems = read_history(layout.ledger, shown_path(str(layout.ledger)))
    diagnostics = (*result.diagnostics, *problems)
    if isinstance(result, Rejected) or any(d.blocking for d in problems):
        return diagnostics, 0, None, None
    try:
        files = release_files(result, history, commit, targets)
    except TargetError as error:
        return diagnostics, result.flag_count, None, str(error)
    return diagnostics, result.flag_count, files, None


def resolve_source_commit(requested: str | None, definitions: Path) -> str | None:
    """`--source-commit`: a commit as given, or for `auto` git's HEAD (none outside git)."""
    if requested != "auto":
        return requested
    try:
        found = subprocess.run(
            ["git", "-C", str(definitions), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return found.stdout.strip() or None


# --- the safety check ---------------------------------------------------------------


def check(definitions: Path, against: str) -> CheckResult:
    """Compare with the previous release; raises `check.run.InvalidDefinitionsError`
    when the current definitions do not validate."""
    from expc.check.run import run

    return run(definitions, against)


def rules(code_or_name: str | None = None) -> list[Code]:
    """Every rule of the safety check, or the one named (by code or name, any case)."""
    from expc.check import rules as registry

    if code_or_name is None:
        return registry.all_rules()
    found = registry.documented(code_or_name)
    if found is None:
        raise UsageError(f"no rule '{code_or_name}'; `expc rules` lists them")
    return [found]


# --- looking at one release -----------------------------------------------------------


def environment_of(snapshot: Snapshot, requested: str | None) -> str | None:
    """The environment `--env` names: required when the definitions declare some (a
    command about one bundle must say which), refused when they declare none."""
    from expc.reading.load import did_you_mean

    names = snapshot.names
    if not names:
        if requested is not None:
            raise UsageError(
                f"--env {requested}: the definitions declare no environments; leave out --env"
            )
        return None
    listed = ", ".join(names)
    if requested is None:
        raise UsageError(
            f"the definitions declare environments ({listed}); choose one with --env NAME"
        )
    if requested not in names:
        raise UsageError(
            f"--env {requested}: no such environment (declared: {listed})"
            + did_you_mean(requested, list(names))
        )
    return requested


def graph(snapshot: Snapshot, environment: str | None = None) -> GraphView:
    """The graph in one environment: prerequisites and the cohorts targeting names may
    differ between environments."""
    return snapshot.environment(environment).catalog.view()


def traffic(snapshot: Snapshot, environment: str | None = None) -> list[TrafficRow]:
    """Every experiment's state and the share it enrols now, before targeting."""
    from expc.pipeline.traffic import traffic_rows

    return traffic_rows(snapshot.environment(environment).catalog)


def evaluator_for(
    snapshot: Snapshot | None, bundle_file: Path | None, environment: str | None = None
) -> Evaluator:
    """An evaluator of a bundle file, or of one environment's bundle compiled in memory."""
    from expc.outputs.release import bundle_of
    from expc.sdk.evaluate import BundleError, Evaluator

    if bundle_file is not None:
        try:
            evaluator = Evaluator.load(bundle_file)
        except BundleError as error:
            raise UsageError(f"{bundle_file}: {error}") from error
        if environment is not None and evaluator.environment != environment:
            found = evaluator.environment or "none"
            raise UsageError(
                f"--env {environment}: {bundle_file} is the bundle of environment {found}"
            )
        return evaluator
    assert snapshot is not None
    return Evaluator.from_compiled(bundle_of(snapshot, environment))


def parse_user(text: str) -> dict[str, Any]:
    """USER is a JSON object, or the path of a file holding one."""
    source = text
    if not text.lstrip().startswith(("{", "[", '"')):
        try:
            source = Path(text).read_text(encoding="utf-8")
        except OSError as error:
            raise UsageError(f"{text}: not a JSON object and not a readable file") from error
    try:
        user = json.loads(source)
    except ValueError as error:
        raise UsageError(f"USER is not valid JSON: {error}") from error
    if not isinstance(user, dict):
        raise UsageError('USER must be a JSON object of attributes, e.g. \'{"user_id": "u-1"}\'')
    return user


# A simulation is about 10 µs a user: ten million is minutes, and a larger count is a
# slip of the keyboard that would hold a CI runner for hours.
MAX_SIMULATED_USERS = 10_000_000


def _check_user_count(users: int) -> None:
    if not 1 <= users <= MAX_SIMULATED_USERS:
        raise UsageError(f"-n must be between 1 and {MAX_SIMULATED_USERS:,}")


def simulate(snapshot: Snapshot, users: int, environment: str | None = None) -> Simulation:
    """Evaluate `users` synthetic users in one environment; shares observed against
    expected."""
    from expc.outputs.release import bundle_of
    from expc.tools.simulate import simulate as run

    _check_user_count(users)
    catalog = snapshot.environment(environment).catalog
    return run(catalog, bundle_of(snapshot, environment), users)


# --- environments ---------------------------------------------------------------------


def environments_table(snapshot: Snapshot) -> EnvironmentTable:
    """Every experiment's state, traffic and share in each environment."""
    from expc.tools.envs import table

    return table(snapshot)


@dataclass(frozen=True)
class Promoted:
    """What `expc promote` did: with `refused` (why the result may not be written,
    `problem` saying it in words), nothing was written; with `dry_run`, nothing was
    either."""

    promotion: Promotion
    refused: tuple[Diagnostic, ...]
    written: bool
    problem: str = ""


def promote(
    definitions: Path, key: str, source: str, target: str, *, dry_run: bool = False
) -> Promoted | Rejected:
    """Copy `key`'s runtime fields from one environment to another in its file, once
    the result validates and passes the safety check; the definitions as read, when
    they do not validate to begin with."""
    from expc.outputs.files import write_atomic
    from expc.tools.promote import plan, problems

    gathered = gather(definitions, shown_path(str(definitions)))
    snapshot = _loaded(gathered, strict=False)
    if isinstance(snapshot, Rejected):
        return snapshot
    promotion = plan(snapshot, key, source, target)
    if not promotion.changes:
        return Promoted(promotion, (), False)
    problem, refused = problems(snapshot, gathered, promotion)
    if refused or dry_run:
        return Promoted(promotion, tuple(refused), False, problem if refused else "")
    try:
        write_atomic(promotion.path, promotion.after)
    except OSError as error:
        raise UsageError(f"{promotion.shown}: cannot be written ({error.strerror})") from error
    return Promoted(promotion, (), True)


# --- specs ---------------------------------------------------------------------------

SPECS_FOLDER = "specs"  # beside the definitions folder, unless project.yaml says otherwise
SIMULATED_USERS = 100_000


def specs_folder(definitions: Path, snapshot: Snapshot | Rejected) -> tuple[Path, bool]:
    """Where the specs are: project.yaml's `specs` (relative to the folder that holds
    the definitions folder), else `specs/` beside the definitions; and whether
    project.yaml names it."""
    project = snapshot.project if isinstance(snapshot, Snapshot) else None
    named = project.specs if project is not None else None
    return definitions.absolute().parent / (named or SPECS_FOLDER), named is not None


def run_specs(
    definitions: Path,
    specs: Sequence[Path] = (),
    *,
    environment: str | None = None,
    pattern: str | None = None,
    users: int = SIMULATED_USERS,
    strict: bool = False,
) -> SpecRun | Invalid | Rejected:
    """Run the specs (the files and folders given, else the project's specs folder)
    against bundles compiled in memory from the definitions: `Rejected` when the
    definitions do not validate, `Invalid` when a spec cannot run, else the outcome of
    every check. `environment` runs only the specs of that environment, `pattern` only
    the checks whose spec path or title holds it (any case); under `strict` a warning
    about the definitions rejects them.

    A specs folder that nobody named and that does not exist holds no specs (an empty
    run); a path that was named must exist."""
    import dataclasses

    from expc.specs import load as spec_files
    from expc.specs.run import SpecRun, run

    _check_user_count(users)
    snapshot = load(definitions, strict)
    if isinstance(snapshot, Rejected):
        return snapshot
    chosen = environment_of(snapshot, environment) if environment is not None else None
    given = list(specs)
    if not given:
        folder, named = specs_folder(definitions, snapshot)
        if not _present(folder, str(folder)) and not named:
            return SpecRun((), (), 0, searched=(shown_path(str(folder)),))
        given = [folder]
    searched = tuple(shown_path(str(path)) for path in given)
    for path, shown in zip(given, searched, strict=True):
        if not _present(path, shown):
            raise UsageError(f"{shown}: no such spec file or folder")
    files = spec_files.listed(given)
    if not files:
        if specs:
            raise UsageError(f"{', '.join(searched)}: no spec files (*.yaml) in it")
        return SpecRun((), (), 0, searched=searched)
    read, unreadable = spec_files.read(files)
    wanted = (pattern or "").lower()
    outcome = run(snapshot, read, chosen, lambda name: wanted in name.lower(), users, unreadable)
    if isinstance(outcome, SpecRun):
        if not outcome.outcomes and pattern:
            raise UsageError(f"-k {pattern}: selects no case, share or exclusive list")
        if not outcome.outcomes and environment is not None:
            raise UsageError(f"--env {environment}: no spec names this environment")
        outcome = dataclasses.replace(outcome, searched=searched)
    return outcome


def _present(path: Path, shown: str) -> bool:
    """Whether a spec path is there (a dangling link is: reading it says why)."""
    try:
        return path.exists() or path.is_symlink()
    except OSError as error:  # permission denied on the way to it
        raise UsageError(f"{shown}: cannot be read ({error.strerror})") from error


# --- setting up and shipping ----------------------------------------------------------


def init(directory: Path, action: str | None) -> Written:
    from expc.tools.init import init as scaffold

    return scaffold(directory, action)
