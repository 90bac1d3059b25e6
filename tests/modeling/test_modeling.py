"""The speed-motivated reformulations compute what the plain layers compute."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from napari_sam2.engine.precision import autocast, resolve_dtype
from napari_sam2.errors import InputError
from napari_sam2.modeling import hiera
from napari_sam2.modeling.common import by_row_chunks
from napari_sam2.modeling.config import HieraConfig
from napari_sam2.modeling.hiera import Hiera, MultiScaleBlock, run_in_strips
from napari_sam2.modeling.mask_decoder import MaskDecoder, upsample2x2
from napari_sam2.modeling.position_encoding import apply_rope, rope_rotations


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize(
    ("dim", "dim_out", "window", "pool", "hw"),
    [
        (16, 16, 8, False, (40, 48)),  # strips of 8 rows, whole windows
        (16, 32, 8, True, (40, 48)),  # the stage-change block pools queries
        (16, 16, 6, False, (38, 50)),  # padding in the last strip and column
        (16, 32, 4, True, (36, 28)),
    ],
)
def test_strips_equal_whole_block(monkeypatch, dim, dim_out, window, pool, hw):
    block = MultiScaleBlock(dim, dim_out, 2, window, pool).eval()
    x = torch.randn(2, *hw, dim)
    monkeypatch.setattr(hiera, "STRIP_TOKENS", 2 * hw[1] * window)  # several strips
    with torch.inference_mode():
        whole = block(x)
        strips = run_in_strips(block, x)
    assert strips.shape == whole.shape
    torch.testing.assert_close(strips, whole, rtol=1e-5, atol=1e-5)


def test_strips_used_in_trunk(monkeypatch):
    cfg = HieraConfig(embed_dim=16, num_heads=1, stages=(1, 2, 2, 1), global_att_blocks=(3,))
    trunk = Hiera(cfg).eval()
    image = torch.randn(1, 3, 256, 256)
    calls = []
    original = MultiScaleBlock.forward

    def spy(self, x):
        calls.append(x.shape[1])
        return original(self, x)

    with torch.inference_mode():
        monkeypatch.setattr(hiera, "STRIP_TOKENS", 10**9)
        whole = trunk(image)
        monkeypatch.setattr(hiera, "STRIP_TOKENS", 512)
        monkeypatch.setattr(MultiScaleBlock, "forward", spy)
        strips = trunk(image)
    assert min(calls) < 64  # some block really ran on strips of the 64x64 first stage
    for a, b in zip(whole, strips):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(2, 37, 8), (6, 7, 8), (3, 2, 5, 8)])
def test_row_chunks_equal_whole(shape):
    """Chunks run over all rows, the batch's included (6 x 7 rows: 5 chunks of 10)."""
    mlp = nn.Sequential(nn.LayerNorm(8), nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 8))
    x = torch.randn(*shape)
    calls = []
    got = by_row_chunks(lambda t: calls.append(t.shape[0]) or mlp(t), x, 10)
    torch.testing.assert_close(got, mlp(x))
    assert got.shape == x.shape
    assert max(calls) <= 10


@pytest.mark.parametrize("batch", [1, 3])
def test_upsample2x2_is_the_transposed_convolution(batch):
    conv = nn.ConvTranspose2d(12, 5, kernel_size=2, stride=2)
    x = torch.randn(batch, 12, 7, 9)
    expected = conv(x).permute(0, 2, 3, 1)
    torch.testing.assert_close(upsample2x2(x.permute(0, 2, 3, 1), conv), expected)


def _plain_masks(dec: MaskDecoder, src, high_res, hyper):
    """The decoder's upscaling written with the stock layers (NCHW)."""
    dc1, ln1, act1, dc2, act2 = dec.output_upscaling
    feat_s0, feat_s1 = high_res
    x = act1(ln1(dc1(src) + feat_s1))
    up = act2(dc2(x) + feat_s0)
    b, c, h, w = up.shape
    return (hyper @ up.reshape(b, c, h * w)).reshape(b, -1, h, w)


