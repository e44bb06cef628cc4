"""bench/run.py end to end at its smallest settings: the JSON it writes, never how fast anything was."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def script(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python ARGS`` from the repository's root."""
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=180)


def run_to_json(out: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    """``python ARGS --out OUT``, which must succeed, and the JSON it wrote."""
    proc = script(*args, "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, json.loads(out.read_text())


def is_positive_float(value: object) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value > 0


@pytest.mark.slow
def test_bench_tiny_writes_every_ratio_as_a_positive_float(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    proc, results = run_to_json(out, "bench/run.py", "--tiny")

    assert results["threads"] == 1
    assert {"R1", "R2", "R3", "R4", "overhead_us", "K_sweep", "goals"} <= set(results)
    assert set(results["R1"]) == {"784-800-10 b128", "784-100-10 b128"}
    assert set(results["R4"]) == set(results["R1"])
    assert set(results["R2"]) == {"digits", "mnist_like"}
    ratios = [
        *(r["ratio"] for r in results["R1"].values()),
        *(r["ratio"] for r in results["R2"].values()),
        *(r["bare_ratio"] for r in results["R2"].values()),  # R2's ceiling: a loop without any framework
        results["R3"]["ratio"],
        *(r["ratio"] for r in results["R4"].values()),
    ]
    assert len(ratios) == 2 + 2 + 2 + 1 + 2
    assert all(is_positive_float(r) for r in ratios), ratios
    # the overhead per optimizer step may come out negative on a noisy machine, but it is always a number
    assert set(results["overhead_us"]) == set(results["R1"])
    assert all(isinstance(us, float) and math.isfinite(us) for us in results["overhead_us"].values())
    for r2 in results["R2"].values():
        assert 0.0 <= r2["nnmodel_acc"] <= 1.0 and 0.0 <= r2["sklearn_acc"] <= 1.0 and 0.0 <= r2["bare_acc"] <= 1.0

    default_k = results["default_K"]
    assert set(results["K_sweep"]) >= {"1 thread(s)"}
    for by_k in results["K_sweep"].values():
        assert {"K=1", "K=4", "K=16", "K=64", f"K={default_k}"} == set(by_k)
        for name, r in by_k.items():
            assert r["K"] == int(name.removeprefix("K=")) and is_positive_float(r["ratio"])
            assert isinstance(r["overhead_us"], float) and math.isfinite(r["overhead_us"])
            assert r["steps"] == r["epochs"] * -(-r["train_images"] // 128)  # every minibatch of every epoch
    assert all(r["K"] == default_k for r in results["R1"].values())
    assert set(results["goals"]) == {
        "R1 784-800-10 b128",
        "R1 784-100-10 b128",
        "overhead 784-100-10 b128",
        "R2 mnist_like",
        "R2 digits",
    }
    assert all(isinstance(g["met"], bool) for g in results["goals"].values())

    assert "| measure" in proc.stdout  # the printed tables
    assert "| K=64 " in proc.stdout
    assert "1 thread(s)" in proc.stdout


@pytest.mark.slow
def test_gpu_bench_dry_run_on_cpu_writes_r1_and_epoch_times(tmp_path: Path) -> None:
    """bench/gpu.py is run for its figures on a GPU machine; here its code runs on CPU (--device cpu)."""
    out = tmp_path / "gpu.json"
    proc, results = run_to_json(out, "bench/gpu.py", "--device", "cpu", "--tiny", "--silent")
    k = results["default_K"]
    assert list(results["R1"]) == ["K=1", f"K={k}"]  # no cuda_graphs sides on a CPU
    for side, nets in results["R1"].items():
        assert set(nets) == {"784-800-10 b128", "784-100-10 b128"}
        for r in nets.values():
            assert f"K={r['K']}" == side and r["cuda_graphs"] is False
            assert is_positive_float(r["ratio"]) and r["epochs"] == 1
            assert is_positive_float(r["nnmodel_s_per_epoch"]) and is_positive_float(r["bare_s_per_epoch"])
            assert r["nnmodel_s_per_60k"] == pytest.approx(60_000 / r["nnmodel_samples_per_s"])
    assert "| 784-800-10 b128 |" in proc.stdout


def test_gpu_bench_without_a_gpu_says_so_in_one_line() -> None:
    if __import__("torch").cuda.is_available():
        pytest.skip("a GPU is visible")
    proc = script("bench/gpu.py")
    assert proc.returncode == 2
    assert proc.stdout.strip() == (
        "error: no CUDA device is visible; run on a GPU machine, or use --device cpu for a dry run"
    )
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_estimator_bench_tiny_compares_both_estimators_on_both_tables(tmp_path: Path) -> None:
    out = tmp_path / "estimator.json"
    proc, results = run_to_json(out, "bench/estimator.py", "--tiny")
    assert set(results["cases"]) == {"digits", "breast_cancer"}
    for case in results["cases"].values():
        assert is_positive_float(case["ratio"]) and case["epochs"] == 2
        assert is_positive_float(case["ceiling"]) and len(case["torch_s"]) == 2  # the bare PyTorch loop's side
        assert len(case["nnmodel_accs"]) == len(case["sklearn_accs"]) == 3
        assert 0.0 <= case["nnmodel_acc"] <= 1.0 and 0.0 <= case["sklearn_acc"] <= 1.0
    assert "| digits (1347/450), 2 epochs |" in proc.stdout


@pytest.mark.slow
@pytest.mark.parametrize(("net", "shape"), [("mnist", "784-100-10 b128"), ("digits", "64-128-10 b64")])
def test_floor_bench_tiny_prints_every_side(net: str, shape: str) -> None:
    proc = script("bench/floor.py", "--tiny", "--net", net)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith(f"{shape}, K=16, 20 optimizer steps a fit")
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and not line.startswith("| side")]
    assert [row.split("|")[1].strip() for row in rows] == ["bare", "lightning", "nnmodule", "train.py"]
    assert all(is_positive_float(float(row.split("|")[4])) for row in rows)  # R1 of each side


@pytest.mark.slow
def test_sweeps_bench_tiny_times_every_launcher_with_the_sequential_results(tmp_path: Path) -> None:
    out = tmp_path / "sweeps.json"
    proc, results = run_to_json(out, "bench/sweeps.py", "--tiny")
    assert list(results["sides"]) == ["sequential", "joblib", "fork"]
    for side in results["sides"].values():
        assert is_positive_float(side["ratio"]) and len(side["wall_s"]) == 1
        assert side["same_as_sequential"] is True and len(side["test_acc"]) == 2
    assert results["sides"]["sequential"]["ratio"] == 1.0
    assert "| fork: hydra/launcher=fork hydra.launcher.n_jobs=2 |" in proc.stdout


@pytest.mark.slow
def test_threads_tiny_prints_both_machines_for_every_network() -> None:
    proc = script("bench/threads.py", "--tiny")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith(("| idle |", "| busy |"))]
    if "nothing to compare" in proc.stdout:  # a machine of one core
        assert rows == []
        return
    assert [row.split(" | ")[:2] for row in rows] == [
        [f"| {machine}", network]
        for machine in ("idle", "busy")
        for network in ("2-8-2 b4", "64-32-10 b64", "64-128-10 b64", "784-100-10 b128", "784-800-10 b128")
    ]
