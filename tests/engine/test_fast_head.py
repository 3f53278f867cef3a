import pytest
import torch
from torch import nn

from specd.daemon.engine.runners.fast_head import OneDnnLinear

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="oneDNN not built in")


@pytest.mark.parametrize("shape", [(1, 1, 64), (1, 4, 64), (1, 9, 64), (2, 3, 64)])
@pytest.mark.parametrize("bias", [False, True])
def test_onednn_head_matches_linear(shape, bias):
    torch.manual_seed(0)
    linear = nn.Linear(64, 1000, bias=bias)
    fast = OneDnnLinear(linear)
    x = torch.randn(*shape)
    with torch.inference_mode():
        expected, got = linear(x), fast(x)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-4)
    assert torch.equal(got.argmax(-1), expected.argmax(-1))
    assert fast.weight is linear.weight  # tied embeddings stay tied


def test_other_dtypes_use_the_plain_path():
    linear = nn.Linear(8, 16).to(torch.bfloat16)
    fast = OneDnnLinear(nn.Linear(8, 16))
    fast.weight, fast.bias = linear.weight, linear.bias
    x = torch.randn(2, 8, dtype=torch.bfloat16)
    with torch.inference_mode():
        assert torch.equal(fast(x), linear(x))


def test_few_rows_take_mkl_and_more_take_onednn(monkeypatch):
    fast = OneDnnLinear(nn.Linear(8, 16))
    calls = []
    original = torch._C._nn.mkldnn_linear
    monkeypatch.setattr(torch._C._nn, "mkldnn_linear", lambda *a: calls.append(1) or original(*a))
    with torch.inference_mode():
        fast(torch.randn(1, 3, 8))
        assert not calls
        fast(torch.randn(1, 4, 8))
        assert calls
