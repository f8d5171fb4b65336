"""The ``provgate`` command: parses options, calls the library, prints. No decisions here.

Exit codes: 0 pass, 1 gate failed (check) or ledger broken (verify), 2 usage or configuration
error, 3 could not run (ExifTool missing, ledger unreadable).
"""

from __future__ import annotations

import atexit
import gc
import json
import os
import shlex
import sys
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click

from provgate import __version__, actions, credentials, deliveries, gate, sequences, units
from provgate.gate import Gated
from provgate.assets import (fingerprint, line_break_names, missing,
                             read_path_list)
from provgate.errors import EXIT_CANNOT_RUN, EXIT_GATE_FAILED, EXIT_USAGE, ProvgateError
from provgate.ledger import Ledger
from provgate.ledger import for_policy as ledger_for
from provgate.notify import setup_logging
from provgate.output import (Printer, csv_writer, display_path, print_records, progress,
                             summary_line)
from provgate.record import Brief, Record, text_path
from provgate.session import Options, Session
from provgate.policy import DEFAULT_POLICY, Policy, check_approval_glob
from provgate.probe import ExifToolPool
from provgate.signals import Catalogue
from provgate.vocabulary import ACTIONS

# The command's objects all go with its process: frozen at exit, the interpreter's last
# collection does not walk them one by one (a fifth of a short rescan). Files and the ledger
# are closed explicitly before that; nothing relies on a finaliser running at exit.
atexit.register(gc.freeze)


class Failure(click.ClickException):
    """A ProvgateError shown as one line, with its exit code."""

    def __init__(self, err: ProvgateError) -> None:
        super().__init__(str(err))
        self.exit_code = err.exit_code


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ProvgateError as err:
            raise Failure(err) from err
    return wrapper


def policy_option(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--ledger", envvar="PROVGATE_LEDGER", metavar="PATH",
                     help="Ledger file (default: the policy's, or the user data directory).")(f)
    return click.option("--policy", "policy_path", envvar="PROVGATE_POLICY", metavar="FILE",
                        help="Policy file (default: the built-in streamer rule).")(f)


def gate_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed([
        click.option("--zone", help="Treat every input as this zone (final, temp, working...)."),
        click.option("--mode", type=click.Choice(["enforce", "warn", "audit"]),
                     help="enforce: quarantine blocked files; warn: record only; audit: dry run."),
        click.option("--quarantine", metavar="DIR", help="Quarantine folder."),
        click.option("--json", "fmt", flag_value="json", help="Records as a JSON array."),
        click.option("--ndjson", "fmt", flag_value="ndjson", help="One JSON record a line."),
        click.option("--csv", "fmt", flag_value="csv", help="Records as CSV."),
        click.option("--include", multiple=True, metavar="GLOB",
                     help="Only files whose path under the root matches (repeatable)."),
        click.option("--exclude", multiple=True, metavar="GLOB",
                     help="Skip files whose path under the root matches (repeatable)."),
        click.option("--rescan", is_flag=True, help="Read every file again, ignoring the cache."),
        click.option("--processes", type=click.IntRange(1, 64),
                     help="ExifTool processes (default: one per core)."),
        click.option("--timeout", type=click.FloatRange(min=1), default=30.0, show_default=True,
                     help="Seconds ExifTool may take for one batch before it is restarted."),
        click.option("--exiftool", envvar="PROVGATE_EXIFTOOL", metavar="PATH",
                     help="ExifTool executable."),
        click.option("-v", "--verbose", is_flag=True, help="Log every flag and escalation."),
        click.option("--frames", is_flag=True, help="One record per frame, not per sequence "
                     "(every frame is judged and recorded either way)."),
    ]):
        f = opt(f)
    return policy_option(f)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="provgate")
def main() -> None:
    """provgate: a provenance gate for AI-generated media in delivery pipelines."""


def _options(policy_path: str | None, **kw: Any) -> Options:
    return Options(policy=Policy.load(policy_path), **kw)


def _run(paths: Iterable[str], opts: Options, fmt: str | None,
         enrich: Callable[[Iterable[Record]], Iterable[Record]] = iter,
         extra: Callable[[Session], Iterable[Record]] = lambda _s: (),
         walked: set[str] | None = None, frames: bool = False) -> Gated:
    """Gate the paths (``gate.run``), printing each record as it comes."""
    paths = list(paths)
    show_progress = sys.stderr.isatty() and fmt is not None
    printer = Printer(fmt)
    with Session(opts) as session:
        if opts.record:  # a dry run moves nothing, not even a move a crash left pending
            session.recover()
        gated = gate.run(session, paths, printer.emit, frames=frames, walked=walked,
                         progress=progress(show_progress, paths), enrich=enrich, extra=extra)
    if show_progress:
        click.echo("\r\033[K", nl=False, err=True)
    printer.finish()
    return gated


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--dry-run", is_flag=True, help="Write nothing: no ledger, no cache, no moves.")
@gate_options
@guarded
def scan(paths: tuple[str, ...], dry_run: bool, policy_path: str | None, ledger: str | None,
         zone: str | None, mode: str | None, quarantine: str | None, fmt: str | None,
         include: tuple[str, ...], exclude: tuple[str, ...], rescan: bool,
         processes: int | None, timeout: float, exiftool: str | None, verbose: bool,
         frames: bool) -> None:
    """Judge every file under PATHS and record the decisions (read-only unless --mode enforce)."""
    setup_logging(verbose)
    opts = _options(policy_path, ledger=ledger, zone=zone, mode=mode, quarantine=quarantine,
                    rescan=rescan, processes=processes, timeout=timeout, exiftool=exiftool,
                    record=not dry_run, actor="cli", include=include, exclude=exclude)
    gone = missing(paths)
    for p in gone:
        click.echo(f"provgate: not found: {display_path(p)} (nothing recorded for it)", err=True)
    gated = _run([p for p in paths if p not in gone], opts, fmt, frames=frames) \
        if len(gone) < len(paths) else Gated()
    click.echo(summary_line(gated.files, gated.units), err=True)
    if gone:
        sys.exit(EXIT_USAGE)


@main.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--from", "from_file", type=click.File("rb"), metavar="FILE",
              help="Read paths from FILE, one a line ('-' for stdin).")
@click.option("--from0", "from0_file", type=click.File("rb"), metavar="FILE",
              help="Read NUL-separated paths from FILE (find -print0; '-' for stdin).")
@click.option("--timeline", "timelines", multiple=True, type=click.Path(dir_okay=False),
              metavar="CUT", help="Gate the media an editorial timeline uses (OTIO; EDL, FCP "
              "XML, AAF with their OTIO adapters). Zone defaults to final.")
@click.option("--media-root", "media_roots", multiple=True, metavar="DIR|OLD=NEW",
              help="Where the timeline's relative media lives, or a path prefix to remap.")
@click.option("--allow-empty", is_flag=True,
              help="Pass a delivery with no media files (by default it fails).")
