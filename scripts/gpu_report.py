#!/usr/bin/env python3
"""Reads what scripts/gpu_check.sh left in OUT and writes OUT/results.json: the losses of each
device against the CPU's, the ViT-B-32 batch-256 step of duet next to PyTorch's as ratios,
device memory, and MFU. Prints a summary.

    python3 scripts/gpu_report.py OUT

MFU = samples/s × FLOPs per sample / peak. FLOPs per sample: ViT-B-32 forward 7.37 GMAC
(image 4.41: 50 tokens × 12 layers × 12·768² + attention + patch embedding; text 2.96: 77 tokens
× 12 × 12·512², BENCHMARKS.md "On paper"), training ≈ 3 × forward = 44.2 GFLOP. Peaks, dense,
from NVIDIA's H100/H200 SXM datasheets (the two have the same): bf16 and f16 989.4 TFLOP/s,
TF32 494.7 (duet's cuda f32 and PyTorch's fp32 with TF32 run their matrix products on it),
plain fp32 66.9 (PyTorch fp32 without TF32).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

FLOPS_PER_SAMPLE = 3 * 2 * 7.37e9
PEAKS = {"bf16": 989.4e12, "f16": 989.4e12, "tf32": 494.7e12, "fp32": 66.9e12}


def last_json(path: Path) -> dict | None:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                return None
    return None


def losses(out: Path, run: str) -> list[float] | None:
    path = out / "runs" / run / "metrics.jsonl"
    try:
        rows = [json.loads(l) for l in path.read_text().splitlines() if l.strip()]
    except (OSError, json.JSONDecodeError):
        return None
    return [r["loss"] for r in rows if "loss" in r]


def compare(reference: list[float] | None, other: list[float] | None, bound: float) -> dict:
    if reference is None or other is None:
        return {"ok": False, "why": "a run is missing"}
    if len(reference) != len(other) or not other:
        return {"ok": False, "why": f"{len(other)} losses against {len(reference)}"}
    if any(math.isnan(x) or math.isinf(x) for x in other):
        return {"ok": False, "why": "NaN or infinite loss", "losses": other}
    worst = max(abs(a - b) / abs(a) for a, b in zip(reference, other))
    return {"ok": worst <= bound, "bound": bound, "max_rel_diff": worst,
            "reference": reference, "losses": other}


def peak_mib(out: Path, name: str) -> float | None:
    try:
        values = [float(v) for v in (out / f"{name}.mem").read_text().split() if v.strip()]
    except (OSError, ValueError):
        return None
    return max(values) - values[0] if values else None


def main() -> None:
    out = Path(sys.argv[1])
    parts = {}
    for line in (out / "parts.jsonl").read_text().splitlines():
        row = json.loads(line)
        parts[row["name"]] = row
    env = (out / "env.txt").read_text(errors="replace") if (out / "env.txt").exists() else ""
    known_gpu = "H100" in env or "H200" in env

    cpu32, cpu16 = losses(out, "cpu-f32"), losses(out, "cpu-bf16")
    correctness = {
        "cuda f32 vs cpu f32": compare(cpu32, losses(out, "cuda-f32"), 1e-4),
        "wgpu f32 vs cpu f32": compare(cpu32, losses(out, "wgpu-f32"), 1e-4),
        "cuda bf16 vs cpu bf16": compare(cpu16, losses(out, "cuda-bf16"), 2e-2),
        "cuda bf16 vs cpu f32": compare(cpu32, losses(out, "cuda-bf16"), 2e-2),
    }
    refused = parts.get("cuda-batch-refused")
    correctness["cuda impossible batch refused"] = (
        {"ok": refused["rc"] == 0, "why": f"exit {refused['rc']} (0: refused, naming the GPU)"}
        if refused else {"ok": False, "why": "did not run"})
    # TF32 keeps 10 mantissa bits: when cuda f32 misses 1e-4, say whether it is within TF32's.
    tf32 = compare(cpu32, losses(out, "cuda-f32"), 5e-3)
    correctness["cuda f32 vs cpu f32"]["within_tf32_bound_5e-3"] = tf32["ok"]

    speed = {}
    for name, row in parts.items():
        if not (name.startswith("bench-") or name.startswith("torch-")):
            continue
        result = last_json(out / f"{name}.out") if row["rc"] == 0 else None
        entry = {"rc": row["rc"], "seconds": row["seconds"], "command": row["command"]}
        if result:
            sps = result.get("samples_per_sec")
            precision = result.get("precision", "")
            if name.startswith("torch-"):
                peak = {"fp32-tf32": "tf32", "amp_bf16": "bf16", "fp32": "fp32"}[name[6:]]
            else:
                peak = {"f32": "tf32" if "cuda" in name else "fp32", "bf16": "bf16",
                        "f16": "f16"}.get(precision)
            entry.update({
                "samples_per_sec": sps,
                "median_ms": result.get("median_ms"),
                "device_reserved_mib": result.get("device_reserved_mib"),
                "peak_device_bytes": result.get("peak_device_bytes"),
                "nvidia_smi_peak_mib": peak_mib(out, name),
                "mfu": (sps * FLOPS_PER_SAMPLE / PEAKS[peak]) if sps and peak and known_gpu else None,
                "mfu_peak": f"{peak} {PEAKS[peak] / 1e12:.1f} TFLOP/s" if peak else None,
            })
        speed[name] = entry

    def sps(name: str) -> float | None:
        return speed.get(name, {}).get("samples_per_sec")

    def best(prefix: str) -> tuple[str, float] | None:
        for label in ("warm", "cold"):
            if sps(f"{prefix}-{label}"):
                return f"{prefix}-{label}", sps(f"{prefix}-{label}")
        return None

    ratios = {}
    for duet, torch in (("bench-cuda-f32", "torch-fp32-tf32"), ("bench-cuda-bf16", "torch-amp_bf16"),
                        ("bench-wgpu-f32", "torch-fp32-tf32"), ("bench-wgpu-f16", "torch-amp_bf16")):
        mine = best(duet)
        if mine and sps(torch):
            ratios[f"{mine[0]} / {torch}"] = mine[1] / sps(torch)

    results = {"env": env, "flops_per_sample": FLOPS_PER_SAMPLE, "peaks": PEAKS,
               "correctness": correctness, "speed": speed, "duet_over_pytorch": ratios,
               "parts": parts}
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")

    for name, c in correctness.items():
        detail = f"max rel diff {c['max_rel_diff']:.2e} (bound {c['bound']:g})" if "max_rel_diff" in c else c.get("why", "")
        print(f"{'ok  ' if c['ok'] else 'FAIL'} {name}: {detail}")
    for name, e in speed.items():
        if "samples_per_sec" in e:
            mfu = f"{100 * e['mfu']:.1f} %" if e["mfu"] is not None else "n/a"
            print(f"     {name}: {e['samples_per_sec']:.1f} samples/s, {e['median_ms']:.1f} ms/step, "
                  f"MFU {mfu} of {e['mfu_peak']}, device {e['device_reserved_mib'] or e['peak_device_bytes']} "
                  f"(nvidia-smi peak {e['nvidia_smi_peak_mib']} MiB)")
        else:
            print(f"FAIL {name}: exit {e['rc']} after {e['seconds']} s")
    for name, r in ratios.items():
        print(f"     {name}: {r:.3f}")


if __name__ == "__main__":
    main()
