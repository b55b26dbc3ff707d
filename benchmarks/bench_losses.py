"""Loss speed: forward+backward time of each loss divided by KL's, measured in the same run.

Shapes: [64×2] and [64×1000] (classification batches) and an LLM shape ([8192×49152] on a GPU, [2048×8192]
on CPU). At the LLM shape Sinkhorn couples token positions in groups of 64 over the teacher's top-64 tokens;
a full N×N plan over every position is O(N²V) and listed only where it fits. Sinkhorn is also timed against
POT's ot.sinkhorn2 (torch backend, log-domain, same cost matrix, same iterations) on the same problem.

Run: python benchmarks/bench_losses.py [--device cuda] [--json benchmarks/results/losses-<device>.json]
Targets (docs/methods.md §5): Sinkhorn ≤ 3× KL at classification shapes, ≤ 2× KL at LLM shapes (GPU), faster than POT.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import ot
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import markdown_table, median_ms

from kd_analysis.losses import LOSSES

EPS, ITERS, TAU = 0.1, 20, 2.0


def fwd_bwd(name: str, s: torch.Tensor, t: torch.Tensor, **kw):
    def run():
        x = s.detach().requires_grad_(True)
        LOSSES[name](x, t, tau=TAU, **kw).backward()

    return run


def pot_fwd_bwd(s: torch.Tensor, t: torch.Tensor, group: int | None):
    """POT on the same problem: softmax at τ, L1 cost, log-domain Sinkhorn, Σ P∘M, backward (one call per group)."""

    def run():
        x = s.detach().requires_grad_(True)
        p, q = torch.softmax(x / TAU, -1), torch.softmax(t / TAU, -1)
        n = p.shape[0]
        g = group or n
        total = 0
        for i in range(0, n, g):
            M = torch.cdist(p[i : i + g], q[i : i + g], p=1)
            a = torch.full((M.shape[0],), 1.0 / M.shape[0], dtype=M.dtype, device=M.device)
            total = total + ot.sinkhorn2(a, a, M, EPS, method="sinkhorn_log", numItermax=ITERS, stopThr=0)
        (total / (n // g)).backward()

    return run


def bench_shape(rows: int, cols: int, device: str, llm: bool, repeats: int) -> list[dict]:
    g = torch.Generator(device="cpu").manual_seed(0)
    s = (torch.randn(rows, cols, generator=g) * 3).to(device)
    t = (torch.randn(rows, cols, generator=g) * 3).to(device)
    sk = {"eps": EPS, "iters": ITERS}
    variants = [
        (name, name, {}) for name in ("kl", "rkl", "js", "tvd", "skew_kl", "akl", "alpha_beta", "gjsd", "taid", "uld")
    ]
    if llm:
        grouped = {**sk, "group_size": 64, "topk": 64}
        variants += [
            ("sinkhorn (group 64, top-64, unrolled)", "sinkhorn", grouped),
            ("sinkhorn (group 64, top-64, envelope)", "sinkhorn", {**grouped, "gradient": "envelope"}),
        ]
    else:
        variants += [
            ("sinkhorn (unrolled)", "sinkhorn", sk),
            ("sinkhorn (envelope)", "sinkhorn", {**sk, "gradient": "envelope"}),
        ]
    times = {
        label: median_ms(fwd_bwd(name, s, t, **kw), repeats=repeats, device=device) for label, name, kw in variants
    }
    pot_group = 64 if llm else None
    # POT on the grouped problem but over the full vocabulary (it has no top-k): report it as such
    times["POT sinkhorn2 (same batch" + (", groups of 64, full vocabulary)" if llm else ")")] = median_ms(
        pot_fwd_bwd(s, t, pot_group), repeats=max(3, repeats // 4), device=device
    )
    kl = times["kl"]
    return [{"shape": f"{rows}×{cols}", "loss": k, "ms": v, "× KL": v / kl} for k, v in times.items()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    llm_shape = (8192, 49152) if args.device.startswith("cuda") else (2048, 8192)
    rows = []
    for (r, c), llm in (((64, 2), False), ((64, 1000), False), (llm_shape, True)):
        rows += bench_shape(r, c, args.device, llm, args.repeats if not llm else max(3, args.repeats // 4))
    device_name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else platform.processor() or "cpu"
    print(f"device: {args.device} ({device_name}), torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(markdown_table(rows, ["shape", "loss", "ms", "× KL"]))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"device": args.device, "name": device_name, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