@click.option("--delivery", "delivery_name", metavar="NAME",
              help="Name the delivery record (default: the delivery folder's name).")
@click.option("--register", "register_file", type=click.Path(dir_okay=False), metavar="FILE",
              help="The vendor's GenAI register (default: GENAI-DISCLOSURE.csv/.json at the "
                   "delivery folder).")
@click.option("--show", help="The show, recorded on the delivery (default: the policy's "
              "[delivery] show); approvals scoped to a show clear files only in its checks.")
@click.option("--episode", help="The episode, recorded on the delivery (default: the "
              "policy's [delivery] episode); scoped approvals likewise.")
@click.option("--json-report", is_flag=True, help="One JSON object on stdout: the records, "
              "the verdict, the exit code and the ledger's chain head once the gate has "
              "recorded (what hooks/pre-delivery --report writes).")
@gate_options
@guarded
def check(paths: tuple[str, ...], from_file: Any, from0_file: Any, timelines: tuple[str, ...],
          media_roots: tuple[str, ...], allow_empty: bool, delivery_name: str | None,
          register_file: str | None, show: str | None, episode: str | None,
          json_report: bool, policy_path: str | None,
          ledger: str | None,
          zone: str | None, mode: str | None, quarantine: str | None, fmt: str | None,
          include: tuple[str, ...], exclude: tuple[str, ...], rescan: bool,
          processes: int | None, timeout: float, exiftool: str | None, verbose: bool,
          frames: bool) -> None:
    """Pre-delivery gate: exit 0 if every file may go, 1 if any is held or blocked."""
    setup_logging(verbose)
    if json_report and fmt not in (None, "json"):
        raise click.UsageError(f"--json-report writes JSON: not with --{fmt}")
    listed = _listed(from_file, from0_file)
    if not paths and not listed and not timelines:
        raise click.UsageError("give PATHS, --from FILE or --timeline CUT")
    gone = missing([*paths, *listed])
    if gone:
        raise click.UsageError(
            f"not found: {', '.join(map(display_path, gone))} (a typo, an unmounted share, a "
            "delivery not made yet?); nothing was gated")
    clips = [c for t in timelines
             for c in _timeline().read(t, _timeline().MediaRoots.parse(media_roots, t))[1]]
    if timelines and not zone:
        zone = "final"  # what a cut uses ends up in the deliverable, wherever it sits on disk
    given = [*paths, *listed]
    opts = _options(policy_path, ledger=ledger, zone=zone, mode=mode or "warn",
                    quarantine=quarantine, rescan=rescan, processes=processes, timeout=timeout,
                    exiftool=exiftool, actor="hook", include=include, exclude=exclude,
                    confirm_content=True, **_declared(register_file, given))
    delivery_name = delivery_name or (deliveries.name_of(given) if given else None)
    # approvals scoped to this delivery, show or episode clear files in this check only
    opts.policy = opts.policy.scoped(delivery_name, show, episode)
    _warn_policy(opts.policy, zone)
    inputs = [*given, *_timeline().files(clips, covered=given)]
    walked: set[str] = set()
    if json_report:  # the records go in an object that the end of the check closes
        fmt = "json"
        click.echo('{"records": ', nl=False)
    if clips:
        gated = _run(inputs, opts, fmt, lambda recs: _timeline().attach(recs, clips),
                     lambda session: _timeline().problem_records(clips, session,
                                                              zone or "final"), walked,
                     frames=True)  # a cut uses files, clip by clip
    else:
        gated = _run(inputs, opts, fmt, walked=walked, frames=frames)
    outcome = gate.conclude(gated, given, walked, allow_empty)
    _print_outcome(gated, outcome, len(clips) if clips else None, policy_path, ledger)
    if given and delivery_name:
        files = {r.path for r in gated.files}
        _record_delivery(opts, delivery_name, given, gated.files, outcome.verdict, ledger,
                         [b for b in gated.shown if b.path not in files])
    head = _head(opts.policy, ledger)
    if json_report:  # closes the object _run's records opened
        click.echo(", " + json.dumps({"verdict": outcome.verdict, "exit_code": outcome.exit_code,
                                      "ledger_head": head})[1:])
    click.echo(f"{summary_line(gated.files, gated.units)}; gate {outcome.verdict}; "
               f"{_head_line(head)}", err=True)
    sys.exit(outcome.exit_code)


def _print_outcome(gated: Gated, outcome: gate.Outcome, clips: int | None,
                   policy_path: str | None, ledger: str | None) -> None:
    """Why a check fails, on stderr: what appeared during it, what holds, an empty delivery."""
    if outcome.appeared:
        shown = ", ".join(map(display_path, outcome.appeared[:3]))
        click.echo(f"provgate: the delivery changed during the check: {len(outcome.appeared)} "
                   f"file(s) appeared ({shown}{', ...' if len(outcome.appeared) > 3 else ''}); "
                   "check again once it is complete", err=True)
    _print_held(gated, outcome.held, clips, policy_path, ledger)
    if outcome.empty:
        click.echo("provgate: no media files in the delivery: nothing was judged, so nothing "
                   "may pass (use --allow-empty if an empty delivery is expected)", err=True)


def _warn_policy(policy: Policy, zone: str | None) -> None:
    """What in the policy makes a gate weaker than its user may think, on stderr."""
    if not policy.zones and not zone:
        click.echo(f"provgate: warning: {policy.source} defines no zones: every file is "
                   f"in zone {policy.default_zone!r} and nothing is gated as a final "
                   "deliverable (add [zones.final] or pass --zone final)", err=True)
    for warning in policy.warnings:
        click.echo(f"provgate: warning: {warning}", err=True)


def _print_held(gated: Gated, held: list[Brief], clips: int | None, policy_path: str | None,
                ledger: str | None) -> None:
    """Each held file or unit on stderr with what clears it (a package's held files one by
    one), the clips of a cut that use it, and a cut's count of failing clips."""
    for r in held:
        click.echo(f"HELD {r.action}: {display_path(r.path)}: {r.reason}", err=True)
        for b in gated.inside.get(r.path) or [r]:
            click.echo(f"     to clear{'' if b is r else ' ' + os.path.basename(b.path)}: "
                       f"{clear_command(b, policy_path, ledger)}", err=True)
        for c in r.clips or []:
            click.echo(f"     used by {c['track']} {c['name']!r}: source {c['source_in']}-"
                       f"{c['source_out']}, record {c['record_in']}-{c['record_out']}", err=True)
    if clips is not None:
        failing = len({(u["track"], u["name"], u["record_in"])
                       for r in held for u in r.clips or []})
        click.echo(f"provgate: timeline: {clips} clips with media, {failing} failing", err=True)


