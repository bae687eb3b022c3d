"""The real-world corpus: the manifest and input generators (always), and each model on each chip
(marked `wild`; skipped with a reason until `python -m tests.wild.fetch` has filled the cache).

The model runs are opt-in (`-m wild` or `-m wild_ci`): with the cache filled they take tens of
minutes, too long for the default suite. A model whose last committed campaign result (benchmarks/wild-results.json) was not ok is an
expected failure carrying that result's reason, so a fix shows up as XPASS and a regression of a
passing model as a failure.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tests.wild import evaluate, inputs, manifest

ROOT = Path(__file__).resolve().parents[2]
BASELINE = ROOT / "benchmarks" / "wild-results.json"
TARGETS = ["m1", "m4"]
ENTRIES = manifest.load()


def test_the_manifest_is_a_corpus_of_real_models() -> None:
    files = {(e.package, e.version, e.path) for e in ENTRIES}
    assert len(files) >= 30 or len(ENTRIES) >= 30
    assert len({e.package for e in ENTRIES}) >= 8
    assert len({e.task for e in ENTRIES}) >= 5
    assert any(e.ci for e in ENTRIES)
    by_file: dict[tuple[str, str, str], str] = {}
    for e in ENTRIES:
        assert re.fullmatch(r"[0-9a-f]{64}", e.sha256), e.name
        assert by_file.setdefault((e.package, e.version, e.path), e.sha256) == e.sha256, f"{e.name}: one file, two digests"
        assert e.inputs and all(spec.kind in inputs.GENERATORS for spec in e.inputs), e.name


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_inputs_have_the_declared_shape_and_are_reproducible(entry: manifest.Entry) -> None:
    a, b = inputs.make_inputs(entry), inputs.make_inputs(entry)
    for spec in entry.inputs:
        assert a[spec.name].shape == spec.shape and a[spec.name].dtype == np.dtype(spec.dtype)
        assert np.array_equal(a[spec.name], b[spec.name])
        assert np.isfinite(a[spec.name]).all()


def test_a_text_page_is_mostly_paper_with_lines_of_ink() -> None:
    img = inputs.page(np.random.default_rng(0), 640, 640)[:, :, 0]
    ink = img < 128
    assert 0.01 < ink.mean() < 0.25
    rows_with_ink = ink.any(axis=1)
    assert 5 < np.count_nonzero(np.diff(rows_with_ink.astype(int)) == 1) < 60  # separate text lines


def test_speech_has_syllables_and_pauses() -> None:
    audio = inputs.speech(np.random.default_rng(0), inputs.SPEECH_RATE)
    frames = np.abs(audio[: 16000 // 160 * 160].reshape(-1, 160)).mean(axis=1)
    assert frames.max() > 10 * np.percentile(frames, 10)  # loud syllables, near-silent gaps
    spectrum = np.abs(np.fft.rfft(audio))
    assert np.argmax(spectrum) * inputs.SPEECH_RATE / audio.size < 1000  # voiced energy is low


def test_file_bytes_are_a_real_files_bytes() -> None:
    x = inputs.file_bytes(2048)
    assert x.shape == (2048,) and x.max() <= 256
    text = bytes(int(v) for v in x[:64] if v < 256).decode()
    assert text.isprintable() or "\n" in text
    assert inputs.file_bytes(1536).shape == (1536,)


def test_classify_blames_the_earliest_route_that_went_wrong() -> None:
    good = {"y": {"cosine": 1.0, "rel_l2": 1e-4, "max_abs": 1e-4}}
    bad = {"y": {"cosine": 0.5, "rel_l2": 0.9, "max_abs": 3.0}}
    assert evaluate.classify({"import-f32": good, "graph-f32": good, "sim": good, "sim-vs-interp": good}, None)["status"] == "ok"
    assert evaluate.classify({"import-f32": bad, "sim": bad}, None)["status"] == "importer-wrong"
    assert evaluate.classify({"import-f32": good, "graph-f32": bad, "sim": bad}, None)["stage"] == "graph passes"
    routes = {"import-f32": good, "graph-f32": good, "sim": bad}
    assert evaluate.classify({**routes, "interp-f16": good, "sim-vs-interp": bad}, None)["status"] == "wrong"
    # both just around the bar, the simulator close to the interpreter: fp16, not the hardware path
    assert evaluate.classify({**routes, "interp-f16": good, "sim-vs-interp": good}, None)["status"] == "fp16-mismatch"
    assert evaluate.classify({**routes, "interp-f16": bad, "sim-vs-interp": good}, None)["status"] == "fp16-mismatch"
    # both fp16 routes off (e.g. inf in one, saturation in the other): fp16, not the hardware path
    assert evaluate.classify({**routes, "interp-f16": bad, "sim-vs-interp": bad}, None)["status"] == "fp16-mismatch"
    refused = {"status": "refused", "stage": "ane-tile", "reason": "no"}
    assert evaluate.classify({"import-f32": good}, refused) == refused


def test_an_fp16_miss_the_reference_shares_under_input_rounding_is_at_the_floor() -> None:
    good = {"y": {"cosine": 1.0, "rel_l2": 1e-4, "max_abs": 1e-4}}
    sim = {"y": {"cosine": 0.9996, "rel_l2": 3e-2, "max_abs": 0.6}}
    routes = {"import-f32": good, "graph-f32": good, "interp-f16": sim, "sim": sim, "sim-vs-interp": good}
    floor = {"y": {"cosine": 0.9997, "rel_l2": 2.5e-2, "max_abs": 0.5}}  # onnxruntime on fp16-rounded inputs
    assert evaluate.classify({**routes, "input-f16": floor}, None)["status"] == "at-input-floor"
    assert "onnxruntime itself" in evaluate.classify({**routes, "input-f16": floor}, None)["reason"]
    far = {"y": {"cosine": 0.99999, "rel_l2": 1e-3, "max_abs": 0.01}}  # a stable model: its miss is anec's
    assert evaluate.classify({**routes, "input-f16": far}, None)["status"] == "fp16-mismatch"
    assert evaluate.classify(routes, None)["status"] == "fp16-mismatch"  # integer inputs: no floor measured
    # a hardware-path bug is never excused by the floor
    wrong = {**routes, "interp-f16": good, "sim-vs-interp": sim, "input-f16": floor}
    assert evaluate.classify(wrong, None)["status"] == "wrong"


def _tiny_model(path: Path, op: str = "Relu") -> None:
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3, 3, 3], np.random.default_rng(0).standard_normal(108).tolist())
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node(op, ["c"], ["y"])]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 16, 16])], [w])
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_evaluate_runs_every_route_on_a_cached_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANEC_WILD_CACHE", str(tmp_path))
    spec = manifest.InputSpec("x", (1, 3, 16, 16), "photo")
    entry = manifest.Entry("tiny", "pkg", "1.0", "m/tiny.onnx", "0" * 64, "detection", (spec,))
    _tiny_model(entry.file)
    record = evaluate.evaluate(entry, "m1")
    assert record["status"] == "ok", record
    assert set(record["errors"]) == {"input-f16", "import-f32", "graph-f32", "interp-f16", "sim", "sim-vs-interp"}
    assert record["ane_flops_fraction"] > 0.9 and record["coreml_saved"]


def _baseline() -> dict[tuple[str, str], dict]:
    rows = json.loads(BASELINE.read_text()) if BASELINE.exists() else []
    return {(r["name"], r["target"]): r for r in rows}


def _cases() -> list:
    base = _baseline()
    cases = []
    for e in ENTRIES:
        for t in TARGETS:
            marks = [pytest.mark.wild]
            last = base.get((e.name, t))
            if last is not None and last["status"] != "ok":
                marks.append(pytest.mark.xfail(reason=f"{last['status']} at {last.get('stage')}: {last.get('reason')}", strict=False))
            if e.ci:
                marks.append(pytest.mark.wild_ci)
            cases.append(pytest.param(e, t, marks=marks, id=f"{e.name}-{t}"))
    return cases


@pytest.mark.parametrize(("entry", "target"), _cases())
def test_real_model_matches_onnxruntime(entry: manifest.Entry, target: str, request: pytest.FixtureRequest) -> None:
    if "wild" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("the wild corpus runs only when asked: pytest -m wild (all) or -m wild_ci (the fast subset)")
    if not entry.cached():
        pytest.skip(f"{entry.name} is not in {manifest.cache_dir()}: run `python -m tests.wild.fetch` first")
    record = evaluate.evaluate(entry, target)
    assert record["status"] == "ok", f"{record['status']} at {record.get('stage')}: {record.get('reason')}"
    for name, e in record["errors"]["sim"].items():
        assert e["cosine"] >= 0.999 and e["rel_l2"] <= 1e-2, name


def test_the_scoreboard_page_is_generated_from_the_committed_results() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("wild_benchmark", ROOT / "benchmarks" / "wild.py")
    assert spec is not None and spec.loader is not None
    wild = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(wild)
    rows = wild.load_results()
    assert rows, "benchmarks/wild-results.json is missing: run the campaign"
    assert {r["status"] for r in rows} <= {*evaluate.STATUSES, "missing"}
    assert (ROOT / "docs" / "wild.md").read_text() == wild.report(rows), \
        "docs/wild.md is stale: run `python benchmarks/wild.py report`"


@pytest.mark.parametrize("name", sorted(__import__("tests.wild.repros", fromlist=["REPROS"]).REPROS))
def test_each_reproducer_is_a_valid_model_onnxruntime_runs(name: str, tmp_path: Path) -> None:
    """A reproducer must show anec's bug, not a broken model: the checker and onnxruntime accept it."""
    import onnxruntime

    from tests.wild import repros

    build, gen = repros.REPROS[name]
    model = build()
    onnx.checker.check_model(model, full_check=True)
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {i.name: (np.asarray(16000, np.int64) if i.type == "tensor(int64)" else np.asarray(gen(rng, i.shape), np.float32))
             for i in session.get_inputs()}
    outs = session.run(None, feeds)
    assert all(np.isfinite(o).all() for o in outs)


