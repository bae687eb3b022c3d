"""The differential check of one random graph: anec's hardware path against its own fp16 interpreter.

`check(seed)` compiles the graph of `seed` through the graph passes, interprets that IR (fp16 storage,
exact arithmetic: the oracle), lowers a copy through tile → to-anehw → plan-memory, encodes and
decodes it, and runs the decoded program on the simulator. A difference beyond fp16 rounding is a
bug of the hardware path; onnxruntime's outputs are compared too, for information. `campaign` runs
many seeds in worker processes with a per-graph timeout, so a hang or a crash of the interpreter
itself does not stop it.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import onnx

    from anec.pipeline import CompiledModel
    from anec.report import Report

OUTCOMES = ("ok", "fp16-flagged", "refused", "crash", "sim-mismatch", "ref-mismatch", "timeout")
"""`check`: fp16-flagged is a graph whose fp16 outputs miss onnxruntime's while its float32 import
matches them, and anec, compiled calibrated on the inputs, names where the error enters (fp16 itself,
reported); a ref-mismatch is any other disagreement with onnxruntime (wrong semantics, or fp16 error
anec did not name)."""
CALIBRATED_OUTCOMES = ("ok", "flagged", "missed", "refused", "crash", "timeout")
"""`check_calibrated`: within tolerance of float32; outside it and anec named the op where the error
enters; outside it and anec did not (a silent wrong answer: the bug this mode hunts)."""
SIM_RTOL = 1e-2
SIM_ATOL_SCALE = 1e-2
"""Simulator vs interpreter: tiles sum partial products in fp16 and the simulator's activations are
hardware approximations, so agreement is within 1% of each value plus 1% of the output's largest
magnitude; a wrong window, stride or offset is off by the magnitude of the data itself."""
REF_RTOL = 2e-2
REF_ATOL_SCALE = 2e-2


@dataclass(frozen=True)
class Result:
    seed: int
    target: str
    outcome: str
    detail: str = ""
    graph: str = ""
    seconds: float = 0.0

    def line(self) -> str:
        return f"seed {self.seed} [{self.target}] {self.outcome}: {self.detail}  | {self.graph}"


def target_of(seed: int) -> str:
    """m1 for even seeds, m4 for odd ones (their limits differ: row width, kernel memory, L2)."""
    return "m1" if seed % 2 == 0 else "m4"


def mismatch(got: np.ndarray, want: np.ndarray, rtol: float, atol_scale: float, noise: float = 0.0) -> str | None:
    """None when `got` is within fp16 tolerance of `want` (plus an absolute `noise`), else a one-line
    description."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        return f"shape {list(got.shape)} vs {list(want.shape)}"
    finite = np.isfinite(want)
    atol = atol_scale * float(np.abs(want[finite]).max(initial=0.0)) + noise
    bad = ~np.isclose(got, want, rtol=rtol, atol=atol)
    if not bad.any():
        return None
    k = int(np.argmax(bad.reshape(-1)))
    return (f"{int(bad.sum())} of {bad.size} values differ, e.g. {got.reshape(-1)[k]:.5g} vs {want.reshape(-1)[k]:.5g} "
            f"(max abs diff {float(np.nanmax(np.abs(got - want))):.3g}, tolerance {atol:.3g} + {rtol:g} relative)")


def _where(exc: BaseException, stage: str) -> str:
    """The anec module and function the exception came from (the pass at fault, roughly)."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        path = frame.filename.replace(os.sep, "/")
        for root in ("/lowering/", "/anec/", "/dialects/"):
            if root in path:
                return f"{stage} @ {path[path.rindex(root) + 1:]}:{frame.name}"
    return stage


class _Attempt:
    """One graph's check in progress: the stage it reached, and how it ended as a `Result`."""

    def __init__(self, seed: int, target: str, model: onnx.ModelProto):
        from tests.fuzz.generator import describe

        self.seed, self.target, self.graph = seed, target, describe(model)
        self.start = time.perf_counter()
        self.stage = "import"

    def progress(self, name: str) -> None:
        self.stage = name

    def result(self, outcome: str, detail: str = "") -> Result:
        return Result(self.seed, self.target, outcome, detail, self.graph, time.perf_counter() - self.start)

    def failure(self, e: Exception) -> Result:
        """An AnecError is a refusal (one line, what a user sees); anything else a crash, located."""
        from anec.errors import AnecError

        first = (str(e).splitlines() or [""])[0][:300]
        if isinstance(e, AnecError):
            return self.result("refused", f"{self.stage}: {first}")
        return self.result("crash", f"{type(e).__name__} in {_where(e, self.stage)}: {first}")