def _head(policy: Policy, ledger: str | None) -> dict[str, Any] | str | None:
    """Where the decisions chain stands once the gate has recorded what it decided (and its
    delivery), as `provgate ledger checkpoint` says it; why not, when it cannot be read."""
    try:
        with ledger_for(policy, ledger, readonly=True) as led:
            head = led.heads().get("decisions")
    except ProvgateError as err:  # the gate has decided: its exit code stands
        return f"not read ({err})"
    return {"chain": "decisions", "count": head["count"], "head": head["head"]} \
        if head else None


def _head_line(head: dict[str, Any] | str | None) -> str:
    if isinstance(head, str) or head is None:
        return f"ledger head: {head or 'none that verifies'}"
    return f"ledger head: decisions #{head['count']} {head['head'][:16]}"


def _record_delivery(opts: Options, name: str, given: list[str], records: list[Brief],
                     verdict: str, ledger: str | None, units: list[Brief]) -> None:
    """The delivery as a chained record; says what changed since its last check."""
    with ledger_for(opts.policy, ledger) as led:
        ident, changed = deliveries.record(
            led, text_path(name), [text_path(os.path.abspath(p)) for p in given], records,
            verdict,
            opts.policy.digest, opts.register.digest if opts.register else None, "hook",
            actions.current_user(), show=opts.policy.scope.show,
            episode=opts.policy.scope.episode, register=opts.register, units=units)
    click.echo(f"provgate: delivery {name!r} recorded as #{ident}"
               + (f"; {changed.line()}" if changed else ""), err=True)


@main.command("deliveries")
@click.option("--name", help="Only this delivery's records.")
@click.option("--json", "as_json", is_flag=True)
@policy_option
@guarded
def deliveries_cmd(name: str | None, as_json: bool, policy_path: str | None,
                   ledger: str | None) -> None:
    """The deliveries checked, oldest first: name, time, verdict, files, held."""
    with _open_ro(policy_path, ledger) as led:
        rows = led.deliveries(name)
    if as_json:
        click.echo(json.dumps([{**r, "roots": json.loads(r["roots"]),
                                "decisions": json.loads(r["decisions"])} for r in rows],
                              indent=2, ensure_ascii=False))
        return
    for r in rows:
        made = " ".join(v for v in (r["show"], r["episode"]) if v)
        click.echo(f"#{r['id']:<5} {r['time'][:19]} {r['verdict']:<7} {r['files']:>6} files "
                   f"{r['held']:>5} held  {r['name']}" + (f" [{made}]" if made else "")
                   + f"  ({r['user']})")


def _timeline() -> Any:
    """The timeline gate's module, imported by ``check --timeline`` only."""
    from provgate import timeline

    return timeline


def _declared(register_file: str | None, given: list[str]) -> dict[str, Any]:
    """The GenAI register: the one named, else the one at the delivery folder (the folder
    given, or the folder of the files given). A register that does not validate is exit 2:
    nothing is gated on a declaration provgate cannot read."""
    from provgate import register

    folders = list(dict.fromkeys(p if os.path.isdir(p) else os.path.dirname(p) or "."
                                 for p in given))
    if register_file:
        root = os.path.abspath(folders[0]) if len(folders) == 1 else \
            os.path.dirname(os.path.abspath(register_file))
        reg = register.load(register_file, root=root)
    else:
        found = [(f, r) for f in folders if (r := register.discover(f)) is not None]
        if not found:
            return {}
        root, reg = os.path.abspath(found[0][0]), found[0][1]
    for warning in reg.warnings:
        click.echo(f"provgate: register: {warning}", err=True)
    click.echo(f"provgate: GenAI register {display_path(str(reg.source))}: "
               f"{len(reg.entries)} declared use(s)", err=True)
    return {"register": reg, "register_root": root}


def _listed(from_file: Any, from0_file: Any) -> list[str]:
    """The paths of --from/--from0 lists; a one-a-line list is refused when a file beside a
    listed one has a line break in its name (the list cannot have named it truly)."""
    listed = read_path_list(from_file.read()) if from_file else []
    broken = line_break_names(listed)
    if broken:
        raise click.UsageError(
            f"{len(broken)} file(s) beside the listed ones have a line break in their name "
            f"({display_path(broken[0])}): a one-a-line list cannot name them; use --from0 "
            "with find -print0")
    return listed + (read_path_list(from0_file.read(), nul=True) if from0_file else [])


def clear_command(rec: Brief, policy_path: str | None, ledger: str | None) -> str:
    """What a producer runs to clear a held file, or what to fix when approval cannot."""
    if not rec.fingerprint:
        return ("fix the file and check again: it could not be judged "
                f"({rec.error or 'no content'}), so no approval can bind to it")
    extra = "".join(f" --{name} {shlex.quote(value)}" for name, value in
                    (("policy", policy_path), ("ledger", ledger)) if value)
    return (f"provgate approve {shlex.quote(rec.path)} --fingerprint {rec.fingerprint} "
            f"--ref STUDIO-REF --by NAME{extra} (written approval from the studio)")


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(file_okay=False))
@click.option("--zone", help="Treat every file as this zone.")
@click.option("--mode", type=click.Choice(["enforce", "warn", "audit"]),
              help="Default: the policy's mode.")
@click.option("--quarantine", metavar="DIR", help="Quarantine folder.")
@click.option("--settle", type=click.FloatRange(min=0), default=3.0, show_default=True,
              help="Seconds a file's size and mtime must stay unchanged before it is read.")
@click.option("--observer", type=click.Choice(["auto", "native", "polling"]), default="auto",
              show_default=True, help="auto: polling on network mounts, inotify elsewhere.")
@click.option("--poll-interval", type=click.FloatRange(min=0.1), default=5.0, show_default=True,
              help="Seconds between polls of a network mount (a 10,000-file poll costs ~70 ms).")
@click.option("--processes", type=click.IntRange(1, 64))
@click.option("--timeout", type=click.FloatRange(min=1), default=30.0, show_default=True)
@click.option("--exiftool", envvar="PROVGATE_EXIFTOOL", metavar="PATH")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text")
@policy_option
@guarded
def watch(paths: tuple[str, ...], zone: str | None, mode: str | None, quarantine: str | None,
          settle: float, observer: str, poll_interval: float, processes: int | None,
          timeout: float, exiftool: str | None, log_format: str, policy_path: str | None,
          ledger: str | None) -> None:
    """Watch delivery folders (or the policy's roots) and gate every file that settles."""
    from provgate.watch import Watcher

    setup_logging(True, log_format)
    opts = _options(policy_path, ledger=ledger, zone=zone, mode=mode, quarantine=quarantine,
                    processes=processes, timeout=timeout, exiftool=exiftool, actor="daemon")
    watcher = Watcher(opts, list(paths) or opts.policy.config.roots, settle=settle, observer=observer,
                      poll_interval=poll_interval, policy_path=policy_path)
    watcher.install_signals()
    watcher.run()