@pytest.mark.parametrize(("batch", "feat_batch", "side"), [(1, 1, 16), (3, 1, 12), (2, 2, 10)])
def test_strip_upscaling_equals_plain_layers(monkeypatch, batch, feat_batch, side):
    from napari_sam2.modeling import mask_decoder

    monkeypatch.setattr(mask_decoder, "STRIP_PIXELS", 3 * 2 * side)  # uneven last strip
    dec = MaskDecoder(dim=32).eval()
    src = torch.randn(batch, 32, side, side)
    high_res = (
        torch.randn(feat_batch, 4, 4 * side, 4 * side),
        torch.randn(feat_batch, 8, 2 * side, 2 * side),
    )
    hyper = torch.randn(batch, 4, 4)
    with torch.inference_mode():
        got = dec._masks(src.permute(0, 2, 3, 1), high_res, hyper)
        want = _plain_masks(dec, src, high_res, hyper)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_rope_rotations_match_real_formula():
    side, dim = 5, 16
    rot = rope_rotations(dim, side)
    x = torch.randn(2, 1, side * side, dim)
    cos, sin = rot.real, rot.imag
    even, odd = x[..., 0::2], x[..., 1::2]
    want = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1).flatten(-2)
    torch.testing.assert_close(apply_rope(x, rot), want)
    # in place into a slice, as the memory keys are rotated
    y = x.clone()
    apply_rope(y[:, :, :10], rot[:10], out=y[:, :, :10])
    torch.testing.assert_close(y[:, :, :10], want[:, :, :10])
    torch.testing.assert_close(y[:, :, 10:], x[:, :, 10:])


def test_resolve_dtype():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_dtype(None, cpu) == torch.float32
    assert resolve_dtype(None, cuda) == torch.bfloat16
    assert resolve_dtype("float32", cuda) == torch.float32
    assert resolve_dtype("bfloat16", cuda) == torch.bfloat16
    with pytest.raises(InputError, match="^dtype: must be one of"):
        resolve_dtype("float16", cpu)


def test_bf16_on_cpu_follows_the_hardware(monkeypatch):
    from napari_sam2.engine import precision

    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    with pytest.raises(InputError, match="^dtype: 'bfloat16' needs a CPU with bf16"):
        resolve_dtype("bfloat16", torch.device("cpu"))
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    assert resolve_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16
    with autocast(torch.device("cpu"), torch.bfloat16):
        assert (torch.randn(4, 4) @ torch.randn(4, 4)).dtype == torch.bfloat16
    with autocast(torch.device("cpu"), torch.float32):
        assert (torch.randn(4, 4) @ torch.randn(4, 4)).dtype == torch.float32


def test_attention_unchanged_by_in_place_rope():
    """RoPE attention with pointer tokens equals rotating a copy and concatenating."""
    from napari_sam2.modeling.transformer import RoPEAttention

    attn = RoPEAttention(32, num_heads=1, kv_in_dim=8).eval()
    side, frames, ptrs = 4, 3, 5
    q = torch.randn(2, side * side, 32)
    mem = torch.randn(2, frames * side * side + ptrs, 8)
    with torch.inference_mode():
        got = attn(q, mem, mem, num_k_exclude_rope=ptrs)
        rot = rope_rotations(32, side)
        qh = apply_rope(attn.q_proj(q)[:, None], rot)
        k = attn.k_proj(mem)[:, None]
        n = frames * side * side
        kh = torch.cat([apply_rope(k[:, :, :n], rot.repeat(frames, 1)), k[:, :, n:]], dim=2)
        out = F.scaled_dot_product_attention(qh, kh, attn.v_proj(mem)[:, None])
        want = attn.out_proj(out[:, 0])
    torch.testing.assert_close(got, want)


