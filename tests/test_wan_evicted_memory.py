"""The small strategies behind reward-forcing and longlive-rag, each against a hand computation:
the EMA sink, the host store and its byte count, cosine top-K, the retrieval encoder's loader,
and the two memories' bookkeeping (what is held where, what a block attends)."""

from __future__ import annotations

import pytest
import torch

from magbench.baselines.wan.evicted_memory import EMASinkWindow, HostRetrievalWindow
from magbench.baselines.wan.memory import EMASink, HostFrameStore, cosine_top_k
from magbench.baselines.wan.model import Rope3D
from magbench.baselines.wan.retrieval import RetrievalEncoder, RetrievalEncoderConfig, load_retrieval_encoder
from magbench.errors import MagbenchError

FT, H, D = 2, 1, 4  # tokens per frame, heads, head dim


def _frames(n: int, seed: int) -> torch.Tensor:
    return torch.randn(1, n * FT, H, D, generator=torch.Generator().manual_seed(seed))


def test_ema_sink_blends_an_evicted_block_of_the_sinks_length_frame_by_frame():
    sink, evicted = _frames(3, 0), _frames(3, 1)
    expected = 0.9 * sink + 0.1 * evicted
    EMASink(0.9).absorb(sink, evicted, 3, 3, FT)
    torch.testing.assert_close(sink, expected)


def test_ema_sink_of_another_length_overwrites_the_first_sink_frames_as_the_reference():
    sink, evicted = _frames(3, 0), _frames(1, 1)
    before = sink.clone()
    EMASink(0.9).absorb(sink, evicted, 3, 1, FT)
    assert torch.equal(sink[:, :FT], evicted) and torch.equal(sink[:, FT:], before[:, FT:])


def test_ema_sink_alpha_out_of_range_is_refused():
    with pytest.raises(MagbenchError, match="alpha"):
        EMASink(1.5)


def test_host_store_keeps_frames_in_eviction_order_and_counts_their_bytes():
    store = HostFrameStore(num_layers=2)
    k, v = _frames(3, 2), _frames(3, 3)
    for layer in range(2):
        store.push(layer, k, v, FT)
    store.record([5, 6, 7])
    assert store.frames == [5, 6, 7] and len(store) == 3
    assert store.host_bytes() == 2 * 3 * 2 * FT * H * D * 4  # layers x frames x (K, V) x elements x fp32
    k[:] = 0  # host copies are copies
    out_k, out_v = torch.empty(1, 2 * FT, H, D), torch.empty(1, 2 * FT, H, D)
    store.gather(1, [2, 0], out_k, out_v)
    assert torch.equal(out_v[:, :FT], v[:, 2 * FT :]) and torch.equal(out_v[:, FT:], v[:, :FT])
    assert out_k.abs().sum() > 0


def test_cosine_top_k_picks_the_most_similar_by_hand():
    q = torch.tensor([[1.0, 0.0]])
    keys = torch.tensor([[[0.0, 1.0], [2.0, 0.1], [-1.0, 0.0], [1.0, 1.0]]])
    idx, sims = cosine_top_k(q, keys, 2)
    assert idx.tolist() == [[1, 3]]
    torch.testing.assert_close(sims, torch.tensor([[2.0 / (4.01**0.5 + 1e-8), 1 / (2**0.5 + 1e-8)]]))


def test_ema_sink_window_holds_the_sink_and_the_window_and_folds_evictions():
    mem = EMASinkWindow(1, window_frames=3, sink_frames=3, block_frames=3, sink_update=EMASink(0.5))
    mem.use_rope(Rope3D(D), (1, FT))  # as the model does before each pass
    ks = [_frames(3, 10 + b) for b in range(4)]
    for b, k in enumerate(ks):
        mem.begin(3 * b, 3, FT, commit=True)
        mem.attend(0, k, k, k)
        mem.after_attention(0)
        mem.end()
    # block 0 = sink; block 1 evicted on committing block 2 (sink absorbs it), block 2 on block 3.
    assert mem.kept_frames() == [0, 1, 2, 9, 10, 11]
    expected = 0.5 * (0.5 * ks[0] + 0.5 * ks[1]) + 0.5 * ks[2]
    torch.testing.assert_close(mem.layer_kv(0)[0][:, : 3 * FT], expected)
    assert mem.rope_frame(12, 3) == 6  # positions are the cache's slots: they never grow


def test_host_retrieval_window_evicts_to_host_and_retrieves_after_the_recency_guard():
    mem = HostRetrievalWindow(1, window_frames=2, sink_frames=1, memory_frames=2, recent_exclude=1, local_frames=3,
                              block_frames=1)
    mem.use_rope(Rope3D(D), (1, FT))
    for f in range(7):
        mem.add_descriptors(f, torch.tensor([[[float(f == 4), 1.0]]]))  # frame 4 stands out
        mem.begin(f, 1, FT, commit=True)
        k = _frames(1, 20 + f)
        mem.attend(0, k, k, k)
        mem.after_attention(0)
        mem.end()
    assert mem.kept_frames() == [0, 5, 6] and mem.host.frames == [1, 2, 3, 4]
    assert mem.candidates() == 4 - 1 - 1  # the latest commit's eviction and the guard left out
    mem.begin(7, 1, FT, commit=False)
    assert mem.selections[-1]["frames"] == [1, 2]  # frames 3, 4 not yet retrievable
    assert mem.host_bytes() == 4 * 2 * FT * H * D * 4


def _ae_checkpoint(tmp_path, cfg: RetrievalEncoderConfig):
    enc = RetrievalEncoder(cfg).init_random(3)
    model = {f"encoder.{k}": v for k, v in enc.state_dict().items()}
    model["decoder.fc.0.weight"] = torch.zeros(3, 3)  # the reference's decoder: not built here
    config = {"in_channels": cfg.in_channels, "hidden_dims": list(cfg.hidden_dims), "latent_dim": cfg.latent_dim,
              "spatial_h": 60, "spatial_w": 104, "lr": 3e-4, "tag": ""}
    torch.save({"epoch": 1, "model": model, "optimizer": {"state": {}, "param_groups": []}, "config": config}, tmp_path / "ae.pt")
    return enc


def test_retrieval_encoder_loads_the_references_checkpoint_layout(tmp_path):
    cfg = RetrievalEncoderConfig.tiny()
    enc = _ae_checkpoint(tmp_path, cfg)
    loaded = load_retrieval_encoder(tmp_path / "ae.pt")
    x = torch.randn(5, 16, 4, 6, generator=torch.Generator().manual_seed(0))
    z = loaded.encode(x)
    torch.testing.assert_close(z, enc.encode(x))
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(5))  # unit vectors: cosine retrieval


def test_a_checkpoint_that_is_not_an_autoencoders_is_refused(tmp_path):
    torch.save({"generator": {}}, tmp_path / "x.pt")
    with pytest.raises(MagbenchError, match="'model' and 'config'"):
        load_retrieval_encoder(tmp_path / "x.pt")