def check(seed: int, target: str | None = None) -> Result:
    """Compile and run the graph of `seed` both ways; the outcome class with a one-line detail."""
    from anec.descriptors.binary import decode, encode
    from anec.descriptors.build import anec_file
    from anec.pipeline import HARDWARE_PASSES, CompileOptions, build_passes, compile
    from anec.runtime import run_file, run_interpreted
    from anec.weights import copy_module
    from tests.fuzz.generator import random_graph

    target = target or target_of(seed)
    model, inputs = random_graph(seed)
    run = _Attempt(seed, target, model)
    try:
        compiled = compile(model, target=target, emit="descriptors", stop_after="ane-fuse", progress=run.progress)
        run.stage = "interpret"
        want = run_interpreted(compiled.ir, inputs)
        module = copy_module(compiled.ir)
        from anec.context import make_context

        ctx = make_context()
        for p in build_passes(CompileOptions(target=target, emit="descriptors")):
            if p.name in HARDWARE_PASSES:
                run.stage = p.name
                p.apply(ctx, module)
                module.verify()
        run.stage = "encode"
        file = decode(encode(anec_file(module, compiled.target.arch)))
        run.stage = "simulate"
        got = run_file(file, inputs)
    except Exception as e:
        return run.failure(e)
    noise: dict[str, float] = {}

    def differs(outs: dict[str, np.ndarray], refs: dict[str, np.ndarray], rtol: float, atol_scale: float) -> str | None:
        for name, value in refs.items():
            why = mismatch(outs[name], value, rtol, atol_scale)
            if why and not noise:
                noise.update(rounding_noise(lambda feeds: run_interpreted(compiled.ir, feeds), inputs, want))
            if why and mismatch(outs[name], value, rtol, atol_scale, NOISE_FACTOR * noise[name]):
                return f"{name}: {why}"
        return None

    why = differs(got, want, SIM_RTOL, SIM_ATOL_SCALE)
    if why:
        return run.result("sim-mismatch", why)
    reference = _onnxruntime(model, inputs)
    why = differs(want, reference, REF_RTOL, REF_ATOL_SCALE)
    if why:
        return _fp16_or_semantics(run, model, inputs, reference, why)
    return run.result("ok")


def _fp16_or_semantics(run: _Attempt, model: onnx.ModelProto, inputs: dict[str, np.ndarray], reference: dict[str, np.ndarray],
                       why: str) -> Result:
    """A disagreement with onnxruntime: fp16 rounding (the float32 import agrees) that anec names
    where it enters when compiled calibrated on the inputs, or a finding."""
    try:
        run.stage = "float32"
        float32 = _float32(model, inputs)
        if any(mismatch(float32[name], value, REF_RTOL, REF_ATOL_SCALE) for name, value in reference.items()):
            return run.result("ref-mismatch", f"{why} (the float32 import disagrees too)")
        sources = _sources(_calibrated(model, run, inputs).report)
    except Exception as e:
        return run.failure(e)
    if sources:
        return run.result("fp16-flagged", f"{why}; enters at {sources}")
    return run.result("ref-mismatch", f"{why} (fp16 error the calibrated report does not name)")


def _float32(model: onnx.ModelProto, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The imported IR run in float32 throughout: the model's meaning as anec reads it."""
    from anec.importers import import_model
    from anec.interpreter import entry_function, interpret, output_names

    imported = import_model(model)
    return dict(zip(output_names(entry_function(imported)), interpret(imported, inputs, segments="f32")))


def _calibrated(model: onnx.ModelProto, run: _Attempt, inputs: dict[str, np.ndarray]) -> CompiledModel:
    """The graph compiled to IR calibrated on `inputs`, so its report attributes fp16 error."""
    from anec.pipeline import compile

    return compile(model, target=run.target, emit="ir", example_inputs=inputs, progress=run.progress)


def _sources(report: Report) -> str:
    """The first ops the report names as where fp16 error enters ("" when none)."""
    return ", ".join(f"{op} ({kind}, {err:.2g})" for op, kind, err in report.fp16_error_sources[:3])


def check_calibrated(seed: int, target: str | None = None) -> Result:
    """The hazard graph of `seed` (`random_graph(seed, hazards=True)`) compiled calibrated on its own
    inputs (`example_inputs`): its fp16 outputs (the interpreter on the compiled IR) against the
    float32 run of the imported IR, with the agreement bar. Outside it, the outcome says whether the
    report names an op where fp16 error enters (`Report.fp16_error_sources`)."""
    from anec.agreement import FP16_NOISE, error
    from anec.runtime import run_interpreted
    from tests.fuzz.generator import random_graph

    target = target or target_of(seed)
    model, inputs = random_graph(seed, hazards=True)
    run = _Attempt(seed, target, model)
    try:
        run.stage = "float32"
        want = _float32(model, inputs)
        compiled = _calibrated(model, run, inputs)
        run.stage = "interpret"
        with np.errstate(over="ignore", invalid="ignore"):
            got = run_interpreted(compiled.ir, inputs)
    except Exception as e:
        return run.failure(e)
    misses = {}
    for name, value in want.items():
        e = error(np.asarray(got[name], np.float64), np.asarray(value, np.float64))
        if not e.ok_within(FP16_NOISE):
            misses[name] = e
    if not misses:
        return run.result("ok")
    worst = ", ".join(f"{n}: cosine {e.cosine:.4f}, rel L2 {e.rel_l2:.2g}" for n, e in misses.items())
    if sources := _sources(compiled.report):
        return run.result("flagged", f"{worst}; enters at {sources}")
    warned = "; warnings: " + " | ".join(w[:100] for w in compiled.report.fp16_warnings[:3]) if compiled.report.fp16_warnings else ""
    return run.result("missed", worst + warned)


NOISE_FACTOR = 4.0
"""How many times the interpreter's own rounding noise a difference may reach before it is a bug."""


def rounding_noise(run: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]], inputs: dict[str, np.ndarray],
                   want: dict[str, np.ndarray]) -> dict[str, float]:
    """Per output, how far fp16 rounding alone moves it: the largest change of the interpreter's output
    when every input moves by about one fp16 ulp (seeded). A norm over a nearly constant axis, or a
    tanh after a long product, turns one ulp into a large absolute difference; a wrong window does not
    depend on it."""
    rng = np.random.default_rng(0)
    moved = {k: (v * (1 + rng.uniform(-1, 1, v.shape) * 2.0**-10)).astype(v.dtype) for k, v in inputs.items()}
    outs = run(moved)
    return {k: float(np.nanmax(np.abs(outs[k].astype(np.float64) - want[k].astype(np.float64)), initial=0.0)) for k in want}


