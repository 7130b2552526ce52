"""Checkpoint formats (written here for the tiny config with the real key names), VAE streaming
and the prompt-embedding cache."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from magbench.baselines.wan.checkpoint import CheckpointError, find_model_folders, load_wan, read_state_dict, resolve_mag_folders
from magbench.baselines.wan.model import CausalWan, WanConfig

CFG = WanConfig.tiny()
CFG_JSON = {"_class_name": "CausalWanModel", "_diffusers_version": "0.31.0", "model_type": "t2v", "dim": 64,
            "ffn_dim": 128, "num_heads": 2, "num_layers": 2, "in_dim": 16, "out_dim": 16, "text_len": 8,
            "freq_dim": 32, "eps": 1e-6, "local_attn_size": 21, "sink_size": 2, "text_dim": 32}


def _state(seed: int = 0) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in CausalWan(CFG).init_random(seed).state_dict().items()}


def _folder(path, state):
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(CFG_JSON))
    save_file(state, str(path / "diffusion_pytorch_model.safetensors"))
    return path


def _same(model: CausalWan, state: dict[str, torch.Tensor]) -> None:
    own = model.state_dict()
    assert set(own) == set(state)
    for k in state:
        torch.testing.assert_close(own[k], state[k], rtol=0, atol=0)


def test_real_key_names_match_wan():
    keys = set(CausalWan(CFG).state_dict())
    for k in ["patch_embedding.weight", "text_embedding.0.weight", "text_embedding.2.bias", "time_embedding.0.weight",
              "time_embedding.2.weight", "time_projection.1.weight", "blocks.0.self_attn.q.weight",
              "blocks.0.self_attn.norm_q.weight", "blocks.0.self_attn.norm_k.weight", "blocks.1.cross_attn.o.bias",
              "blocks.0.norm3.weight", "blocks.0.norm3.bias", "blocks.0.ffn.0.weight", "blocks.0.ffn.2.weight",
              "blocks.0.modulation", "head.head.weight", "head.modulation"]:
        assert k in keys, k
    assert not any(".norm1." in k or ".norm2." in k or "head.norm" in k for k in keys)  # no affine params
    with torch.device("meta"):  # shapes of the real 1.3B, no memory
        m = CausalWan(WanConfig())
    sd = m.state_dict()
    assert tuple(sd["patch_embedding.weight"].shape) == (1536, 16, 1, 2, 2)
    assert tuple(sd["blocks.29.ffn.0.weight"].shape) == (8960, 1536)
    assert tuple(sd["blocks.0.modulation"].shape) == (1, 6, 1536)
    assert tuple(sd["head.head.weight"].shape) == (64, 1536)
    assert tuple(sd["text_embedding.0.weight"].shape) == (1536, 4096)


def test_diffusers_style_folder_loads(tmp_path):
    state = _state(1)
    _same(load_wan(_folder(tmp_path / "generator", state)), state)


def test_wan_base_folder_loads_with_its_config(tmp_path):
    state = _state(2)
    folder = _folder(tmp_path / "Wan2.1-T2V-1.3B", state)
    cfg = {k: CFG_JSON[k] for k in ("model_type", "dim", "ffn_dim", "num_heads", "num_layers", "in_dim", "out_dim", "text_len", "freq_dim", "eps")}
    (folder / "config.json").write_text(json.dumps({"_class_name": "WanModel", **cfg}))
    model = load_wan(folder, base=CFG)  # text_dim is not in Wan's config: taken from the base
    assert model.cfg.dim == 64 and model.cfg.text_dim == 32
    _same(model, state)


def test_self_forcing_pt_loads_ema_with_model_prefix(tmp_path):
    gen, ema = _state(3), _state(4)
    path = tmp_path / "self_forcing_dmd.pt"
    torch.save({"generator": {f"model.{k}": v for k, v in gen.items()},
                "generator_ema": {f"model.{k}": v for k, v in ema.items()}}, path)
    _same(load_wan(path, base=CFG), ema)
    _same(load_wan(path, base=CFG, ema=False), gen)


def test_missing_and_unexpected_keys_are_named(tmp_path):
    state = _state()
    del state["blocks.1.ffn.2.bias"]
    state["blocks.0.self_attn.rope_scale"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"missing keys \['blocks.1.ffn.2.bias'\].*unexpected keys \['blocks.0.self_attn.rope_scale'\]"):
        load_wan(_folder(tmp_path / "bad", state))


def test_wrong_shape_is_named(tmp_path):
    state = _state()
    state["head.head.weight"] = torch.zeros(3, 64)
    with pytest.raises(CheckpointError, match="head.head.weight"):
        load_wan(_folder(tmp_path / "bad", state))


class _Evil:
    """Any non-tensor object: weights_only loading must refuse to unpickle it."""


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"generator": {"x": _Evil()}}, path)
    with pytest.raises(CheckpointError, match="weights_only"):
        read_state_dict(path)


def _bin_folder(path, state):
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(CFG_JSON))
    torch.save(state, path / "diffusion_pytorch_model.bin")
    return path


def _sharded_folder(path, state, fmt="safetensors", drop_shard=False):
    """Two shards and the diffusers index that maps every key to its shard."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(CFG_JSON))
    keys = sorted(state)
    halves = [keys[: len(keys) // 2], keys[len(keys) // 2 :]]
    weight_map = {}
    for i, part in enumerate(halves):
        name = f"diffusion_pytorch_model-0000{i + 1}-of-00002.{fmt}"
        shard = {k: state[k] for k in part}
        if fmt == "safetensors":
            save_file(shard, str(path / name))
        else:
            torch.save(shard, path / name)
        weight_map.update({k: name for k in part})
    (path / f"diffusion_pytorch_model.{fmt}.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    if drop_shard:
        (path / f"diffusion_pytorch_model-00002-of-00002.{fmt}").unlink()
    return path


def test_bin_folder_loads_with_weights_only(tmp_path):
    state = _state(5)
    _same(load_wan(_bin_folder(tmp_path / "m", state)), state)


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_sharded_folder_loads_through_its_index(fmt, tmp_path):
    state = _state(6)
    _same(load_wan(_sharded_folder(tmp_path / "m", state, fmt)), state)
    with pytest.raises(CheckpointError, match="shard.*00002-of-00002.*missing"):
        load_wan(_sharded_folder(tmp_path / "broken", state, fmt, drop_shard=True))


def test_pickled_objects_in_a_bin_folder_are_refused(tmp_path):
    path = tmp_path / "m"
    path.mkdir()
    (path / "config.json").write_text(json.dumps(CFG_JSON))
    torch.save({"x": _Evil()}, path / "diffusion_pytorch_model.bin")
    with pytest.raises(CheckpointError, match="weights_only"):
        read_state_dict(path)


def test_model_folders_are_found_at_any_depth_in_every_format(tmp_path):
    _folder(tmp_path / "a" / "b" / "c" / "st", _state())
    _bin_folder(tmp_path / "bin", _state())
    _sharded_folder(tmp_path / "x" / "sharded", _state())
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "config.json").write_text("{}")  # a config without weights: not a model
    assert [str(f.relative_to(tmp_path)) for f in find_model_folders(tmp_path)] == ["a/b/c/st", "bin", "x/sharded"]


def test_mag_reference_layout_is_both_generator_and_memory_model(tmp_path):
    _folder(tmp_path / "checkpoints" / "bc400", _state())
    _folder(tmp_path / "checkpoints" / "sf300", _state())  # Self-Forcing stage: neither role by the rule
    g, m = resolve_mag_folders(tmp_path, None, None)
    assert g == m == tmp_path / "checkpoints" / "bc400"


def test_mag_folders_named_for_their_role_win_per_role(tmp_path):
    _folder(tmp_path / "release" / "v1" / "mag_generator", _state())
    _folder(tmp_path / "release" / "v1" / "memory_model", _state())
    g, m = resolve_mag_folders(tmp_path, None, None)
    assert (g.name, m.name) == ("mag_generator", "memory_model")
    # A generator named as such, the memory model from the reference layout.
    other = tmp_path / "other"
    _folder(other / "checkpoints" / "bc400", _state())
    _bin_folder(other / "generator", _state())
    g, m = resolve_mag_folders(other, None, None)
    assert (g, m) == (other / "generator", other / "checkpoints" / "bc400")


def test_a_single_model_folder_serves_both_roles(tmp_path):
    _sharded_folder(tmp_path / "weights" / "mag", _state())
    g, m = resolve_mag_folders(tmp_path, None, None)
    assert g == m == tmp_path / "weights" / "mag"


def test_ambiguous_mag_layout_lists_the_folders_and_both_options(tmp_path):
    _folder(tmp_path / "ckpt" / "stage2", _state())
    _folder(tmp_path / "ckpt" / "stage3", _state())
    with pytest.raises(CheckpointError) as err:
        resolve_mag_folders(tmp_path, None, None)
    msg = str(err.value)
    assert "ckpt/stage2, ckpt/stage3" in msg and "generator and the memory model" in msg
    assert "--opt generator_path=" in msg and "--opt memory_path=" in msg
    # Two folders naming the same role are ambiguous too.
    _folder(tmp_path / "ckpt" / "memory_a", _state())
    _folder(tmp_path / "ckpt" / "memory_b", _state())
    with pytest.raises(CheckpointError, match="memory_a, ckpt/memory_b"):
        resolve_mag_folders(tmp_path, "ckpt/stage3", None)
    g, m = resolve_mag_folders(tmp_path, "ckpt/stage3", "ckpt/memory_b")  # the options decide
    assert (g.name, m.name) == ("stage3", "memory_b")
    g, m = resolve_mag_folders(tmp_path, "ckpt/stage3", None, need_memory=False)  # the ablation
    assert g.name == "stage3" and m is None
    with pytest.raises(CheckpointError, match="memory_path=nope"):
        resolve_mag_folders(tmp_path, "ckpt/stage3", "nope")


def test_streaming_decode_and_encode_equal_whole_video():
    from magbench.baselines.wan.vae import WanVAE, tiny_vae_config

    vae = WanVAE.random(tiny_vae_config(), "cpu", torch.float32)
    frames = torch.rand(21, 3, 16, 32, generator=torch.Generator().manual_seed(0))
    whole = vae.encode(frames)  # 1 + 5 latent frames
    enc = vae.encoder_stream()
    parts = [enc.push(frames[:9]), enc.push(frames[9:10]), enc.push(frames[10:17]), enc.push(frames[17:])]
    streamed = torch.cat([p for p in parts if p is not None], dim=1)
    assert parts[1] is None and streamed.shape == whole.shape == (1, 6, 16, 2, 4)
    torch.testing.assert_close(streamed, whole, rtol=1e-5, atol=1e-5)
    video = vae.decode(whole)
    dec = vae.decoder_stream()
    blocks = [dec.push(whole[:, i : i + 3]) for i in range(0, 6, 3)]
    assert [b.shape[0] for b in blocks] == [9, 12]  # first block 1 + 4 + 4, then 12 each
    torch.testing.assert_close(torch.cat(blocks), video, rtol=1e-5, atol=1e-5)


def test_channels_last_fused_norm_vae_streams_the_same_frames_as_the_default():
    from magbench.baselines.wan.vae import WanVAE, tiny_vae_config

    plain = WanVAE.random(tiny_vae_config(), "cpu", torch.float32, channels_last=False, fused_norms=False)
    nhwc = WanVAE.random(tiny_vae_config(), "cpu", torch.float32, channels_last=True, fused_norms=True)
    conv = next(m for m in nhwc.vae.modules() if isinstance(m, torch.nn.Conv3d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last_3d)
    frames = torch.rand(13, 3, 16, 32, generator=torch.Generator().manual_seed(0))
    a, b = plain.encoder_stream().push(frames), nhwc.encoder_stream().push(frames)
    torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
    da, db = plain.decoder_stream(), nhwc.decoder_stream()
    for i in range(0, 3, 1):
        torch.testing.assert_close(db.push(a[:, i : i + 1]), da.push(a[:, i : i + 1]), rtol=1e-5, atol=1e-5)


def test_prompt_embeddings_are_cached_on_disk(tmp_path):
    from magbench.baselines.wan.text import PromptEncoder

    enc = PromptEncoder(None, "cpu", torch.float32, text_dim=32, text_len=8, cache_dir=tmp_path)
    a = enc.embed("a  red car\n")
    assert a.shape == (1, 4, 32) and len(list(tmp_path.glob("*.safetensors"))) == 1
    again = PromptEncoder(None, "cpu", torch.float32, text_dim=32, text_len=8, cache_dir=tmp_path)
    again._encode = lambda prompts: pytest.fail(f"re-encoded {prompts}")  # must come from disk
    torch.testing.assert_close(again.embed("a red car"), a)  # whitespace-normalised key
    assert not torch.equal(enc.embed("a blue car"), a)


def test_local_checkpoint_options_replace_the_downloads_they_stand_for(tmp_path):
    """The weights check before a run: local paths given as options are not asked to be downloaded;
    the ablation needs no memory-model path."""
    from magbench.baselines.wan.checkpoint import MAG, SELF_FORCING, WAN_DIFFUSERS
    from magbench.baselines.wan.methods import MagMethod, SelfForcing

    assert MagMethod(generator_path="g").weights_needed() == [WAN_DIFFUSERS, MAG]
    assert MagMethod(generator_path="g", memory_path="m").weights_needed() == [WAN_DIFFUSERS]
    assert MagMethod(generator_path="g", memory_model=False).weights_needed() == [WAN_DIFFUSERS]
    (tmp_path / "c.pt").touch()  # checkpoint_path and vae_path must exist (checked at construction)
    (tmp_path / "v").mkdir()
    assert SelfForcing(checkpoint_path=str(tmp_path / "c.pt"), vae_path=str(tmp_path / "v")).weights_needed() == []
    assert SelfForcing().weights_needed() == [WAN_DIFFUSERS, SELF_FORCING]
    assert SelfForcing(random_weights=True).weights_needed() == []
