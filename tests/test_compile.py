"""nerm.decode through the compiled decoder (nerm.compile_decoder) matches the decoder's own forward, and a new
duration, fps or batch does not recompile.

    python -m pytest -q -m slow tests/test_compile.py   # marked slow: compiles 4 small graphs per decoder, 16-32 s on 2 CPU cores
"""
import pytest
import torch

import nerm


def reference(dec, z, fps, seconds):
    """The decoder called once on every frame k / fps of each motion, de-normalized: what decode must equal."""
    T = nerm.num_frames(fps, seconds)
    t = (torch.arange(T, dtype=torch.float64) / fps).float().expand(len(z), T)   # (B, T) seconds
    x = dec(z, t, torch.full((len(z),), float(seconds)), torch.full((len(z),), float(fps)))
    return x * dec.std + dec.mean


@pytest.mark.slow
@pytest.mark.parametrize("gated", [False, True])
def test_compiled_decoder_matches_eager_and_keeps_its_graphs(gated):
    torch.manual_seed(0)
    cfg = nerm.INRConfig(feature_dim=5, num_sequences=2, latent_dim=8, hidden=32, n_blocks=1, gated=gated)
    dec = nerm.INRDecoder(cfg).eval()
    dec.mean.copy_(torch.randn(5))
    dec.std.copy_(torch.rand(5) + 0.5)
    compiled = nerm.compile_decoder(dec)
    with torch.no_grad():
        for chunk, row in ((256, 64), (512, 128)):
            # 2 motions of 300 frames (18.6875 s at 16 fps): 10 rows of 64 (groups 4 + 4 + 2) or 6 rows of 128 (4 + 2);
            # the durations are binary fractions, so no frame count hangs on float32 rounding
            z, fps, seconds = torch.randn(2, 8), 16.0, 299 / 16
            before = compiled.compiles
            out = nerm.decode(compiled, z, fps, seconds, chunk=chunk, row=row)
            assert out.shape == (2, 300, 5)
            torch.testing.assert_close(out, reference(dec, z, fps, seconds), atol=1e-5, rtol=1e-5)
            assert compiled.compiles - before == 2  # the groups of 4 rows and of 2 rows
            # another duration, batch and framerate falling on the same groups (4 rows): no new graph
            z, fps, seconds = torch.randn(1, 8), 256.0, (4 * row - 8) / 256.0
            out = nerm.decode(compiled, z, fps, seconds, chunk=chunk, row=row)
            assert out.shape == (1, 4 * row - 7, 5)
            torch.testing.assert_close(out, reference(dec, z, fps, seconds), atol=1e-5, rtol=1e-5)
            assert compiled.compiles - before == 2
