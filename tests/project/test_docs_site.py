"""The documentation: the MkDocs site under docs/ builds with --strict, and README.md stays a short front page that
carries the CI command (.ci/run's last line) exactly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README_MAX_BYTES = 15_000


def test_docs_site_builds_strict(tmp_path: Path) -> None:
    # --strict turns every warning into a failure: a page missing from nav, a broken link or anchor.
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stderr}\n{result.stdout}"
    assert (tmp_path / "site" / "index.html").is_file()


def test_readme_is_short_and_carries_the_ci_command() -> None:
    readme = (ROOT / "README.md").read_bytes()
    assert len(readme) <= README_MAX_BYTES, f"README.md is {len(readme)} bytes, over {README_MAX_BYTES}"
    lines = [line for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines() if line.strip()]
    command = lines[-1]
    assert command in readme.decode("utf-8"), f"README.md lacks .ci/run's command verbatim: {command}"


def test_readme_links_point_at_files_that_exist() -> None:
    """README is read outside the site (on a forge, in an editor), so the strict build does not check its links."""
    import re

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = [t for t in re.findall(r"\]\(([^)\s]+)\)", text) if not t.startswith(("http://", "https://", "#"))]
    assert targets, "README links into docs/"
    missing = [t for t in targets if not (ROOT / t.split("#", 1)[0]).exists()]
    assert not missing, missing
