"""The compiled decoder (nerm.compile_decoder) matches eager and does not recompile for a new duration or fps.

    python -m pytest -q -m slow tests/test_compile.py   # marked slow: compiles 4 small graphs, 8-16 s on 2 CPU cores
"""
import pytest
import torch

import nerm


@pytest.mark.slow
def test_compiled_decoder_matches_eager_and_keeps_its_graphs():
    torch.manual_seed(0)
    cfg = nerm.INRConfig(feature_dim=5, num_sequences=2, latent_dim=8, hidden=32, n_blocks=1)
    dec = nerm.INRDecoder(cfg).eval()
    compiled = nerm.compile_decoder(dec)
    with torch.no_grad():
        for chunk, row in ((256, 64), (512, 128)):
            # 2 sequences of 300 frames: 10 rows of 64 (groups 4 + 4 + 2) or 6 rows of 128 (4 + 2)
            z, t, fps = torch.randn(2, 8), torch.rand(2, 300), torch.tensor([20.0, 120.0])
            before = compiled.compiles
            out = nerm.decode(compiled, z, t, fps, chunk=chunk, row=row)
            assert out.shape == (2, 300, 5)
            torch.testing.assert_close(out, dec(z, t, fps), atol=1e-5, rtol=1e-5)
            assert compiled.compiles - before == 2  # the groups of 4 rows and of 2 rows
            # another duration, batch and framerate falling on the same groups: no new graph
            z, t, fps = torch.randn(1, 8), torch.rand(1, 4 * row - 7), torch.tensor([240.0])
            torch.testing.assert_close(nerm.decode(compiled, z, t, fps, chunk=chunk, row=row), dec(z, t, fps),
                                       atol=1e-5, rtol=1e-5)
            assert compiled.compiles - before == 2
