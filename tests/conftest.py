"""Shared fixtures: a small embedded dataset written once per test session.

Run everything with `python -m pytest -q` from the repository root (slow tests: `-m slow`)."""
import atexit
import os
import shutil
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
# the datasets' stores (data.stored) of this session, and of the scripts it runs, in a folder of its own
os.environ["NERM_STORE"] = tempfile.mkdtemp(prefix="nerm_store_")
atexit.register(shutil.rmtree, os.environ["NERM_STORE"], True)

import synthetic  # noqa: E402


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory):
    """60 generated sequences in the HumanML3D layout (+ meta.csv)."""
    out = str(tmp_path_factory.mktemp("data") / "synthetic")
    synthetic.write_dataset(out, num=60, seed=0)
    return out
