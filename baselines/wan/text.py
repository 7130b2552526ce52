"""UMT5-XXL prompt embeddings (transformers), cached on disk by prompt hash.

The encoder (about 11 GB in bf16) loads only when a prompt is not in the cache and is freed
before generation. Embeddings are stored unpadded ([L, 4096], L = the prompt's tokens including
EOS) as safetensors under ``$MAGBENCH_CACHE/prompt_embeds`` (default
``~/.cache/magbench/prompt_embeds``); the model pads them with zeros to 512 as the reference does
(its ``WanTextEncoder`` zeroes the states past the prompt's length; diffusers' ``WanPipeline``
trims and re-pads the same way). Text is whitespace-normalised as the reference tokenizer's
``clean="whitespace"`` does.
"""

from __future__ import annotations

import gc
import hashlib
import os
import re
from pathlib import Path

import torch


def prompt_cache_dir() -> Path:
    root = os.environ.get("MAGBENCH_CACHE") or Path.home() / ".cache" / "magbench"
    return Path(root) / "prompt_embeds"


def clean_prompt(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


class PromptEncoder:
    """``embed(prompt)`` -> [1, L, text_dim] on ``device``.

    ``folder``: the Diffusers-format Wan2.1 repo (``text_encoder/``, ``tokenizer/``), or None
    for random mode: a deterministic pseudo-embedding per prompt (seeded by its hash), for tests
    and timing runs that have no weights.
    """

    def __init__(
        self,
        folder: Path | None,
        device: torch.device | str,
        dtype: torch.dtype,
        text_dim: int = 4096,
        text_len: int = 512,
        cache_dir: Path | None = None,
        model_id: str = "Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
    ) -> None:
        self.folder = folder
        self.device = torch.device(device)
        self.dtype = dtype
        self.text_dim = text_dim
        self.text_len = text_len
        self.cache_dir = Path(cache_dir) if cache_dir else prompt_cache_dir()
        self.model_id = model_id if folder is not None else f"random-{text_dim}"
        self.encoder_loads = 0  # how often the big encoder was loaded (tests check the cache)

    def _key(self, prompt: str) -> str:
        h = hashlib.sha256(f"{self.model_id}\0{self.text_len}\0{clean_prompt(prompt)}".encode()).hexdigest()
        return h[:32]

    def _path(self, prompt: str) -> Path:
        return self.cache_dir / f"{self._key(prompt)}.safetensors"

    def embed(self, prompt: str) -> torch.Tensor:
        return self.embed_many([prompt])[0]

    def embed_many(self, prompts: list[str]) -> list[torch.Tensor]:
        from safetensors.torch import load_file, save_file

        out: dict[str, torch.Tensor] = {}
        missing = []
        for p in dict.fromkeys(prompts):
            path = self._path(p)
            if path.is_file():
                out[p] = load_file(str(path))["embeds"]
            else:
                missing.append(p)
        if missing:
            new = self._encode(missing)
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            for p, e in zip(missing, new):
                tmp = self._path(p).with_suffix(".tmp")
                save_file({"embeds": e.contiguous().cpu()}, str(tmp), metadata={"prompt": clean_prompt(p)[:1000]})
                os.replace(tmp, self._path(p))  # atomic: parallel runs never read half a file
                out[p] = e.cpu()
        return [out[p].unsqueeze(0).to(self.device, self.dtype) for p in prompts]

    def _encode(self, prompts: list[str]) -> list[torch.Tensor]:
        if self.folder is None:
            return [self._pseudo(p) for p in prompts]
        from transformers import AutoTokenizer, UMT5EncoderModel

        self.encoder_loads += 1
        tok = AutoTokenizer.from_pretrained(str(self.folder / "tokenizer"))
        enc = UMT5EncoderModel.from_pretrained(str(self.folder / "text_encoder"), torch_dtype=self.dtype)
        enc = enc.to(self.device).eval()
        try:
            out = []
            with torch.no_grad():
                for p in prompts:
                    ids = tok(
                        [clean_prompt(p)], padding="max_length", max_length=self.text_len, truncation=True,
                        add_special_tokens=True, return_attention_mask=True, return_tensors="pt",
                    )
                    mask = ids.attention_mask.to(self.device)
                    states = enc(ids.input_ids.to(self.device), mask).last_hidden_state
                    n = int(mask.sum())
                    out.append(states[0, :n].float().cpu())
            return out
        finally:
            del enc
            gc.collect()
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    def _pseudo(self, prompt: str) -> torch.Tensor:
        text = clean_prompt(prompt)
        n = min(len(text.split()) + 1, self.text_len)  # words + EOS, like a tokenizer would roughly give
        g = torch.Generator().manual_seed(int(self._key(prompt)[:15], 16))
        return torch.randn(n, self.text_dim, generator=g)