@main.command()
@policy_option
@guarded
def status(policy_path: str | None, ledger: str | None) -> None:
    """Show the watch daemon's heartbeat: running or not, pending files, decisions."""
    from provgate.watch import read_status

    doc = read_status(_options(policy_path, ledger=ledger))
    if doc is None:
        raise click.ClickException("no watch daemon has run on this ledger")
    age = datetime.now(timezone.utc).timestamp() - doc["time"]
    alive = doc["state"] == "running" and age < 60 and _pid_alive(doc["pid"])
    click.echo(f"watch:    {'running' if alive else 'not running'} (pid {doc['pid']}, "
               f"heartbeat {age:.0f} s ago)")
    click.echo(f"roots:    {', '.join(doc['roots'])}")
    click.echo(f"pending:  {doc['pending']}   decided: {doc['decided']}   "
               f"rescans: {doc['rescans']}")
    sys.exit(0 if alive else EXIT_GATE_FAILED)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(file_okay=False))
@click.option("--exiftool", envvar="PROVGATE_EXIFTOOL", metavar="PATH")
@policy_option
@guarded
def doctor(paths: tuple[str, ...], exiftool: str | None, policy_path: str | None,
           ledger: str | None) -> None:
    """Check ExifTool, c2pa-python, the catalogue, the policy, the ledger, and whether
    inotify can watch PATHS (default: the policy's roots)."""
    ok = True
    cat = Catalogue.load()
    try:
        with ExifToolPool(cat.tag_arguments(), processes=1, executable=exiftool) as pool:
            click.echo(f"exiftool:   {pool.executable} {pool.version}")
    except ProvgateError as err:
        click.echo(f"exiftool:   PROBLEM: {err}")
        ok = False
    avail, desc = credentials.availability()
    click.echo(f"c2pa:       {desc if avail else 'not_checked: ' + desc}")
    click.echo(f"catalogue:  {cat.version} ({len(cat.doc['markers'])} markers, "
               f"{len(cat.codes)} source types)")
    pol = Policy.load(policy_path)
    click.echo(f"policy:     {pol.source} (digest {pol.digest[:16]}, mode {pol.mode})")
    click.echo(f"ledger:     {pol.config.ledger_path(ledger)}")
    click.echo(f"quarantine: {pol.config.quarantine_path()}")
    from provgate.watch import inotify_check

    enough, message = inotify_check(list(paths) or pol.config.roots)
    click.echo(message.replace("inotify: ", "inotify:    ", 1))
    ok = ok and enough
    sys.exit(0 if ok else EXIT_CANNOT_RUN)


# -- policy ---------------------------------------------------------------------------------

@main.group()
def policy() -> None:
    """Write, show and validate policy files."""


@policy.command("init")
@click.argument("path", type=click.Path(dir_okay=False), default="provgate.toml")
@click.option("--force", is_flag=True, help="Replace an existing file.")
def policy_init(path: str, force: bool) -> None:
    """Write the default policy, with comments, to PATH."""
    if os.path.lexists(path) and not force:
        raise _usage_error(f"{path} exists: use --force to replace it")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise _usage_error(f"cannot write {path}: the folder {folder} does not exist")
    Path(path).write_text(DEFAULT_POLICY.read_text(encoding="utf-8"), encoding="utf-8")
    click.echo(f"wrote {path}")


def _usage_error(message: str) -> click.ClickException:
    """A refusal that is the caller's to fix (exit 2, as a usage error), shown as one line
    without the usage text: an existing file, an unknown id."""
    err = click.ClickException(message)
    err.exit_code = EXIT_USAGE
    return err


@policy.command("show")
@click.option("--policy", "policy_path", envvar="PROVGATE_POLICY", metavar="FILE")
@guarded
def policy_show(policy_path: str | None) -> None:
    """Print the effective policy and its digest."""
    pol = Policy.load(policy_path)
    click.echo(json.dumps({"source": pol.source, "digest": pol.digest, "policy": pol.doc},
                          indent=2))


@policy.command("validate")
@click.argument("file", type=click.Path(dir_okay=False))
@guarded
def policy_validate(file: str) -> None:
    """Check one policy file; exit 2 with the line or key at fault."""
    pol = Policy.load(file)
    pol.config.trust_bundle()
    click.echo(f"{file}: valid (digest {pol.digest[:16]})")


# -- the GenAI register ---------------------------------------------------------------------

@main.group("register")
def register_group() -> None:
    """The vendor's GenAI register (GENAI-DISCLOSURE.csv): write a template, validate one."""


@register_group.command("template")
@click.argument("path", type=click.Path(dir_okay=False), default="GENAI-DISCLOSURE.csv")
@guarded
def register_template(path: str) -> None:
    """Write a commented blank register to PATH, each field explained."""
    from provgate import register

    if os.path.exists(path):
        raise _usage_error(f"{path} exists: move it away first")
    Path(path).write_text(register.template(), encoding="utf-8")
    click.echo(f"wrote {path}")


@register_group.command("validate")
@click.argument("path", type=click.Path(dir_okay=False, exists=True))
@guarded
def register_validate(path: str) -> None:
    """Check a register; exit 2 naming each line and field at fault."""
    from provgate import register

    reg = register.load(path)
    click.echo(f"{path}: valid, {len(reg.entries)} declared use(s)")


# -- approvals ------------------------------------------------------------------------------

@main.command()
@click.argument("target", required=False)
@click.option("--entry", "entry_id", metavar="ID", help="Approve what a GenAI register entry "
              "declares: its files, its category, its approval_ref as the reference.")
@click.option("--register", "register_file", type=click.Path(dir_okay=False), metavar="FILE",
              help="With --entry: the register to read, at the top of its delivery folder "
                   "(one kept elsewhere: use --delivery).")
@click.option("--delivery", "delivery_name", metavar="NAME",
              help="Clear files only in checks of this delivery; with --entry and no "
                   "--register, the register its latest check read.")
@click.option("--show", help="Clear files only in checks of this show.")
@click.option("--episode", help="Clear files only in checks of this episode.")
@click.option("--category", help="The guidance's category of the use (data_use, "
              "creative_output, talent_performance, ethics_representation, other).")
@click.option("--ref", help="The studio's written-approval reference (with --entry, "
              "needed only when the entry has no approval_ref).")
@click.option("--by", "approver", required=True, help="Who approved.")
@click.option("--fingerprint", "expected", metavar="SHA256", help="Refuse unless the file "
              "still has this content (a report's commands carry the decided content's).")
@click.option("--expires", help="Expiry: a date (covers that whole day, to 23:59:59.999999 "
              "UTC) or an ISO 8601 time (UTC if no zone); must be in the future.")
@click.option("--note", help="Free text.")
@click.option("--max-files", type=click.IntRange(min=1), default=50, show_default=True,
              help="Refuse a glob that matches more files than this now, unless --yes.")
