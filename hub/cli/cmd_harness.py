"""``doorward harness run SCENARIO [--report DIR] [--json]``: the hardware testers' command."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hardware.errors import ScenarioError

__all__ = ["EXIT_BAD_SCENARIO", "EXIT_FAILED", "add_parser"]

EXIT_FAILED = 1  # the scenario ran but its [expect] did not hold
EXIT_BAD_SCENARIO = 2  # the scenario file (or the report directory, or its plot) could not be used


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``harness run`` on the ``doorward`` command's subparsers."""
    harness = commands.add_parser(
        "harness",
        help="run scenarios through the real recording pipeline and check what it recorded",
        description="Hardware testers' tools: play scenario files through the real pipeline.",
    )
    actions = harness.add_subparsers(dest="harness_command", metavar="ACTION", required=True)
    run = actions.add_parser(
        "run",
        help="run one scenario file and check its [expect] table",
        description=(
            "Play SCENARIO on the simulated camera in virtual time through the real pipeline "
            "(motion, recorder, encoder, segmenter, age encryption, clip store), decrypt and "
            "decode what it recorded, and check the scenario's [expect]. Exit status 0 when "
            "every expectation holds, 1 when one fails, 2 when the file cannot be used."
        ),
    )
    run.add_argument("scenario", type=Path, metavar="SCENARIO", help="a scenario TOML file")
    run.add_argument(
        "--report",
        type=Path,
        metavar="DIR",
        default=None,
        help="write the plot (PNG) and the text report into DIR",
    )
    run.add_argument(
        "--json", action="store_true", help="print the report as one JSON object on the last line"
    )
    run.set_defaults(handler=handle_run)


def handle_run(args: argparse.Namespace) -> int:
    """Run the scenario, print the report, and return the exit status."""
    from device.harness import PlotUnavailable, run_scenario

    try:
        report = run_scenario(args.scenario, report_dir=args.report)
    except (ScenarioError, PlotUnavailable) as exc:
        print(f"doorward: error: {exc}", file=sys.stderr)
        return EXIT_BAD_SCENARIO
    except OSError as exc:
        if args.report is None:
            raise
        print(
            f"doorward: error: cannot write the report into {args.report}: {exc.strerror}",
            file=sys.stderr,
        )
        return EXIT_BAD_SCENARIO
    if args.json:
        print(json.dumps(report.to_json(), sort_keys=True))
    else:
        print(report.text())
    return 0 if report.passed else EXIT_FAILED