def test_position_embedding_cache_follows_the_weights():
    cfg = HieraConfig(embed_dim=16, num_heads=1, stages=(1, 1, 1, 1), global_att_blocks=(2,))
    trunk = Hiera(cfg).eval()
    with torch.inference_mode():
        first = trunk.position_embedding(32, 32)
        assert trunk.position_embedding(32, 32) is first  # cached
        assert trunk.position_embedding(16, 16).shape == (1, 16, 16, 16)
    state = trunk.state_dict()
    state["pos_embed"] = torch.randn_like(state["pos_embed"])
    trunk.load_state_dict(state)
    with torch.inference_mode():
        reloaded = trunk.position_embedding(32, 32)
    assert not torch.equal(reloaded, first)
    want = F.interpolate(trunk.pos_embed, size=(32, 32), mode="bicubic")
    want = (want + trunk.pos_embed_window.tile(1, 1, 4, 4)).permute(0, 2, 3, 1)
    torch.testing.assert_close(reloaded, want)
    assert trunk.position_embedding(32, 32).requires_grad  # training is not cached


@pytest.mark.parametrize(
    ("batch", "nq", "nk"), [(1, 6, 300), (3, 7, 300), (1, 300, 6), (2, 300, 7)]
)
def test_few_token_attention_equals_plain_attention(monkeypatch, batch, nq, nk):
    """The decoder's prompt-token <-> image attentions, with projections folded."""
    from napari_sam2.modeling.transformer import Attention

    attn = Attention(256, 8, downsample_rate=2).eval()  # as in the mask decoder
    for p in attn.parameters():
        nn.init.normal_(p, std=0.05)  # non-zero biases: their folding is checked too
    q, k, v = torch.randn(batch, nq, 256), torch.randn(batch, nk, 256), torch.randn(batch, nk, 256)
    with torch.inference_mode():
        heads = attn._heads
        plain = attn._attend(heads(attn.q_proj(q)), heads(attn.k_proj(k)), heads(attn.v_proj(v)))
        monkeypatch.setattr(attn, "_attend", None)  # forward must take a folded path
        folded = attn(q, k, v)
    torch.testing.assert_close(folded, plain, rtol=1e-4, atol=1e-5)


def test_pointer_offsets_per_object_equal_separate_calls():
    """A batch whose object pointers have different temporal offsets ((B,) tensors)
    conditions each object exactly as a call with that object alone (int offsets)."""
    from napari_sam2.modeling.sam2 import MemoryContext, Sam2Model
    from small_models import TINY

    model = Sam2Model(TINY).eval()
    # Random weights leave the pointer encoding nearly flat; make it matter.
    with torch.no_grad():
        model.obj_ptr_tpos_proj.weight.mul_(50.0)
    cfg, s = TINY, TINY.image_size // 16
    feat = torch.randn(2, cfg.d_model, s, s)
    pos = torch.randn(1, cfg.d_model, s, s)
    mems = torch.randn(2, cfg.mem_dim, s, s)
    ptrs = [torch.randn(2, cfg.d_model) for _ in range(3)]
    offsets = [(1, 4), (2, 2), (9, 3)]  # per pointer: object 0's offset, object 1's

    def ctx(i, offs):
        sl = slice(i, i + 1) if i is not None else slice(None)
        return MemoryContext([(0, mems[sl])], [(o, p[sl]) for o, p in zip(offs, ptrs)], 8)

    with torch.inference_mode():
        batch = model.condition_on_memory(feat, pos, ctx(None, [torch.tensor(o) for o in offsets]))
        alone = [
            model.condition_on_memory(feat[i : i + 1], pos, ctx(i, [o[i] for o in offsets]))
            for i in (0, 1)
        ]
        swapped = model.condition_on_memory(feat[:1], pos, ctx(0, [o[1] for o in offsets]))
    torch.testing.assert_close(batch, torch.cat(alone), atol=1e-5, rtol=0)
    assert (swapped - alone[0]).abs().max() > 1e-3  # the offsets do matter
