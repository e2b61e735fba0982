"""`pip install .` (not -e) installs every module: setup.py finds packages by their __init__.py, so a folder of
modules without one is left out of a plain install and its import fails only there (pipeline/plane/ once did)."""

from pathlib import Path

from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[1]


def test_every_folder_of_modules_is_a_package_setup_py_finds():
    found = set(find_packages(where=str(ROOT), include=["pipeline", "pipeline.*", "transforms", "transforms.*"]))
    folders = {
        ".".join(path.parent.relative_to(ROOT).parts)
        for top in ("pipeline", "transforms")
        for path in (ROOT / top).rglob("*.py")
    }
    assert folders - found == set()