@click.option("--yes", is_flag=True, help="Approve a glob matching more than --max-files.")
@policy_option
@guarded
def approve(target: str | None, entry_id: str | None, register_file: str | None,
            delivery_name: str | None, show: str | None, episode: str | None,
            category: str | None, ref: str | None, approver: str, expected: str | None,
            expires: str | None, note: str | None, max_files: int, yes: bool,
            policy_path: str | None, ledger: str | None) -> None:
    """Approve TARGET: a file (bound to its fingerprint) or an absolute path glob inside the
    policy's roots (a relative one is resolved against the working folder); or, with --entry
    ID, the files a GenAI register entry declares (a glob inside the delivery folder, and
    inside the policy's roots when it has some). --delivery, --show and --episode scope the
    approval: it then clears files only in checks of that delivery, show or episode."""
    pol = Policy.load(policy_path)
    fields: dict[str, Any] = {
        "approver": approver, "expires": _parse_expiry(expires), "note": note,
        "category": _category(category), "show": show, "episode": episode,
        "delivery": delivery_name}
    if entry_id:
        if target:
            raise click.UsageError("give TARGET or --entry ID, not both")
        fields.update(_entry_fields(pol, ledger, entry_id, register_file, fields, ref))
        given = f" (register entry {entry_id})"
    elif target is None:
        raise click.UsageError("give TARGET (a file or a glob), or --entry ID")
    elif ref is None:
        raise click.UsageError("--ref is needed: the studio's written-approval reference")
    else:
        fields.update(_target_fields(pol, target, expected), ref=ref)
        given = ""
    what = fields.get("path") or fields["glob"]
    count, complete = (1, True) if fields.get("path") else _count_glob(fields["glob"])
    many = f"{'at least ' if not complete else ''}{count} file{'s' * (count != 1)}"
    # a sequence is bound to its frames' content: its size is not a reach to confirm
    if fields.get("glob") and not fields.get("sequence") and \
            (count > max_files or not complete) and not yes:
        raise _usage_error(f"approval glob {fields['glob']} matches {many} now, more than "
                           f"--max-files {max_files}: narrow the glob, or confirm with "
                           "--yes (or raise --max-files)")
    with ledger_for(pol, ledger) as led:
        ident = led.add_approval(**fields)
    if target and target != what:
        given = f" (given as {target})"
    extra = "".join(f", {k} {fields[k]}" for k in ("category",) if fields[k])
    scope = ", ".join(f"{k} {fields[k]}" for k in ("show", "episode", "delivery") if fields[k])
    click.echo(f"approval #{ident}: {what}{given} ({fields['ref']}, by {approver}"
               f"{', expires ' + fields['expires'] if fields['expires'] else ''}{extra}); "
               f"matches {many} now" + (f"; only in checks of {scope}" if scope else ""))


def _sequence_fields(pattern: str, expected: str | None) -> dict[str, Any]:
    """An image sequence (``folder/name.####.exr`` or ``name.%04d.exr``), bound to its frames
    as they are now (``expected``: the digest the producer reviewed, refused if the frames
    are no longer those): each frame is cleared only with its approved content, and the
    sequence only while its digest is this one (``units.py``)."""
    from wcmatch.glob import escape

    seq = units.sequence_at(pattern)
    if seq is None:
        raise click.UsageError(f"{pattern} names no image sequence: no frames are there")
    try:
        frames = [(n, fingerprint(seq.path(n))) for n in seq.frames]
    except OSError as exc:
        raise Failure(ProvgateError(f"cannot read a frame of {pattern}: "
                                    f"{exc.strerror or exc}")) from exc
    digest = sequences.digest(frames)
    if expected and expected != digest:
        raise _usage_error(f"{pattern} is not the sequence that was decided ({expected}); its "
                           f"frames are {digest} now: check it again before approving it")
    glob = escape(seq.directory + seq.prefix) + "[0-9]" * seq.padding + escape(seq.suffix)
    return {"glob": glob, "sequence": digest, "path": None,
            "frames": "".join(f"{n} {fp}\n" for n, fp in frames)}


def _category(category: str | None) -> str | None:
    from provgate.register import CATEGORIES

    if category is not None and category not in CATEGORIES:
        raise click.BadParameter(f"{category!r} is not one of {', '.join(CATEGORIES)}",
                                 param_hint="--category")
    return category


def _target_fields(pol: Policy, target: str, expected: str | None) -> dict[str, Any]:
    """A file (its fingerprint, checked against ``expected``) or a glob inside the roots."""
    resolved = os.path.abspath(os.path.expanduser(target))
    if os.path.isfile(resolved):
        try:
            found = fingerprint(resolved)
        except OSError as exc:
            raise Failure(ProvgateError(f"cannot read {resolved}: {exc.strerror or exc}")) \
                from exc
        if expected and found != expected:
            raise _usage_error(f"{resolved} is not the content that was decided ({expected}); "
                               f"it is {found} now: check it again before approving it")
        return {"fingerprint": found, "path": resolved}
    if "#" in os.path.basename(target) or "%0" in os.path.basename(target):
        return _sequence_fields(resolved, expected)
    if expected:
        raise click.UsageError(f"--fingerprint binds a file or a sequence: {target} is "
                               "neither")
    if any(c in target for c in "*?[{"):
        return {"glob": check_approval_glob(target, pol.config.roots)}
    if os.path.isdir(resolved):
        raise click.UsageError(f"{resolved} is a folder: approve its files one by one, or with "
                               f"a glob inside the policy's roots, e.g. '{resolved}/**'")
    raise click.UsageError(f"{target} is neither a file nor a glob"
                           + (f" ({resolved} does not exist)" if resolved != target else ""))


def _entry_fields(pol: Policy, ledger: str | None, entry_id: str, register_file: str | None,
                  given: dict[str, Any], ref: str | None) -> dict[str, Any]:
    """An approval made from a register entry: the entry's files as a glob inside the
    delivery folder (and the roots, when the policy has some), its category, and its
    approval reference (or --ref when it has none; a different --ref is refused)."""
    from provgate import register

    if register_file:
        reg = register.load(register_file)
    elif given["delivery"]:
        with ledger_for(pol, ledger, readonly=True) as led:
            found = deliveries.latest(led, given["delivery"])
        if found is None:
            raise _usage_error(f"no delivery named {given['delivery']!r} in the ledger (see "
                               "`provgate deliveries`)")
        reg = deliveries.register_of(found)
    else:
        raise click.UsageError("--entry needs the register: --register FILE, or --delivery "
                               "NAME for the one its latest check read")
    entry = reg.entry(entry_id)
    if ref and entry.approval_ref and ref != entry.approval_ref:
        raise click.UsageError(f"entry {entry_id} names approval {entry.approval_ref}, not "
                               f"{ref}: leave --ref out, or correct the register")
    if not (ref or entry.approval_ref):
        raise click.UsageError(f"entry {entry_id} has no approval_ref: give the studio's "
                               "written-approval reference with --ref")
    if given["category"] and given["category"] != entry.category:
        raise click.UsageError(f"entry {entry_id} is {entry.category}, not "
                               f"{given['category']}: leave --category out")
    assert reg.root is not None  # a loaded register always has its delivery folder
    glob = check_approval_glob(register.approval_glob(entry, reg.root),
                               pol.config.roots or [reg.root])
    return {"glob": glob, "ref": ref or entry.approval_ref, "category": entry.category,
            "entry": entry.id, "note": given["note"] or f"GenAI register: {entry.label}"}


