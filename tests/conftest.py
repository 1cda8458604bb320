"""Shared fixtures: a small embedded dataset written once per test session.

Run everything with `python -m pytest -q` from the repository root (slow tests: `-m slow`)."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import synthetic  # noqa: E402


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory):
    """60 generated sequences in the HumanML3D layout (+ meta.csv)."""
    out = str(tmp_path_factory.mktemp("data") / "synthetic")
    synthetic.write_dataset(out, num=60, seed=0)
    return out
