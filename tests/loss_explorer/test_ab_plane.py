"""The α-β plane of the loss explorer: its named corners are the losses they name, on the toy too."""

from __future__ import annotations

from pathlib import Path

import pytest

from kd_analysis.exceptions import KDLensError
from kd_analysis.loss_explorer.ab_plane import NAMED_POINTS, fit_at, plane_grid
from kd_analysis.plots.losses import ab_plane

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("point,twin", [((1.0, 0.0), "kl"), ((0.0, 1.0), "rkl")])
def test_the_corners_fit_like_the_kls_they_are(point, twin):
    fits = fit_at(*point).result.fits
    ab, ref = fits["alpha_beta"], fits[twin]
    assert ab.mu == pytest.approx(ref.mu, abs=1e-6) and ab.sigma == pytest.approx(ref.sigma, abs=1e-6)
    assert ab.final_loss == pytest.approx(ref.final_loss, rel=1e-9)


def test_moving_through_the_plane_moves_the_fit():
    """Along α + β = 1 the fit leaves reverse KL's single mode at once: at (0, 1) almost no mass lies outside the
    teacher's main mode, from (¼, ¾) on the student spreads (more than forward KL's at (1, 0) does)."""
    outside = {a: fit_at(a, 1 - a).result.fits["alpha_beta"].outside_main for a in (0.0, 0.25, 1.0)}
    assert outside[0.0] < 0.01 and outside[0.25] > outside[1.0] > 0.3
    with pytest.raises(KDLensError, match="α and β must be in"):
        fit_at(2.5, 0.0)


def test_the_plane_chart_holds_every_named_point_on_its_grid():
    grid = plane_grid()
    assert len(grid) == 21 * 21 and all(p in grid for p in NAMED_POINTS.values())
    fig = ab_plane(grid, NAMED_POINTS, (0.3, 0.6))
    assert [tuple(c) for c in fig.data[0].customdata] == grid  # a click hands back its (α, β)
    assert list(fig.data[1].text) == [n.replace("&", "&amp;") for n in NAMED_POINTS]
    assert (fig.data[2].x[0], fig.data[2].y[0]) == (0.3, 0.6)


def test_the_explorer_fits_the_typed_point():
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.run()
    at.switch_page("pages/loss_explorer.py").run()
    assert not at.exception
    at.number_input(key="ab_alpha").set_value(1.0).run()
    at.number_input(key="ab_beta").set_value(0.0).run()
    assert not at.exception
    caption = next(c.value for c in at.caption if "At α 1, β 0" in c.value)
    kl = fit_at(1.0, 0.0).result.fits["alpha_beta"]
    assert f"{kl.outside_main:.0%} of the student's mass" in caption and "--param ab_alpha=1" in caption