def test_failure_classes_match_their_records_and_nothing_else() -> None:
    from tests.wild.classes import CLASSES, classify_record

    keys = [c.key for c in CLASSES]
    assert len(set(keys)) == len(keys)
    record = {"status": "refused", "path": "x.onnx",
              "reason": "ConvTranspose.0#tile0 (ane.conv_transpose) cannot be tiled for the M1: its largest operand"}
    assert classify_record(record) == ["conv-transpose-tile-too-big"]
    record["reason"] = "ConvTranspose.2 (ane.conv_transpose) cannot be tiled for the M1: its largest operand"
    assert classify_record(record) == ["conv-transpose-untileable"]
    crash = {"status": "crash", "reason": "VerifyException: anehw.task: tile_src.WStep = 64 does not fit its 4-bit field"}
    assert classify_record(crash) == ["w-step-field"]
    fp16 = {"status": "fp16-mismatch", "fp16_warnings": ["x: output reaches 2e+05 on the sample inputs, above fp16's 65504"]}
    assert classify_record(fp16) == ["fp16-overflow"]
    assert classify_record({**fp16, "fp16_warnings": []}) == ["fp16-rounding"]
    ok_but_no_package = {"status": "ok", "coreml_saved": False,
                         "coreml_reason": "Resize.0 (onnx.Resize): onnx.Resize cannot be expressed in Core ML's MIL"}
    assert classify_record(ok_but_no_package) == ["resize-empty-roi"]
    assert classify_record({"status": "crash", "reason": "KeyError: 'x'"}) == []