def _onnxruntime(model, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, inputs)))


# --- campaigns: worker processes with a per-graph timeout ---

MEMORY_LIMIT = 6 << 30
"""Address-space cap of a worker: an allocation past it is a MemoryError (a crash), not a stalled host."""


def _worker(conn: Connection, calibrated: bool) -> None:
    os.environ.setdefault("ANEC_SIM_THREADS", "1")
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    except (ImportError, ValueError, OSError):
        pass
    while True:
        seed = conn.recv()
        if seed is None:
            return
        try:
            res = (check_calibrated if calibrated else check)(seed)
        except BaseException as e:
            res = Result(seed, target_of(seed), "crash", f"{type(e).__name__} in harness: {str(e)[:200]}")
        conn.send(res)


class _Slot:
    def __init__(self, ctx: multiprocessing.context.BaseContext, calibrated: bool):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child, calibrated), daemon=True)  # type: ignore[attr-defined]
        self.proc.start()
        child.close()
        self.seed: int | None = None
        self.started = 0.0

    def stop(self) -> None:
        self.proc.kill()
        self.proc.join()
        self.conn.close()


def campaign(seeds: Iterable[int], jobs: int = 1, timeout: float = 120.0,
             on_result: Callable[[Result], None] | None = None, calibrated: bool = False) -> Iterator[Result]:
    """Check every seed in `jobs` worker processes (`check`, or `check_calibrated` when `calibrated`);
    a graph running past `timeout` seconds is a timeout (its worker is replaced), a worker that dies
    is a crash."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    ctx = multiprocessing.get_context("spawn")
    pending = list(seeds)[::-1]
    slots = [_Slot(ctx, calibrated) for _ in range(max(1, min(jobs, len(pending))))]
    try:
        while pending or any(s.seed is not None for s in slots):
            for s in slots:
                if s.seed is None and pending:
                    s.seed, s.started = pending.pop(), time.monotonic()
                    s.conn.send(s.seed)
            busy = [s for s in slots if s.seed is not None]
            deadline = min(s.started for s in busy) + timeout
            ready = wait([s.conn for s in busy] + [s.proc.sentinel for s in busy],
                         timeout=max(0.0, deadline - time.monotonic()))
            for i, s in enumerate(slots):
                if s.seed is None:
                    continue
                res = None
                if s.conn in ready:
                    try:
                        res = s.conn.recv()
                    except EOFError:
                        res = None
                if res is None and (s.proc.sentinel in ready or not s.proc.is_alive()):
                    res = Result(s.seed, target_of(s.seed), "crash", f"worker died (exit code {s.proc.exitcode})")
                elif res is None and time.monotonic() - s.started >= timeout:
                    res = Result(s.seed, target_of(s.seed), "timeout", f"> {timeout:g} s")
                if res is None:
                    continue
                if res.outcome in ("timeout",) or not s.proc.is_alive() or "worker died" in res.detail:
                    s.stop()
                    slots[i] = _Slot(ctx, calibrated)
                else:
                    s.seed = None
                slots[i].seed = None
                if on_result:
                    on_result(res)
                yield res
    finally:
        for s in slots:
            with contextlib.suppress(OSError, BrokenPipeError):
                s.conn.send(None)
            s.proc.join(timeout=2)
            if s.proc.is_alive():
                s.proc.kill()


def counts(results: Iterable[Result], outcomes: tuple[str, ...] = OUTCOMES) -> Counter[str]:
    tally: Counter[str] = Counter({o: 0 for o in outcomes})
    tally.update(r.outcome for r in results)
    return tally
