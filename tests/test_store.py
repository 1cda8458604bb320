"""The on-disk store every loader reads through (data.stored): python -m pytest -q tests/test_store.py"""
import os
import shutil

import numpy as np
import pytest
import torch

import data
import guard
from motion import SMPL22


@pytest.fixture()
def dataset(small_dataset, tmp_path, monkeypatch):
    """A private copy of the small embedded dataset and a private store folder."""
    d = tmp_path / "synthetic"
    shutil.copytree(small_dataset, d)
    monkeypatch.setattr(data, "STORE", str(tmp_path / "store"))
    yield d
    guard.reset()


def in_memory(d, split, fps_mode="native"):
    """The split as the loader's items would give it without a store: the reference."""
    seqs, _ = data._layout_files("synthetic", str(d), split)
    return data.motion_set(data._layout_items("synthetic", str(d), split, SMPL22, seqs), SMPL22, fps_mode)


def snapshot(d):
    return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("fps_mode", ["native", "fixed"])
def test_a_stored_split_is_the_split_and_the_source_is_untouched(dataset, fps_mode, capsys):
    before = snapshot(dataset)
    ms, ref = data.load_dataset("synthetic", str(dataset), "train", fps_mode), in_memory(dataset, "train", fps_mode)
    assert "stored" in capsys.readouterr().out
    assert ms.names == ref.names and ms.captions == ref.captions and ms.actions == ref.actions
    np.testing.assert_array_equal(ms.fps, ref.fps)
    for x, y in zip(ms.features, ref.features):
        assert isinstance(x, np.memmap) and x.dtype == np.float32
        np.testing.assert_array_equal(x, y.astype(np.float32))
    for i in (0, 3, len(ms) - 1):                          # the sampler's reads: one pread, the same rows
        np.testing.assert_array_equal(ms.rows(i, 2, 9), ref.features[i][2:9].astype(np.float32))
    assert snapshot(dataset) == before                    # the source is read, never written
    again = data.load_dataset("synthetic", str(dataset), "train", fps_mode)
    assert "stored" not in capsys.readouterr().out and again.names == ms.names   # built once


def test_statistics_are_merged_one_sequence_at_a_time():
    rng = np.random.default_rng(0)
    xs = [rng.normal(k, 1 + k, size=(n, 5)) for k, n in enumerate((1, 7, 300, 2))]
    m = data.Moments(5)
    for x in xs:
        m.add(x)
    allx = np.concatenate(xs)
    np.testing.assert_allclose(m.mean, allx.mean(0), rtol=1e-12)
    np.testing.assert_allclose(m.std(), allx.std(0), rtol=1e-12)


def test_a_changed_source_rebuilds_the_store(dataset, capsys):
    ms = data.load_dataset("synthetic", str(dataset), "train")
    sid = ms.names[0]
    path = dataset / "new_joint_vecs" / f"{sid}.npy"
    np.save(path, np.load(path)[:-5])                     # a sequence cut short
    capsys.readouterr()
    again = data.load_dataset("synthetic", str(dataset), "train")
    assert "stored" in capsys.readouterr().out
    assert len(again.features[0]) == len(ms.features[0]) - 5 and data.fingerprint(again) != data.fingerprint(ms)


@pytest.mark.parametrize("damage", ["truncated", "a row changed", "index garbled", "index gone"])
def test_a_damaged_store_is_rebuilt_not_read(dataset, damage, capsys):
    ms = data.load_dataset("synthetic", str(dataset), "train")
    folder = os.path.dirname(ms.store.path)
    feats, index = os.path.join(folder, "features.f32"), os.path.join(folder, "index.json")
    first = np.array(ms.features[0][:2])
    del ms
    if damage == "truncated":
        with open(feats, "r+b") as f:
            f.truncate(os.path.getsize(feats) - 4)
    elif damage == "a row changed":                    # row 0 is one of the 64 sampled rows
        with open(feats, "r+b") as f:
            f.write(np.full(3, 1e6, np.float32).tobytes())
    elif damage == "index garbled":
        with open(index, "w") as f:
            f.write('{"version": 1, "names": [')
    else:
        os.unlink(index)
    capsys.readouterr()
    again = data.load_dataset("synthetic", str(dataset), "train")
    assert "stored" in capsys.readouterr().out
    np.testing.assert_array_equal(again.features[0][:2], first)


def test_a_half_written_store_of_a_killed_run_is_never_read(dataset, tmp_path):
    """A build killed before its rename leaves only a temp folder beside the store's: the next load builds the
    store whole (and removes the debris)."""
    ms = data.load_dataset("synthetic", str(dataset), "train")
    folder = os.path.dirname(ms.store.path)
    guard.reset()
    dead = tmp_path / "store" / f".nerm-tmp-999999999-ab-{os.path.basename(folder)}"
    shutil.copytree(folder, dead)
    shutil.rmtree(folder)
    again = data.load_dataset("synthetic", str(dataset), "train")
    assert again.names == ms.names and not dead.exists()


def test_the_sampler_reads_the_store_as_it_reads_memory(dataset):
    """Clips drawn through the store equal clips drawn from the same sequences in memory, normalized per
    batch with the train statistics; the sampler holds no copy of the data."""
    ms = data.load_dataset("synthetic", str(dataset), "train")
    ref = in_memory(dataset, "train")
    a, b = data.ClipSampler(ms, ms.mean, ms.std), data.ClipSampler(ref, ms.mean, ms.std)
    idx = torch.arange(len(ms))
    xa, ta, sa, _ = a.sample(idx, 16, generator=torch.Generator().manual_seed(1))
    xb, tb, sb, _ = b.sample(idx, 16, generator=torch.Generator().manual_seed(1))
    assert torch.equal(ta, tb) and torch.equal(sa, sb) and torch.equal(xa, xb)
    # every clip's normalized frames, against the arithmetic written out (some clips start at rest: all of them)
    for i in range(len(ms)):
        frames = (ta[i].double() * ms.fps[i]).round().long().numpy()
        want = (ref.features[i][frames] - ms.mean) / ms.std
        np.testing.assert_allclose(xa[i].numpy(), want, rtol=1e-5, atol=1e-5)
    held = [v for v in vars(a).values() if isinstance(v, (np.ndarray, torch.Tensor))]
    assert sum(v.nbytes for v in held) < 100_000          # lengths, rates, statistics: no frames


def test_two_runs_on_one_split_share_its_store(dataset, capsys):
    """A second run that needs a store while another run builds it waits for that build and reads its result (it
    neither fails with "another run is writing" nor builds a second copy), and the claim ends with the build:
    a third run then claims the store at once."""
    import subprocess
    import sys
    import time
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = ("import sys, time, data\n"
            f"data.STORE = {data.STORE!r}\n"
            "build = data._build\n"
            "def slow(*a):\n"
            "    print('building', flush=True); time.sleep(2.0); build(*a)\n"
            "data._build = slow\n"
            f"data.load_dataset('synthetic', {str(dataset)!r}, 'train')\n"
            "print('built', flush=True); time.sleep(1.0)\n")
    other = subprocess.Popen([sys.executable, "-c", code], cwd=root, stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "building"
        t0 = time.time()
        ms = data.load_dataset("synthetic", str(dataset), "train")
        waited = time.time() - t0
    finally:
        rest = other.communicate(timeout=60)[0]
    assert other.returncode == 0 and "built" in rest and waited > 1.0 and len(ms) == len(in_memory(dataset, "train"))
    assert "stored" not in capsys.readouterr().out                     # read the other run's store, built once
    folder = os.path.dirname(ms.store.path)
    assert folder not in guard._claims                                  # released after use
