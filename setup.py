"""Only what pyproject.toml cannot say: the app's files and the shipped reference runs go into the wheel as data
(`<prefix>/share/kd-lens/`), so `kd-lens app` starts from a plain `pip install .` too."""

from pathlib import Path

from setuptools import setup

HERE = Path(__file__).parent
SHARE = "share/kd-lens"


def _tree(folder: str) -> list[tuple[str, list[str]]]:
    """(install folder, files) for every folder below `folder` that holds tracked-looking files."""
    out: dict[str, list[str]] = {}
    for path in sorted((HERE / folder).rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and not path.name.endswith((".pyc", ".new")):
            rel = path.relative_to(HERE)
            out.setdefault(f"{SHARE}/{rel.parent.as_posix()}", []).append(rel.as_posix())
    return sorted(out.items())


def _shipped(folder: str) -> bool:
    """The reference runs as git ships them: their files, and checkpoints only of the teachers (other runs' weights
    may sit in a working copy, ignored by git)."""
    parts = folder.split("/")[2:]  # below share/kd-lens
    if parts == ["cached_runs"]:
        return True
    if len(parts) < 2 or not parts[1].startswith("reference-") or parts[1].endswith(".new"):
        return False
    return "checkpoint" not in parts[2:] or parts[1].endswith("-teacher")


setup(
    data_files=[(SHARE, ["app.py"]), (f"{SHARE}/.streamlit", [".streamlit/config.toml"])]
    + _tree("pages")
    + [(d, f) for d, f in _tree("cached_runs") if _shipped(d)]
)
