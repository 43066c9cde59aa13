"""``watcherd probe FILE``: a file's media facts and each rule's verdict, without a config."""

from __future__ import annotations

import argparse
import sys

from rich.text import Text

from watcherd.cli.probeprofile import choose_profile, profile_table
from watcherd.cli.render import output_console, print_json, table
from watcherd.exitcodes import EXIT_FAIL, EXIT_OK
from watcherd.media.validate import check_file

VERDICT_STYLES = {"pass": "green", "fail": "red"}


def cmd_probe(args: argparse.Namespace) -> int:
    profile = choose_profile(args)
    try:
        report = check_file(args.file, profile.limits, require_audio=args.require_audio,
                            model=profile.title())
    except FileNotFoundError:
        print(f"watcherd: {args.file}: no such file", file=sys.stderr)
        return EXIT_FAIL
    if args.json:
        print_json({"model": profile.name, "profile": profile.as_dict(), **report.as_dict()})
        return EXIT_OK if report.accepted else EXIT_FAIL
    console = output_console()
    console.print(f"{args.file}  (profile {profile.name}, from {profile.source})", markup=False)
    console.print(profile_table(profile))
    if report.facts:
        console.print(table(("fact", "value"), report.facts.as_dict().items()))
    console.print()
    console.print(table(("", "rule", "measured", "expected", "why"), (
        (Text(v.status.upper(), style=VERDICT_STYLES.get(v.status, "dim")), v.rule,
         v.measured, v.expected, v.reason or "") for v in report.verdicts)))
    verdict = "ACCEPTED" if report.accepted else "REJECTED"
    console.print(f"\n[{'green' if report.accepted else 'red'}]{verdict}[/]")
    return EXIT_OK if report.accepted else EXIT_FAIL
