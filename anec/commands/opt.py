"""`anec opt FILE -p PASSES`: xdsl-opt with anec's dialects, passes and weight stores."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import ModuleType

from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass
from xdsl.utils.exceptions import DiagnosticException, ParseError
from xdsl.xdsl_opt_main import xDSLOptMain

from anec.errors import AnecError, first_line
from anec.universe import ANEC_UNIVERSE


class AnecOpt(xDSLOptMain):
    """xdsl-opt plus `--print-ir-after-all`, `--weights FILE.npz` for modules with weight handles, and
    `--load-pass` for passes that live outside anec."""

    def __init__(self, description: str, args: Sequence[str], extra_passes: dict[str, Callable[[], type[ModulePass]]]):
        self.extra_passes = extra_passes  # registered before xdsl-opt parses -p, which needs them
        super().__init__(description=description, args=args)

    def register_all_dialects(self) -> None:
        super().register_all_dialects()
        for name, factory in ANEC_UNIVERSE.all_dialects.items():
            if name not in self.ctx.registered_dialect_names:
                self.ctx.register_dialect(name, factory)

    def register_all_passes(self) -> None:
        super().register_all_passes()
        for name, factory in ANEC_UNIVERSE.all_passes.items():
            self.available_passes.setdefault(name, factory)
        self.available_passes.update(self.extra_passes)

    def register_all_arguments(self, arg_parser: argparse.ArgumentParser) -> None:
        super().register_all_arguments(arg_parser)
        arg_parser.prog = "anec opt"
        arg_parser.add_argument("--print-ir-after-all", action="store_true", help="print the IR after every pass")
        arg_parser.add_argument("--weights", help="the .weights.npz file holding the module's weights")
        arg_parser.add_argument("--load-pass", action="append", default=[], metavar="FILE.py|MODULE",
                                help="register every ModulePass defined in this Python file or importable module, "
                                "by its `name` (repeatable)")

    def setup_pipeline(self) -> None:
        if self.args.print_ir_after_all:
            self.args.print_between_passes = True
        super().setup_pipeline()

    def apply_passes(self, prog: ModuleOp) -> None:
        from anec.weights import WeightStore, attach, attach_weights_file

        if self.args.weights:
            attach(prog, WeightStore.load(self.args.weights))
        elif self.args.input_file:
            attach_weights_file(prog, Path(self.args.input_file).parent)
        super().apply_passes(prog)


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("opt", help="run passes over textual IR (xdsl-opt with anec's dialects and passes)",
                       description="Run passes over a .mlir file; all of xdsl-opt's options apply (anec opt --help).",
                       add_help=False)
    p.add_argument("opt_args", nargs=argparse.REMAINDER)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    argv = [a for a in args.opt_args if a != "--debug"]
    if argv == ["--help"] or argv == ["-h"]:
        argv = ["--help"]
    loaded = argparse.ArgumentParser(add_help=False)
    loaded.add_argument("--load-pass", action="append", default=[])
    extra = {name: factory for spec in loaded.parse_known_args(argv)[0].load_pass for name, factory in load_passes(spec).items()}
    try:
        opt = AnecOpt(description="anec opt: run passes over anec IR", args=argv, extra_passes=extra)
    except ValueError as e:  # xdsl-opt's complaint about the pass pipeline
        raise AnecError(str(e), hint="`anec opt --help` lists the passes") from None
    with _output_written_on_success(opt):
        try:
            opt.run()
        except ParseError as e:
            raise AnecError(e.msg, where=str(e.span.get_location())) from None
        except DiagnosticException as e:  # the input (or a pass's result) does not verify
            raise AnecError(first_line(e, typed=False), where=opt.get_input_name()) from None
        except OSError as e:
            raise AnecError(f"cannot read {e.filename}", why=e.strerror or str(e)) from None
    sys.stdout.flush()
    return 0


def load_passes(spec: str) -> dict[str, Callable[[], type[ModulePass]]]:
    """The ModulePass classes defined in a .py file or an importable module, by pass name.

    (An installed package can instead declare an `xdsl.universe` entry point, as anec does.)"""
    module = _import_file(Path(spec)) if spec.endswith(".py") else _import_module(spec)
    found = {cls.name: cls for cls in vars(module).values()
             if inspect.isclass(cls) and issubclass(cls, ModulePass) and cls.__module__ == module.__name__ and not inspect.isabstract(cls)}
    if not found:
        raise AnecError(f"--load-pass {spec}: defines no ModulePass", hint="define a dataclass subclassing xdsl.passes.ModulePass with a `name`")
    return {name: _returning(cls) for name, cls in found.items()}


def _returning(cls: type[ModulePass]) -> Callable[[], type[ModulePass]]:
    """The factory xDSL's pass registry wants for a pass class."""
    return lambda: cls


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise AnecError(f"--load-pass {path}: no such file")
    name = f"anec_loaded_passes.{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the file runs
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[name]
        raise AnecError(f"--load-pass {path}: importing it failed", why=f"{type(e).__name__}: {e}") from None
    return module


def _import_module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except Exception as e:
        raise AnecError(f"--load-pass {name}: cannot import it", why=f"{type(e).__name__}: {e}",
                        hint="give a .py file, or a module on the Python path") from None


@contextlib.contextmanager
def _output_written_on_success(opt: AnecOpt) -> Iterator[None]:
    """Send `-o FILE` output to a side file that replaces FILE only once everything succeeded."""
    target = opt.args.output_file
    if target is None:
        yield
        return
    partial = opt.args.output_file = f"{target}.partial"
    try:
        yield
        os.replace(partial, target)
    finally:
        Path(partial).unlink(missing_ok=True)
