"""The app's pages, in menu order. A new workflow page is one line here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PageInfo:
    path: str  # relative to the repository root
    title: str
    icon: str
    summary: str

    @property
    def url_path(self) -> str:
        """The file's name, as the title reads (`/error_analysis`): the name Streamlit gives a file of pages/ in a
        fresh server's first session, before app.py has declared the navigation (see `run_under_app`). Any other
        path showed "Page not found" over the page when that first request was a deep link."""
        return self.path.removeprefix("pages/").removesuffix(".py")


def run_under_app() -> None:
    """The first line of every page. A fresh server's first session (and every AppTest run) starts in Streamlit's
    older multipage mode, which stays on until some script declares `st.navigation`: a deep link's page file runs
    by itself, found in pages/, without app.py (no sidebar selection, a bare menu). Here app.py runs instead, in
    this same script run (so a click's value is not lost): its navigation finds this page by the same name and
    runs it; then this run stops."""
    import runpy
    from pathlib import Path

    import streamlit as st
    from streamlit.runtime.pages_manager import PagesManager

    if getattr(PagesManager, "uses_pages_directory", False):
        PagesManager.uses_pages_directory = False  # what st.navigation itself sets on its first call
        from kd_analysis.locations import app_root

        root = app_root()  # the checkout, or the installed copy of the app
        runpy.run_path(str((root or Path(__file__).resolve().parent.parent) / "app.py"), run_name="__main__")
        st.stop()


WORKFLOW_PAGES = [
    PageInfo(
        "pages/summary.py",
        "Summary",
        ":material/auto_stories:",
        "The demo's story in five minutes: size and speed, whether distillation works (with intervals), what "
        "the losses do, what the teacher looks at, priming.",
    ),
    PageInfo(
        "pages/models_and_data.py",
        "Models & data",
        ":material/deployed_code:",
        "Load checkpoints (built-in, folder, hub id), see their architecture and the pair check, validate data.",
    ),
    PageInfo(
        "pages/loss_explorer.py",
        "Loss explorer",
        ":material/compare_arrows:",
        "KL, reverse KL, JS, TVD, skew KL, AKL, α-β, generalised JSD, TAID, ULD and SinKD's Sinkhorn: a toy, your "
        "own pair, transport plans.",
    ),
    PageInfo(
        "pages/saliency_rationales.py",
        "Saliency rationales",
        ":material/highlight:",
        "The teacher's attributions as rationales: token heatmaps, overlap with the gold answer, teacher vs student.",
    ),
    PageInfo(
        "pages/priming_attention.py",
        "Priming & attention",
        ":material/psychology:",
        "The teacher under prompting strategies, one LoRA student per strategy, and their attention heads.",
    ),
    PageInfo(
        "pages/distillation_runs.py",
        "Distillation runs",
        ":material/model_training:",
        "Start short distillation runs (GPU when present, CPU otherwise), watch them live, cancel them.",
    ),
    PageInfo(
        "pages/compare_runs.py",
        "Compare runs",
        ":material/stacked_line_chart:",
        "Overlay loss and accuracy curves, final metrics and config differences, with the reference runs.",
    ),
    PageInfo(
        "pages/error_analysis.py",
        "Error analysis",
        ":material/rule:",
        "Which examples the student gets wrong and the teacher right: the 2×2 matrix, slices, notes and tags.",
    ),
]
