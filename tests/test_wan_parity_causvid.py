"""Parity of magbench's ``causvid`` with the CausVid reference code.

The golden (``tests/data/golden/causvid.safetensors``) was recorded by
``tests/golden/record_causvid.py`` from tianweiy/CausVid @ ca21150 (its own ``InferencePipeline``,
shift-8 scheduler, model and KV-cache code; tiny random model, float32, CPU): the long-video
script's rollouts (21-frame calls, each starting from [anchor, previous call's last 2 latents] at
position 0), the first one from the context (baselines.md 5.2, faithful variant), 3 calls = 2
restarts. The anchors (the VAE encoding of one pixel frame) are recorded inputs. The same inputs
go through magbench's model, the memory policy the ``causvid`` method builds with its default
options, and its rollout sampler and schedule; every denoising output must match to 1e-5
relative. Negative controls: rollouts one block shorter, carried latents without the anchor,
warped timesteps. (Shift 5 instead of 8 is no control: sigma is looked up at the nearest grid
timestep, and the raw timesteps give sigma ~ t/1000 under any shift, to ~1e-3.)
"""

from __future__ import annotations

import pytest

from golden.replay import TOLERANCE, golden, run_blocks, tiny_model, worst_error
from golden.tiny import LATENT_SHAPE

from magbench.baselines.wan.memory import RolloutMemory
from magbench.baselines.wan.sampler import CAUSVID_SCHEDULE, FlowSchedule, RolloutSampler


@pytest.fixture(scope="module")
def recording():
    t, meta = golden("causvid")
    return t, meta, tiny_model(meta)


def _replay(recording, memory, schedule=CAUSVID_SCHEDULE, use_anchor=True, sampler=None):
    t, meta, model = recording
    asked: list[int] = []
    n_ctx = t["context"].shape[1]
    expected = [n_ctx - 3, 21, 39]  # first carried latent of each rollout (absolute index)

    def anchor(index: int):
        asked.append(index)
        return t["anchors"][expected.index(index)] if index in expected else t["anchors"][0] * 0

    if sampler is None:
        sampler = RolloutSampler(model, memory, schedule=schedule)
    sampler.anchor = anchor if use_anchor else None
    sampler.reset(t["prompt_embeds"], seed=0, latent_shape=LATENT_SHAPE)
    sampler.feed(t["context"])
    err = worst_error(run_blocks(sampler, t, range(meta["generated_blocks"])), t["x0"])
    return err, asked, memory


def test_golden_is_from_the_reference_and_restarts_twice(recording):
    t, meta, _ = recording
    assert meta["reference"] == "tianweiy/CausVid" and meta["commit"].startswith("ca21150")
    assert meta["rollout_frames"][:2] == [21, 21] and len(meta["rollout_frames"]) == 3
    assert t["timesteps"].tolist() == CAUSVID_SCHEDULE.timesteps() == [1000.0, 757.0, 522.0]


def test_causvid_default_memory_and_sampler_match_reference(recording):
    import magbench.baselines.wan  # noqa: F401
    from magbench.registry import METHODS

    method = METHODS.get("causvid")(config="tiny", random_weights=True)
    memory = method.make_memory(2)
    sampler = method.make_sampler(recording[2], memory)  # the method's own sampler and schedule
    assert sampler.timesteps == [1000.0, 757.0, 522.0]
    err, asked, memory = _replay(recording, memory, sampler=sampler)
    assert err <= TOLERANCE, err
    assert asked == [3, 21, 39]  # re-encoded: the first carried latent of every rollout
    assert memory.rollouts == 3 and memory.kept_frames() == list(range(9))  # 3 carried + 2 blocks


@pytest.mark.parametrize(
    "memory, schedule, use_anchor",
    [
        (RolloutMemory(2, rollout_frames=18), CAUSVID_SCHEDULE, True),  # rollouts one block shorter
        (RolloutMemory(2), CAUSVID_SCHEDULE, False),  # carried latents without the re-encoded anchor
        # the same steps warped by the shift-8 schedule (CausVid's warp config does that)
        (RolloutMemory(2), FlowSchedule(shift=8.0, denoising_steps=(1000, 757, 522), warp=True), True),
    ],
    ids=["rollout-18", "no-anchor", "warped"],
)
def test_negative_controls_are_rejected(recording, memory, schedule, use_anchor):
    err, _, _ = _replay(recording, memory, schedule, use_anchor)
    assert err > 100 * TOLERANCE, err
