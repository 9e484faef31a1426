"""`tokenbench`: the command line. Each subcommand lives in bench/commands/<name>.py."""
from __future__ import annotations

import argparse
import importlib
import sys

from bench import __version__
from bench.errors import UserError
from bench.flag_rules import FlagError, check_command_line, check_values, unify_number_types

# name -> (module, one-line help). Listed explicitly so a command is never silently replaced.
COMMANDS = {
    "run": ("bench.commands.run", "measure the decode step on this machine and write a results file"),
    "devices": ("bench.commands.devices", "list the spec-sheet catalog and mark the detected device"),
    "models": ("bench.commands.models", "list the model configs and their derived sizes"),
    "verify": ("bench.commands.verify", "check every op and the layer against the float64 reference"),
    "show": ("bench.commands.show", "print the tables of saved results files"),
    "cost": ("bench.commands.cost", "per-token economics of one configuration or a run; `cost check` for figures"),
    "compare": ("bench.commands.compare", "two runs or catalog devices side by side at a matched operating point"),
    "project": ("bench.commands.project", "project a run onto a device you do not have, then cost it"),
    "report": ("bench.commands.report", "plots and a Markdown/HTML page from results files"),
    "tp": ("bench.commands.tp", "tensor-parallel decode layer over N ranks (torchrun; NCCL or gloo)"),
    "moe": ("bench.commands.moe", "time a mixture-of-experts MLP step (router + experts), activated work only"),
    "fp8": ("bench.commands.fp8", "time the decode projections in FP8 beside bf16 (skipped without FP8)"),
    "peak": ("bench.commands.peak", "measure this device's matmul and bandwidth ceilings against the spec sheet"),
    "workload": ("bench.commands.workload", "what a million tokens of an ISL/OSL workload costs here, per concurrency"),
    "served": ("bench.commands.served", "read served-results files (vLLM, SGLang, AIPerf, llama.cpp, InferenceX, CSV) "
                                        "into per-GPU points"),
    "history": ("bench.commands.history", "print one op's pytest-benchmark figures across devices and dates"),
    "peer": ("bench.commands.peer", "tokenbench's whole-model decode step beside Hugging Face transformers' (CPU)"),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's usage errors: one line, exit 2, like every other user error
        self.exit(2, f"tokenbench: error: {message}\n")


def _chosen(argv) -> str | None:
    """The subcommand named on the command line, found without importing any command module."""
    for arg in argv:
        if arg in COMMANDS:
            return arg
        if not arg.startswith("-"):
            return None  # an unknown word: argparse says so, listing the choices
    return None


def build_parser(argv=None) -> argparse.ArgumentParser:
    """Every subcommand is listed with its help, but only the chosen one's module is imported (its
    arguments are needed to parse it); the others, and torch behind them, stay unloaded, so `cost`,
    `compare`, `devices`, `models` and `--help` start in a fraction of a second. argv=None: all of them."""
    parser = _Parser(prog="tokenbench", description="What does one token really cost on this machine?")
    parser.add_argument("--version", action="version", version=f"tokenbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    chosen = None if argv is None else _chosen(argv)
    for name, (module_name, help_text) in COMMANDS.items():
        if argv is not None and name != chosen:
            sub.add_parser(name, help=help_text, description=help_text)
            continue
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_text, description=(module.__doc__ or help_text).strip())
        module.add_arguments(p)
        unify_number_types(p)
        p.set_defaults(_module=module, _parser=p)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    from bench.errors import restore_signals, stop_on_signals, stop_status

    previous = stop_on_signals()  # SIGTERM and SIGHUP stop a command as Ctrl-C does: rows kept, one line
    try:
        check_command_line(args._parser, argv[argv.index(args.command) + 1:])
        check_values(args._parser, args)
    except FlagError as exc:
        print(f"tokenbench: error: {exc}", file=sys.stderr)
        return 2
    try:
        return int(args._module.main(args) or 0)
    except UserError as exc:
        print(f"tokenbench: error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        # costmodel's and kernels' input errors are ValueError subclasses with user-facing messages
        from costmodel.input_errors import CostInputError
        from kernels.backends import BackendError

        if isinstance(exc, (CostInputError, BackendError)):
            print(f"tokenbench: error: {exc}", file=sys.stderr)
            return 2
        raise
    except BrokenPipeError:
        return 1
    except KeyboardInterrupt as exc:  # a command that measures keeps its rows itself (store.recording, the launcher)
        print("tokenbench: interrupted", file=sys.stderr)
        return stop_status(exc)
    finally:
        restore_signals(previous)