def _count_glob(pattern: str, limit: int = 100_000) -> tuple[int, bool]:
    """How many files an approval glob matches now, walking only below its fixed part
    (never the whole disk) and at most ``limit`` entries: (count, whether the walk ended)."""
    from provgate.assets import matches
    from provgate.policy import _fixed_parts

    top = os.path.join(*_fixed_parts(pattern))
    if os.path.isfile(top):
        return int(matches(top, [pattern], case_sensitive=True)), True
    count = seen = 0
    for folder, dirs, files in os.walk(top):  # symlinked folders are not followed
        for name in files:
            count += matches(os.path.join(folder, name), [pattern], case_sensitive=True)
        seen += len(files) + len(dirs)
        if seen >= limit:
            return count, False
    return count, True


_TIME_FORMAT = "ISO 8601: a date (2026-12-31) or a time (2026-12-31T18:00, 2026-12-31T18:00+01:00)"


def _parse_time(text: str, param: str, end_of_day: bool = False) -> datetime:
    """A date or time from the command line, in UTC (a time without a zone is UTC). A bare
    date is the start of that day, or its last microsecond with ``end_of_day``. Anything
    else is a usage error naming the format: a filter is never silently empty."""
    from datetime import date, time

    try:
        try:
            day = date.fromisoformat(text.strip())
        except ValueError:
            when = datetime.fromisoformat(text.strip())
        else:
            when = datetime.combine(day, time.max if end_of_day else time.min)
    except ValueError as exc:
        raise click.BadParameter(f"{text!r} is not a date or time: use {_TIME_FORMAT}",
                                 param_hint=param) from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc)


def _parse_since(text: str | None) -> str | None:
    """``--since`` as the ledger stores times (UTC ISO 8601 with microseconds), so the
    comparison is by time, whatever zone or precision was typed."""
    if text is None:
        return None
    return _parse_time(text, "--since").isoformat(timespec="microseconds")


def _parse_expiry(text: str | None) -> str | None:
    """``--expires``: a date covers that whole day (stored as 23:59:59.999999 UTC); an expiry
    already past is refused."""
    if text is None:
        return None
    when = _parse_time(text, "--expires", end_of_day=True)
    if when <= datetime.now(timezone.utc):
        raise click.BadParameter(f"{text!r} is already past ({when.isoformat()}): an approval "
                                 "must expire in the future", param_hint="--expires")
    return when.isoformat(timespec="microseconds")


@main.command()
@click.option("--json", "as_json", is_flag=True)
@policy_option
@guarded
def approvals(as_json: bool, policy_path: str | None, ledger: str | None) -> None:
    """List approvals, active or not."""
    with ledger_for(Policy.load(policy_path), ledger) as led:
        rows = led.approvals()
    now = datetime.now(timezone.utc)
    if as_json:
        click.echo(json.dumps([{**a.__dict__, "active": a.active(now)} for a in rows], indent=2))
        return
    for a in rows:
        state = "active" if a.active(now) else ("revoked" if a.revoked else "expired")
        click.echo(f"#{a.id:<4} {state:<8} {a.ref:<16} {a.approver:<16} "
                   f"{a.path or a.glob}  expires {a.expires or 'never'}")


@main.command()
@click.argument("ident", type=int)
@policy_option
@guarded
def revoke(ident: int, policy_path: str | None, ledger: str | None) -> None:
    """Revoke approval ID."""
    with ledger_for(Policy.load(policy_path), ledger) as led:
        known = {a.id: a for a in led.approvals()}
        if ident not in known:
            raise _usage_error(f"no approval #{ident} (see `provgate approvals`)")
        if known[ident].revoked or not led.revoke_approval(ident, actions.current_user()):
            raise _usage_error(f"approval #{ident} is already revoked")
    click.echo(f"approval #{ident} revoked")


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--source-type", required=True,
              type=click.Choice(["trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia",
                                 "compositeSynthetic", "algorithmicMedia",
                                 "algorithmicallyEnhanced"]),
              help="IPTC digital source type to write.")
@click.option("--tool", help="The AI system used (IPTC 2025.1 AI System Used).")
@click.option("--force", is_flag=True, help="Tag even in a final zone.")
@click.option("--zone", help="Treat the files as this zone.")
@policy_option
@guarded
def tag(files: tuple[str, ...], source_type: str, tool: str | None, force: bool,
        zone: str | None, policy_path: str | None, ledger: str | None) -> None:
    """Label working media made with AI, in the file, so its provenance travels with it.

    Formats ExifTool cannot write (WAV, MXF, DPX, EXR...) are labelled in their XMP sidecar
    (NAME.EXT.xmp), which scans read as the file's metadata. A file in a final zone is
    refused (without --force), a file that cannot be written is reported, and the rest of the
    batch is tagged either way; the exit code is then 3 if a file could not be written, else
    2 if one was refused or missing."""
    import subprocess

    from provgate.assets import stat_asset

    opts = _options(policy_path, ledger=ledger, zone=zone, actor="cli")
    refused: list[str] = []
    failed: list[str] = []
    tagged = 0
    with Session(opts) as session:
        for f in files:
            shown = display_path(f)
            path = os.path.abspath(f)
            try:
                os.stat(path)
            except FileNotFoundError:
                click.echo(f"provgate: not tagged: {shown}: no such file", err=True)
                refused.append(shown)
                continue
            except OSError as exc:
                click.echo(f"provgate: cannot tag {shown}: {_os_reason(exc)}", err=True)
                failed.append(shown)
                continue
            asset = stat_asset(path, os.path.dirname(path))
            # its own zone counts even under --zone: --zone cannot smuggle a deliverable out
            zones = {opts.policy.zone_of(asset), opts.policy.zone_of(asset, zone)}
            if "final" in zones and not force:
                what = "adds a sidecar to" if actions.sidecar_only(path) else \
                    "changes the bytes of"
                click.echo(f"provgate: refused: {shown} is in the final zone: tagging {what} "
                           "a deliverable; use --force if you mean it", err=True)
                refused.append(shown)
                continue
            try:
                done = actions.tag_file(asset.path, source_type, tool)
            except (OSError, ProvgateError, subprocess.SubprocessError) as exc:
                why = _os_reason(exc) if isinstance(exc, OSError) else exc
                click.echo(f"provgate: cannot tag {shown}: {why}", err=True)
                failed.append(shown)
                continue
            rec = session.process([stat_asset(asset.path, asset.root)])[0]
            tagged += 1
            where = "" if done.sidecar is None else \
                f" in its sidecar {display_path(done.sidecar)} ({done.why})"
            click.echo(f"tagged {shown}: {source_type}{where}; now {rec.kind} "
                       f"(decision #{rec.id})")
    if refused or failed:
        click.echo(f"provgate: tagged {tagged} of {len(files)} files; {len(refused)} refused "
                   f"or missing, {len(failed)} could not be written", err=True)
        for label, names in (("not written", failed), ("refused or missing", refused)):
            if names:
                click.echo(f"provgate: {label}: {', '.join(names)}", err=True)
        sys.exit(EXIT_CANNOT_RUN if failed else EXIT_USAGE)


