"""Parity of magbench's ``longlive-rag`` with the LongLive-RAG reference code.

The golden (``tests/data/golden/longlive_rag.safetensors``) was recorded by
``tests/golden/record_longlive_rag.py`` from qixinhu11/LongLive-RAG @ 973884a (its own pipeline
with the retrieval autoencoder's descriptors and top-K selection, scheduler, latent-memory model
and KV-cache code with the CPU pool; tiny random model and encoder, float32, CPU) with
``configs/causal_forcing_latentmem.yaml``'s settings (``local_attn_size: 12``, ``sink_size: 1``,
``memory_size: 6``, ``recent_exclude: 5``): 3 context blocks, 7 generated blocks; the cache
evicts 6 times and blocks 6 to 9 retrieve. The same inputs go through magbench's model, the
memory the ``longlive-rag`` method builds with its defaults, its retrieval sampler and encoder:
every denoising output must match to 1e-5 relative; so must every descriptor, the frames each
block retrieves, the host store's frames and the device cache at the end.

Negative controls: retrieval of the wrong K (the recency guard off; the reference's average-pool
descriptors instead of the encoder's), no retrieval, and a device cache one block shorter.
"""

from __future__ import annotations

import pytest
import torch

from golden.replay import TOLERANCE, golden, method_memory, rel_error, run_blocks, tiny_model, worst_error
from golden.tiny import FRAME_TOKENS, LATENT_SHAPE, digest

from magbench.baselines.wan.evicted_memory import HostRetrievalWindow
from magbench.baselines.wan.evicted_methods import _MeanPool
from magbench.baselines.wan.retrieval import RetrievalEncoder, RetrievalEncoderConfig
from magbench.baselines.wan.sampler import SELF_FORCING_SCHEDULE, RetrievalSampler


@pytest.fixture(scope="module")
def recording():
    t, meta = golden("longlive_rag")
    enc_state = {k[len("ae."):]: v for k, v in t.items() if k.startswith("ae.encoder.")}
    assert digest(enc_state) == meta["encoder_weights_sha256"]
    encoder = RetrievalEncoder(RetrievalEncoderConfig.tiny())
    encoder.load_state_dict({k[len("encoder."):]: v for k, v in enc_state.items()}, strict=True)
    return t, meta, tiny_model(meta), encoder.eval()


def _replay(recording, memory, encoder=None):
    t, meta, model, enc = recording
    sampler = RetrievalSampler(model, memory, enc if encoder is None else encoder, schedule=SELF_FORCING_SCHEDULE)
    sampler.reset(t["prompt_embeds"], seed=0, latent_shape=LATENT_SHAPE)
    sampler.feed(t["context"])
    return worst_error(run_blocks(sampler, t, range(meta["generated_blocks"])), t["x0"]), memory


def test_golden_is_from_the_reference_and_retrieves_in_four_blocks(recording):
    t, meta, _, _ = recording
    assert meta["reference"] == "qixinhu11/LongLive-RAG" and meta["commit"].startswith("973884a")
    assert meta["config"] == "configs/causal_forcing_latentmem.yaml"
    kw = meta["model_kwargs"]
    assert (kw["local_attn_size"], kw["sink_size"], kw["memory_size"], kw["recent_exclude"]) == (12, 1, 6, 5)
    assert t["retrieval_block_starts"].tolist() == [18, 21, 24, 27]
    assert [int((r >= 0).sum()) for r in t["retrieval_entries"]] == [1, 4, 6, 6]
    assert t["timesteps"].tolist() == SELF_FORCING_SCHEDULE.timesteps()


def test_longlive_rag_default_memory_matches_reference(recording):
    t, meta, _, _ = recording
    memory = method_memory("longlive-rag", 2)
    assert (memory.sink_frames, memory.window_frames, memory.memory_frames, memory.recent_exclude, memory.local_frames) == (1, 8, 6, 5, 5)
    err, memory = _replay(recording, memory)
    assert err <= TOLERANCE, err

    # What was retrieved, block by block (entries of the host store, most similar first).
    assert [s["block_start"] for s in memory.selections] == t["retrieval_block_starts"].int().tolist()
    for s, entries, sims in zip(memory.selections, t["retrieval_entries"], t["retrieval_similarities"]):
        k = int((entries >= 0).sum())
        assert s["entries"] == entries[:k].int().tolist()
        assert max(abs(a - b) for a, b in zip(s["similarities"], sims[:k].tolist())) <= 1e-5
    # Every frame's descriptor (the encoder's embedding of its clean latent).
    ours = torch.stack([memory._descriptors[f] for f in range(30)], dim=1)
    assert rel_error(ours, t["descriptors"]) <= TOLERANCE

    # Host store: the reference's 18 evicted frames, then 19-21, which this memory evicted on the
    # last commit and the reference holds in its cache until a next block would evict them.
    ft = FRAME_TOKENS
    assert memory.host.frames == list(range(1, 22)) and memory.kept_frames() == [0] + list(range(22, 30))
    worst = 0.0
    for layer in range(2):
        ref_host = (t["host_k"][layer].flatten(1, 2), t["host_v"][layer].flatten(1, 2))  # [B, 18 * tokens, H, D]
        ref_cache = (t["cache_k"][layer], t["cache_v"][layer])  # [sink | frames 19 .. 29]
        for e in range(21):
            hk, hv = memory.host.entry_kv(layer, e)
            src = ref_host if e < 18 else ref_cache
            i = e if e < 18 else e - 18 + 1
            worst = max(worst, rel_error(hk, src[0][:, i * ft : (i + 1) * ft]), rel_error(hv, src[1][:, i * ft : (i + 1) * ft]))
        for slot in range(9):  # sink, then frames 22 .. 29 = reference slots 0, then 4 .. 11
            k, v = memory.frame_kv(layer, slot)
            i = 0 if slot == 0 else slot + 3
            worst = max(worst, rel_error(k, ref_cache[0][:, i * ft : (i + 1) * ft]), rel_error(v, ref_cache[1][:, i * ft : (i + 1) * ft]))
    assert worst <= TOLERANCE, worst
    assert memory.host_bytes() == 2 * 21 * 2 * ft * 2 * 32 * 4  # layers x frames x (K, V) x tokens x heads x dim x fp32


def test_reference_parameters_map_onto_the_policy():
    m = HostRetrievalWindow.from_reference(2, local_attn_size=12, sink_size=1, memory_size=6, recent_exclude=5)
    assert (m.window_frames, m.local_frames) == (8, 5)


@pytest.mark.parametrize(
    "memory, encoder",
    [
        (HostRetrievalWindow(2, 8, 1, 6, recent_exclude=0, local_frames=5), None),  # wrong K: no recency guard
        (HostRetrievalWindow(2, 8, 1, 6, recent_exclude=5, local_frames=5), _MeanPool()),  # wrong K: mean-pool descriptors
        (HostRetrievalWindow(2, 8, 1, 6, recent_exclude=100, local_frames=5), None),  # no retrieval
        (HostRetrievalWindow(2, 5, 1, 6, recent_exclude=5, local_frames=5), None),  # device cache one block shorter
    ],
    ids=["no-recency-guard", "mean-pool-descriptors", "no-retrieval", "cache-one-block-shorter"],
)
def test_negative_controls_are_rejected(recording, memory, encoder):
    err, _ = _replay(recording, memory, encoder)
    assert err > 100 * TOLERANCE, err
