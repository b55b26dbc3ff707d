"""The app's pages, in menu order. A new workflow page is one line here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PageInfo:
    path: str  # relative to the repository root
    title: str
    icon: str
    url_path: str
    summary: str


WORKFLOW_PAGES = [
    PageInfo(
        "pages/summary.py",
        "Summary",
        ":material/auto_stories:",
        "summary",
        "The demo's story in five minutes: size and speed, whether distillation works (with intervals), what "
        "the losses do, what the teacher looks at, priming.",
    ),
    PageInfo(
        "pages/models_and_data.py",
        "Models & data",
        ":material/deployed_code:",
        "models",
        "Load checkpoints (built-in, folder, hub id), see their architecture and the pair check, validate data.",
    ),
    PageInfo(
        "pages/loss_explorer.py",
        "Loss explorer",
        ":material/compare_arrows:",
        "losses",
        "KL, reverse KL, JS, TVD, skew KL, AKL, α-β, generalised JSD, TAID, ULD and SinKD's Sinkhorn: a toy, your "
        "own pair, transport plans.",
    ),
    PageInfo(
        "pages/saliency_rationales.py",
        "Saliency rationales",
        ":material/highlight:",
        "rationales",
        "The teacher's attributions as rationales: token heatmaps, overlap with the gold answer, teacher vs student.",
    ),
    PageInfo(
        "pages/priming_attention.py",
        "Priming & attention",
        ":material/psychology:",
        "priming",
        "The teacher under prompting strategies, one LoRA student per strategy, and their attention heads.",
    ),
    PageInfo(
        "pages/distillation_runs.py",
        "Distillation runs",
        ":material/model_training:",
        "runs",
        "Start short distillation runs (GPU when present, CPU otherwise), watch them live, cancel them.",
    ),
    PageInfo(
        "pages/compare_runs.py",
        "Compare runs",
        ":material/stacked_line_chart:",
        "compare",
        "Overlay loss and accuracy curves, final metrics and config differences, with the reference runs.",
    ),
    PageInfo(
        "pages/error_analysis.py",
        "Error analysis",
        ":material/rule:",
        "errors",
        "Which examples the student gets wrong and the teacher right: the 2×2 matrix, slices, notes and tags.",
    ),
]
