"""Memory planning against its stated rules: the free memory read from /proc/meminfo, the activation estimates
written out by hand from the decoder's and CLIP's shapes, and `auto` switching on exactly past 70% of what is free."""

from __future__ import annotations

import logging

import pytest
import torch

from vqclip.nets import memory
from vqclip.nets.memory import clip_activation_bytes, decoder_activation_bytes, plan_memory

CPU = torch.device("cpu")


def test_free_memory_is_memavailable_in_bytes(monkeypatch, tmp_path):
    info = tmp_path / "meminfo"
    info.write_text("MemTotal:       16000000 kB\nMemFree:         1000000 kB\nMemAvailable:    7654321 kB\n")
    real = memory.Path
    monkeypatch.setattr(memory, "Path", lambda p: real(info) if p == "/proc/meminfo" else real(p))
    assert memory.available_memory(CPU) == 7654321 * 1024
    info.write_text("MemTotal:       16000000 kB\n")
    assert memory.available_memory(CPU) is None
    info.unlink()
    assert memory.available_memory(CPU) is None


def test_the_decoder_estimate_is_two_tensors_per_resnet_block_at_each_level(tiny_models):
    dec = tiny_models.vqgan.decoder  # ch 32, ch_mult [1, 1, 2], 1 res block (+1 in the decoder): levels of 32, 32, 64
    h, w, elem = 3, 5, 4
    per_level = [(1 + 1) * 2 * ch * h * 2 ** (2 - i) * w * 2 ** (2 - i) * elem for i, ch in enumerate((32, 32, 64))]
    assert decoder_activation_bytes(dec, h, w, elem, False) == sum(per_level)
    assert decoder_activation_bytes(dec, h, w, elem, True) == max(per_level) + sum(per_level) // (2 * 2)
    assert decoder_activation_bytes(dec, h, w, 2, False) == sum(per_level) // 2


def test_the_clip_estimate_is_sixteen_values_per_token_width_and_layer(tiny_models):
    clip = tiny_models.clips[0][0]  # image 32, patch 8: 16 tokens + the class token; width 64, 2 layers
    assert clip_activation_bytes(clip, 4) == (16 + 1) * 64 * 2 * 16 * 4
    assert clip_activation_bytes(object(), 4) == 32 * 2**20  # a model it cannot read: a fixed guess


@pytest.fixture
def plan(tiny_models, monkeypatch):
    """plan_memory('auto', ...) on the tiny models with `free` bytes free; the decoder and CLIP estimates it uses."""
    vq, clip = tiny_models.vqgan, tiny_models.clips[0][0]
    per_cut = clip_activation_bytes(clip, 4)
    dec = decoder_activation_bytes(vq.decoder, 8, 8, 4, False)
    dec_ck = decoder_activation_bytes(vq.decoder, 8, 8, 4, True)

    def run(free, cutn=16, micro_batch=0, mode="auto"):
        monkeypatch.setattr(memory, "available_memory", lambda device: free)
        return plan_memory(mode, vq.decoder, (8, 8), [clip], cutn, micro_batch, 4, CPU)

    return run, dec, dec_ck, per_cut


def test_auto_turns_on_exactly_past_seventy_percent_of_free_memory(plan, caplog):
    run, dec, dec_ck, per_cut = plan
    need = dec + 16 * per_cut
    assert run(need / 0.7 + 1) == (False, 0)
    assert run(need / 0.7) == (False, 0)  # need == 70% of free: still fits
    with caplog.at_level(logging.INFO, logger="vqclip"):
        checkpoint, chosen = run(need / 0.7 - 8)
    assert checkpoint is True and chosen == min(16, int((0.7 * (need / 0.7 - 8) - dec_ck) // per_cut))
    assert "memory is short" in caplog.text and "set memory: normal to turn this off" in caplog.text
    assert run(None) == (False, 0)  # free memory unknown: nothing turned on


def test_short_memory_scores_as_many_cutouts_as_fit_and_never_fewer_than_one(plan):
    run, dec, dec_ck, per_cut = plan
    free = (dec_ck + 5.5 * per_cut) / 0.7
    assert run(free) == (True, 5)
    assert run(dec_ck / 0.7) == (True, 1)  # nothing left for CLIP: still one cutout a pass
    assert run((dec + 2 * per_cut) / 0.7, micro_batch=3) == (True, 3)  # short even so: the user's micro-batch kept
    assert run(10**15, cutn=4, micro_batch=2) == (False, 2)


def test_a_micro_batch_is_what_auto_measures_clip_by(plan):
    run, dec, dec_ck, per_cut = plan
    free = (dec + 4 * per_cut) / 0.7
    assert run(free, micro_batch=4) == (False, 4)
    assert run(free, micro_batch=0)[0] is True  # all 16 at once would not fit


@pytest.mark.parametrize("cutn, micro_batch, expected", [(16, 0, 8), (5, 0, 5), (8, 0, 8), (16, 3, 3)])
def test_low_checkpoints_and_scores_at_most_eight_cutouts_a_pass(plan, cutn, micro_batch, expected):
    run = plan[0]
    assert run(10**15, cutn=cutn, micro_batch=micro_batch, mode="low") == (True, expected)
    assert run(1, cutn=cutn, micro_batch=micro_batch, mode="normal") == (False, micro_batch)


def test_out_of_memory_kinds():
    assert memory.is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    assert memory.is_out_of_memory(MemoryError())
    assert memory.is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried ..."))
    assert not memory.is_out_of_memory(RuntimeError("shape mismatch"))
    assert not memory.is_out_of_memory(ValueError("out of memory"))  # only the allocator's RuntimeError says so


def test_the_out_of_memory_line_in_low_mode_does_not_suggest_low_again():
    line = memory.out_of_memory_message(64, 48, 8, RuntimeError("out of memory"), mode="low")
    assert line == ("out of memory at 64x48 with 8 cutouts; lower it with --set micro_batch=4, a smaller --size or "
                    "fewer --cutn")