def _os_reason(exc: OSError) -> str:
    """An OSError as a short reason that names the path it concerns."""
    if not exc.strerror:
        return str(exc)
    return f"{exc.strerror}: {display_path(exc.filename)}" if exc.filename else exc.strerror


# -- quarantine -----------------------------------------------------------------------------

@main.group()
def quarantine() -> None:
    """List and restore quarantined files."""


@quarantine.command("list")
@click.option("--json", "as_json", is_flag=True)
@policy_option
@guarded
def quarantine_list(as_json: bool, policy_path: str | None, ledger: str | None) -> None:
    with ledger_for(Policy.load(policy_path), ledger) as led:
        rows = [{**m, "sidecars": actions.move_sidecars(m)} for m in led.moves()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for m in rows:
        sides = f" (+ {', '.join(os.path.basename(e['original_path']) for e in m['sidecars'])})" \
            if m["sidecars"] else ""
        click.echo(f"#{m['id']:<4} {m['state']:<9} {m['original_path']} -> "
                   f"{m['quarantined_path']}{sides}" + (f"  ({m['error']})" if m["error"] else ""))


@quarantine.command("restore")
@click.argument("ident", type=int)
@policy_option
@guarded
def quarantine_restore(ident: int, policy_path: str | None, ledger: str | None) -> None:
    """Move quarantined file ID back to where it was."""
    with ledger_for(Policy.load(policy_path), ledger) as led:
        move = led.move(ident)
        if move is None:
            raise _usage_error(f"no quarantined file #{ident} (see `provgate quarantine list`)")
        if move["state"] != "done":
            raise _usage_error(f"quarantine #{ident} is {move['state']}, not a file held in the "
                               "quarantine: nothing to restore (see `provgate quarantine list`)")
        sidecars = actions.restore(move)  # something at an original path: refused, exit 1
        led.update_move(ident, state="restored")
    click.echo(f"restored {move['original_path']}")
    for side in sidecars:
        click.echo(f"restored {side} (its sidecar)")


# -- ledger ---------------------------------------------------------------------------------

@main.group()
def ledger() -> None:
    """Read, export and verify the decision ledger."""


def _open_ro(policy_path: str | None, ledger_path: str | None) -> Ledger:
    return ledger_for(Policy.load(policy_path), ledger_path, readonly=True)


@ledger.command("list")
@click.option("--action", type=click.Choice(ACTIONS))
@click.option("--kind")
@click.option("--since", help="ISO date or time.")
@click.option("--path", "path_glob", help="Path prefix or glob.")
@click.option("--json", "as_json", is_flag=True)
@policy_option
@guarded
def ledger_list(action: str | None, kind: str | None, since: str | None,
                path_glob: str | None, as_json: bool, policy_path: str | None,
                ledger: str | None) -> None:
    since = _parse_since(since)
    with _open_ro(policy_path, ledger) as led:
        rows = list(led.decisions(action, kind, since, path_glob, mark=True))
        problem = led.seal_problem()
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    for r in rows:
        later = f" (superseded by #{r['superseded_by']})" if r.get("superseded_by") else ""
        click.echo(f"#{r['id']:<6} {r['time'][:19]} {r['action']:<8} {r['kind']:<13} "
                   f"{r['zone']:<8} {display_path(r['path'])}{later}{_unverified(r)}")
    _cannot_verify(problem)


def _unverified(row: dict[str, Any]) -> str:
    return "  [DOES NOT VERIFY: run provgate ledger verify]" if row["verified"] is False else ""


def _cannot_verify(problem: str | None) -> None:
    if problem:
        click.echo(f"provgate: these rows are not verified: {problem}", err=True)


@ledger.command("events")
@click.option("--since", help="ISO date or time.")
@click.option("--path", "path_glob", help="Path prefix or glob.")
@click.option("--json", "as_json", is_flag=True)
@policy_option
@guarded
def ledger_events(since: str | None, path_glob: str | None, as_json: bool,
                  policy_path: str | None, ledger: str | None) -> None:
    """Files that left a watched tree (removed) or moved within it, as the daemon saw them."""
    since = _parse_since(since)
    with _open_ro(policy_path, ledger) as led:
        rows = list(led.events(since, path_glob, mark=True))
        problem = led.seal_problem()
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    for e in rows:
        dest = f" -> {display_path(e['dest'])}" if e["dest"] else ""
        click.echo(f"@{e['id']:<6} {e['time'][:19]} {e['event']:<8} "
                   f"{display_path(e['path'])}{dest}  (decision #{e['decision_id']})"
                   f"{_unverified(e)}")
    _cannot_verify(problem)


@ledger.command("show")
@click.argument("ident", type=int)
@policy_option
@guarded
def ledger_show(ident: int, policy_path: str | None, ledger: str | None) -> None:
    with _open_ro(policy_path, ledger) as led:
        row = led.decision(ident)
    if row is None:
        raise _usage_error(f"no decision #{ident} (see `provgate ledger list`)")
    click.echo(json.dumps(row, indent=2, ensure_ascii=False))


@ledger.command("export")
@click.option("--json", "fmt", flag_value="json", default=True)
@click.option("--csv", "fmt", flag_value="csv")
@click.option("--since")
@policy_option
@guarded
def ledger_export(fmt: str, since: str | None, policy_path: str | None,
                  ledger: str | None) -> None:
    """Every decision, as records valid against schemas/decision.schema.json."""
    from provgate import report as report_mod

    since = _parse_since(since)
    with _open_ro(policy_path, ledger) as led:
        approvals = {a.id: a for a in led.approvals()}
        rows = [report_mod.record(r, approvals) for r in led.decisions(since=since)]
    print_records(rows, fmt)


@ledger.command("verify")
@click.option("--checkpoint", "checkpoint_file", metavar="FILE",
              type=click.Path(exists=True, dir_okay=False),
              help="Also fail when a row this checkpoint (`provgate ledger checkpoint`) "
                   "covers is missing or changed: truncation, rollback, a rewritten chain.")
@policy_option
@guarded
def ledger_verify(checkpoint_file: str | None, policy_path: str | None,
                  ledger: str | None) -> None:
    """Check every chain (links, hashes, seals) and its row count against its sealed head,
    and approvals and moves against their update log; exit 1 naming the first problem."""
    doc = None
    if checkpoint_file:
        try:
            doc = json.loads(Path(checkpoint_file).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise _usage_error(f"cannot read the checkpoint {checkpoint_file}: {exc}") from exc
    with _open_ro(policy_path, ledger) as led:
        count, bad, message = led.verify()
        late = led.check_checkpoint(doc) if doc is not None else None
    if bad is not None:
        click.echo(f"ledger BROKEN: {message}", err=True)
        sys.exit(EXIT_GATE_FAILED)
    if late:
        click.echo(f"ledger BROKEN against the checkpoint {checkpoint_file}: {late}", err=True)
        sys.exit(EXIT_GATE_FAILED)
    click.echo(f"ledger ok: {message}"
               + (f"; every row of the checkpoint of {doc['time']} is here, unchanged"
                  if doc is not None else ""))


@ledger.command("checkpoint")
@policy_option
@guarded
def ledger_checkpoint(policy_path: str | None, ledger: str | None) -> None:
    """Print the head and row count of every chain as JSON signed with the seal key. Keep it
    elsewhere (another host, a ticket); `ledger verify --checkpoint FILE` then finds a row
    that existed then and is missing or changed now. Exit 1 if the ledger does not verify."""
    from provgate.errors import LedgerError

    with _open_ro(policy_path, ledger) as led:
        count, bad, message = led.verify()
        if bad is not None:
            click.echo(f"ledger BROKEN: {message} (no checkpoint made)", err=True)
            sys.exit(EXIT_GATE_FAILED)
        try:
            doc = led.checkpoint()
        except LedgerError as exc:
            click.echo(f"ledger BROKEN: {exc}", err=True)
            sys.exit(EXIT_GATE_FAILED)
    click.echo(json.dumps(doc, indent=2))


@main.command()
@click.option("--delivery", "delivery_name", metavar="NAME",
              help="This delivery's report (default: the latest delivery checked).")
@click.option("--all", "everything", is_flag=True,
              help="Every file's latest decision in the whole ledger, not one delivery's.")
@click.option("--since", help="Ledger-wide: decisions from this ISO date or time on.")
@click.option("--path", "path_glob", help="Ledger-wide: a path prefix or glob.")
@click.option("--zone", help="Only this zone (ledger-wide, or within --delivery).")
@click.option("--html", "fmt", flag_value="html", default=True, help="A self-contained page "
              "(the default).")
@click.option("--json", "fmt", flag_value="json", help="JSON (schemas/report.schema.json).")
@click.option("--csv", "fmt", flag_value="csv", help="CSV: a delivery's has a section column.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), metavar="FILE",
              help="Write to FILE (default: standard output).")
@click.option("--thumbnails", type=click.IntRange(min=0), default=200, show_default=True,
              help="At most this many image thumbnails (needs Pillow).")
@policy_option
@guarded
def report(delivery_name: str | None, everything: bool, since: str | None,
           path_glob: str | None, zone: str | None, fmt: str, output: str | None,
           thumbnails: int, policy_path: str | None, ledger: str | None) -> None:
    """The disclosure report. By default the latest delivery's (`provgate check` records
    deliveries), for the producer who signs it: a banner with the verdict and counts, what
    needs written approval with the `provgate approve` command to run, approved AI uses,
    disclosed uses, undisclosed AI, blocked and quarantined files, integrity problems, and
    every file's evidence. With --all, --since, --path or --zone (without --delivery): every
    file's latest decision in the ledger. With no delivery checked yet, the ledger-wide
    report, saying so."""
    from provgate import report as report_mod

    since = _parse_since(since)
    if delivery_name and (everything or since or path_glob):
        raise click.UsageError("--delivery reports the files of one delivery: --all, --since "
                               "and --path select from the whole ledger instead")
    wide = everything or bool(since or path_glob or (zone and not delivery_name))
    pol = Policy.load(policy_path)
    with ledger_for(pol, ledger, readonly=True) as led:
        delivery, note = _report_delivery(led, delivery_name, wide)
        doc = report_mod.build(led, since, path_glob, zone, thumbnails, delivery,
                               _approve_options(policy_path, ledger), note, policy=pol)
    _write_report(report_mod, doc, fmt, output)
    chain, shown = doc["report"]["chain"], doc["report"]["delivery"]
    if note:
        click.echo(f"provgate: {note}", err=True)
    click.echo(f"provgate: report of {doc['totals']['files']} files"
               + (f" (delivery {shown['name']!r} #{shown['id']}, {shown['verdict']})"
                  if shown else "")
               + (f" written to {output}" if output else "")
               + ("" if chain["intact"] else f"; LEDGER CHAIN BROKEN: {chain['message']}"),
               err=True)
    if not chain["intact"]:
        sys.exit(EXIT_GATE_FAILED)


def _report_delivery(led: Ledger, name: str | None, wide: bool
                     ) -> tuple[dict[str, Any] | None, str | None]:
    """The delivery a report is about (the named one, else the latest), or None with a
    note when the report is ledger-wide because no delivery was checked yet."""
    if wide:
        return None, None
    found = deliveries.latest(led, name)
    if found is None and name:
        raise _usage_error(f"no delivery named {name!r} in the ledger (see `provgate "
                           "deliveries`)")
    if found is None:
        return None, ("no delivery has been checked into this ledger yet (`provgate check "
                      "PATH` records one): this is every file's latest decision")
    return found, None


def _approve_options(policy_path: str | None, ledger: str | None) -> dict[str, str | None]:
    """The options an approve command printed by the report needs to act on the same policy
    and ledger, made absolute (it may be run from another folder)."""
    return {"policy": os.path.abspath(policy_path) if policy_path else None,
            "ledger": os.path.abspath(ledger) if ledger else None}


def _write_report(report_mod: Any, doc: dict[str, Any], fmt: str, output: str | None) -> None:
    out = click.open_file(output or "-", "w", encoding="utf-8", atomic=bool(output))
    with out:
        if fmt == "html":
            out.write(report_mod.to_html(doc))
        elif fmt == "json":
            json.dump(doc, out, indent=1, ensure_ascii=False, default=str)
            out.write("\n")
        else:
            writer = csv_writer(out, report_mod.csv_fields(doc))
            writer.writeheader()
            writer.writerows(report_mod.csv_rows(doc))


@main.command("catalogue")
@click.option("--validate", "path", type=click.Path(exists=True, dir_okay=False),
              help="Validate a catalogue file instead of showing the built-in one.")
@guarded
def catalogue_cmd(path: str | None) -> None:
    """Show the signal catalogue's version and the ExifTool tags it reads."""
    cat = Catalogue.load(Path(path) if path else None)
    click.echo(f"catalogue {cat.version} digest {cat.digest[:16]}")
    click.echo(" ".join(cat.tag_arguments()))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

