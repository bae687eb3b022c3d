"""`anec`: the command-line entry point. Each subcommand lives in anec/commands/<name>.py and
registers its own arguments; this module only dispatches and turns errors into one line."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from anec.errors import AnecError, first_line

COMMANDS = ("compile", "check", "explain", "report", "targets", "opt", "run", "profile", "dump")
"""Modules under anec.commands, in the order `anec --help` lists them."""


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show Python tracebacks for errors")
    parser = argparse.ArgumentParser(
        prog="anec",
        description="Compile PyTorch and ONNX models for the Apple Neural Engine; see which ops run on it, "
        "why not, how fast and with what fp16 error.",
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"anec.commands.{name}").register(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    debug = args.debug or "--debug" in argv
    try:
        return int(args.run(args) or 0)
    except AnecError as e:
        if debug:
            raise
        print(f"anec: error: {e.one_line()}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("anec: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # an anec bug, not a user mistake
        if debug:
            raise
        print(f"anec: internal error: {first_line(e)} "
              "(rerun with --debug for the traceback, and please report it)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
