"""The README's file table against the files (its line counts are approximate, "~N", so they need no update per
commit, but a file that grew or shrank by more than 15% fails here), and checkpoints of retired experiments:
python -m pytest -q tests/test_docs.py"""
import os
import re

import pytest
import torch

import checkpoint
import nerm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme_counts():
    """{file: approximate lines} from the README's file table rows '| `a.py`, `b.py` | ~N, ~M | ... |'."""
    out = {}
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        for line in f:
            cells = [c.strip() for c in line.split("|")]
            if len(cells) > 3 and cells[1].startswith("`") and cells[2].startswith("~"):
                names = re.findall(r"`([^`]+\.py)`", cells[1])
                counts = [int(n.replace(",", "")) for n in re.findall(r"~([\d,]+)", cells[2])]
                assert len(names) == len(counts), line
                out.update(zip(names, counts))
    return out


def test_readme_line_counts_are_within_15_percent():
    counts = readme_counts()
    assert {"nerm.py", "data.py", "motion.py", "metrics.py", "train_inr.py", "sample.py", "eval.py"} <= set(counts)
    listed = {f for f in os.listdir(ROOT) if f.endswith(".py")}
    assert set(counts) == listed, "every top-level .py file is in the README's table, and only those"
    for name, n in counts.items():
        with open(os.path.join(ROOT, name), encoding="utf-8") as f:
            real = sum(1 for _ in f)
        assert abs(real - n) <= 0.15 * real, f"README says {name} has ~{n} lines; it has {real}"
        assert real <= 700, f"{name}: {real} lines (no source file over 700)"


def small_payload(**retired):
    cfg = nerm.INRConfig(feature_dim=5, latent_dim=4, hidden=8, n_blocks=1)
    dec = nerm.INRDecoder(cfg)
    args = {**vars(cfg), **retired}
    return {"model_args": args, "decoder": dec.state_dict(), "skeleton": None}, dec


@pytest.mark.parametrize("retired", [{}, {"integrated": False, "activation": "relu", "acc_weight": 0.0, "damp": 0.0}])
def test_a_checkpoint_with_retired_settings_off_loads_as_the_same_model(retired):
    payload, dec = small_payload(**retired)
    loaded = checkpoint.load_decoder(payload)
    z, t, dur, fps = torch.randn(2, 4), torch.rand(2, 7), torch.ones(2), torch.tensor([20.0, 120.0])
    with torch.no_grad():
        assert torch.equal(loaded(z, t, dur, fps), dec.eval()(z, t, dur, fps))


def test_a_checkpoint_from_before_the_gate_loads_as_the_papers_relu_decoder():
    cfg = nerm.INRConfig(feature_dim=5, latent_dim=4, hidden=8, n_blocks=1, gated=False)
    dec = nerm.INRDecoder(cfg).eval()
    args = {k: v for k, v in vars(cfg).items() if k != "gated"}
    loaded = checkpoint.load_decoder({"model_args": args, "decoder": dec.state_dict(), "skeleton": None})
    z, t, dur, fps = torch.randn(2, 4), torch.rand(2, 7), torch.ones(2), torch.tensor([20.0, 120.0])
    with torch.no_grad():
        assert not loaded.cfg.gated and torch.equal(loaded(z, t, dur, fps), dec(z, t, dur, fps))


@pytest.mark.parametrize("setting", [{"integrated": True}, {"activation": "silu"}, {"acc_weight": 0.5}])
def test_a_checkpoint_that_used_a_retired_experiment_is_refused_by_name(setting):
    payload, _ = small_payload(**setting)
    name = next(iter(setting))
    with pytest.raises(checkpoint.CheckpointError, match=f"{name}=.*no longer has"):
        checkpoint.load_decoder(payload)


def test_no_script_imports_another_script():
    """The layers: a script (a file run as `python X.py`) imports only the base modules, never another script, and
    the base modules import no script (nanoGPT's scripts import only `model`)."""
    import ast
    mods = {f[:-3] for f in os.listdir(ROOT) if f.endswith(".py")}
    scripts = {m for m in mods if m != "nerm" and '__name__ == "__main__"' in open(os.path.join(ROOT, m + ".py")).read()}
    assert {"train_inr", "train_diffusion", "sample", "eval"} <= scripts
    for m in mods:
        tree = ast.parse(open(os.path.join(ROOT, m + ".py")).read())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not names & scripts, f"{m}.py imports the script(s) {sorted(names & scripts)}"
