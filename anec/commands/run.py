"""`anec run MODEL --input NAME=FILE.npy …`: run a model on the simulator (or Core ML) and check it."""

from __future__ import annotations

import argparse
import sys
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from anec.commands.compile import parse_freeze
from anec.errors import AnecError, first_line

if TYPE_CHECKING:
    from anec.descriptors.program import AnecFile


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("run", parents=[common], help="run a model: ANE programs on the simulator, the rest on the CPU",
                       description="Run MODEL (.anec, or .onnx/.pt2 compiled on the fly for --target) on the given inputs; "
                       "print the outputs and, with --check, their error against onnxruntime or eager PyTorch.")
    p.add_argument("model", help="a .anec program, or an .onnx / .pt2 model (or, with --device coreml, an .mlpackage)")
    p.add_argument("--input", action="append", default=[], metavar="NAME=FILE.npy", help="an input tensor (repeatable)")
    p.add_argument("--target", help="chip to compile for (m1 … m5-max); a .anec file knows its own")
    p.add_argument("--device", choices=("sim", "coreml"), default="sim", help="the simulator (default) or Core ML (macOS only)")
    p.add_argument("--freeze", action="append", default=[], metavar="NAME=VALUE",
                   help="fix an input to a value, as `anec compile --freeze` does; the reference of --check gets it as an input")
    p.add_argument("--check", action="store_true", help="compare with onnxruntime (.onnx) or eager PyTorch (.pt2)")
    p.add_argument("--reference", metavar="MODEL", help="the model to check a .anec file against (default: the file it was compiled from)")
    p.add_argument("-o", "--output", metavar="OUT.npz", help="save the outputs")
    p.set_defaults(run=run)


def read_inputs(specs: list[str]) -> dict[str, np.ndarray]:
    inputs: dict[str, np.ndarray] = {}
    for spec in specs:
        name, sep, file = spec.rpartition("=")
        if not sep or not name:
            raise AnecError(f"--input {spec!r} is not NAME=FILE.npy", hint="e.g. --input pixel_values=image.npy")
        try:
            inputs[name] = np.load(file, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise AnecError(f"cannot read input {name!r} from {file}", why=first_line(e, typed=False),
                            hint="inputs are .npy files written by numpy.save") from None
    return inputs


def run(args: argparse.Namespace) -> int:
    path = Path(args.model)
    if not path.exists():
        raise AnecError(f"{path}: no such file", hint="check the path")
    inputs = read_inputs(args.input)
    frozen = dict(parse_freeze(spec) for spec in args.freeze)
    if args.device == "coreml":
        outputs, source = run_coreml(path, inputs, args.target), str(path)
    else:
        from anec.runtime import run_file

        program = load_program(path, args.target, frozen, {name: value.shape for name, value in inputs.items()})
        outputs, source = run_file(program, inputs), program.source or str(path)
    for name, value in outputs.items():
        stats = f"min {value.min():.4g}  max {value.max():.4g}  mean {value.astype(np.float64).mean():.4g}" if value.size and value.dtype.kind in "fiu" else ""
        print(f"{name}: {value.dtype}{list(value.shape)}  {stats}")
    if args.output:
        save_outputs(Path(args.output), outputs)
        print(f"wrote {args.output}")
    if args.check:
        reference = Path(args.reference or (source if path.suffix == ".anec" else path))
        if reference.suffix == ".anec" or not reference.exists():
            raise AnecError(f"no reference model to check {path} against", hint="pass --reference MODEL.onnx (or .pt2)")
        from anec.runtime.check import compare, reference_outputs

        fed = inputs | {name: np.asarray(value) for name, value in frozen.items()}
        for line in compare(outputs, reference_outputs(reference, fed)):
            print(line)
    return 0


def load_program(path: Path, target: str | None, frozen: dict[str, Any] | None = None,
                 shapes: dict[str, tuple[int, ...]] | None = None) -> AnecFile:
    """The decoded descriptor program to run or profile: read from a `.anec` file, or compiled from
    a model for `target` with `frozen` inputs fixed and an ONNX model's inputs at the `shapes` of the
    arrays given (the command compiles through the pipeline; the runtime only runs)."""
    from anec.pipeline import compile as compile_model
    from anec.runtime import read_file
    from anec.targets import get_target

    if path.suffix == ".anec":
        return read_file(path, get_target(target) if target is not None else None)
    given = {name: list(shape) for name, shape in (shapes or {}).items() if name not in (frozen or {})}
    return compile_model(path, target=target or "m1", emit="descriptors", input_values=frozen or None,
                         input_shapes=given if given and path.suffix == ".onnx" else None).program


def save_outputs(path: Path, outputs: dict[str, np.ndarray]) -> None:
    """An `.npz` of `outputs` by name, written as `np.savez` writes one; not through `np.savez`, which
    would take an output named `file` or `allow_pickle` for its own argument."""
    tmp = path.with_name(f".{path.name}.tmp.npz")
    try:
        with zipfile.ZipFile(tmp, "w") as archive:
            for name, array in outputs.items():
                with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def run_coreml(path: Path, inputs: dict[str, np.ndarray], target: str | None) -> dict[str, np.ndarray]:
    """Core ML's own prediction of the model (macOS only): a `.mlpackage` as it is, a model compiled to one."""
    if sys.platform != "darwin":
        raise AnecError("--device coreml needs macOS: Core ML cannot run models on this system", hint="use --device sim")
    if path.suffix == ".anec":
        raise AnecError(f"{path} is a descriptor program, which only the simulator runs", hint="pass the model itself, or --device sim")
    from anec.runtime.coreml import predict

    if path.suffix == ".mlpackage":
        return predict(path, inputs)
    import tempfile

    from anec.pipeline import compile as compile_model

    with tempfile.TemporaryDirectory(prefix="anec-run-") as folder:
        package = compile_model(path, target=target or "m1", emit="coreml").save(Path(folder) / f"{path.stem}.mlpackage")
        return predict(package, inputs)
