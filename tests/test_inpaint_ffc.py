"""Inpainting round 2: the FFC model (shapes, push-pull pre-fill, the hole's content ignored, loading
through genapps.weights, the exact outside of the hole), its training (LaMa-style masks, --extra,
resume, the best held-out checkpoint, --init stages), the structure loss, and spandrel's LaMa."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import photo
from genapps import io, losses, weights
from genapps.tasks.inpaint.models import FFCInpaint, define_G, push_pull_fill
from genapps.tasks.inpaint.task import load_model, model_fill, needs_prefill
from genapps.tasks.inpaint.training import LAMA, lama_mask


def _x(b=2, h=32, w=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    img = torch.rand(b, 3, h, w, generator=g)
    mask = torch.zeros(b, 1, h, w)
    mask[:, :, 8:20, 10:30] = 1
    return torch.cat([img, mask], 1)


def _randomised(model, std=0.3):
    with torch.no_grad():
        for p in model.parameters():
            if p.abs().sum() == 0:  # the zero-initialised head and the blocks' gains
                p.normal_(0, std)
    return model


def test_push_pull_fill_keeps_known_pixels_and_fills_smoothly():
    x = _x()
    img, known = x[:, :3], 1 - x[:, 3:]
    out = push_pull_fill(img, known)
    assert out.shape == img.shape
    assert torch.equal(out * known, img * known)
    flat = torch.full((1, 3, 16, 16), 0.25)
    hole = torch.ones(1, 1, 16, 16)
    hole[:, :, 4:10, 3:12] = 0
    assert torch.allclose(push_pull_fill(flat, hole), flat)  # a flat image is filled flat
    assert torch.allclose(push_pull_fill(flat, torch.zeros_like(hole)), torch.full_like(flat, 0.5))


def test_ffc_model_shapes_multiple_and_untrained_output_is_the_prefill():
    model = FFCInpaint(channels=8, downs=3, blocks=2)
    assert model.input_multiple == 8 and not needs_prefill(model)
    x = _x()
    y = model(x)
    assert y.shape == (2, 3, 32, 40)
    assert torch.allclose(y, model.base(x).clamp(0, 1))  # the head starts at zero
    assert torch.allclose(FFCInpaint(channels=8, prefill=False).base(x), x[:, :3] * (1 - x[:, 3:]))


@pytest.mark.parametrize("act, alive", [("relu", False), ("lrelu", True)])
def test_ffc_trunk_with_negative_biases_still_learns_only_when_leaky(act, alive):
    """Round 2's stage 1 (relu) came back with 38-62% of its deep channels dead and 5% of the units before
    the head active: trained on hole L1 with no normalisation, the trunk's biases drift negative and a
    ReLU unit that is off everywhere never gets a gradient again. Biases pushed negative as there: a leaky
    trunk still passes gradients to the stem and the FFC blocks, a ReLU one passes none."""
    torch.manual_seed(0)
    model = _randomised(FFCInpaint(channels=8, downs=2, blocks=1, act=act), std=0.05)
    with torch.no_grad():
        for seq in [model.stem, *model.down, *(u[1:] for u in model.up)]:
            seq[0].bias.fill_(-5.0)  # every pre-activation of the trunk below 0
    model(_x()).sum().backward()
    stem_grad, block_grad = model.stem[0].weight.grad.abs().sum(), model.blocks[0].gain.grad.abs()
    assert (stem_grad > 0 and block_grad > 0) if alive else (stem_grad == 0 and block_grad == 0)


def test_ffc_activation_in_the_config_and_stage_one_weights_unchanged():
    from genapps.tasks.inpaint.training import InpaintTrainConfig, build_generator

    cfg = dict(data=".", out="x.safetensors", model="ffc", ngf=8, downs=2, blocks=1, patch=32)
    _, _, config = build_generator(InpaintTrainConfig(**cfg))
    assert config["act"] == "lrelu"  # the default for new trainings
    _, _, old = build_generator(InpaintTrainConfig(**cfg, act="relu"))
    assert "act" not in old  # stage 1's config: --init with its weights still matches
    assert isinstance(define_G("ffc", **old).stem[1], torch.nn.ReLU)
    assert isinstance(define_G("ffc", **config).stem[1], torch.nn.LeakyReLU)
    with pytest.raises(ValueError, match="unknown activation"):
        FFCInpaint(channels=8, act="gelu")


def test_ffc_model_ignores_the_hole_content_and_sees_far():
    torch.manual_seed(0)
    model = _randomised(FFCInpaint(channels=8, downs=2, blocks=2), std=0.05).eval()
    for block in model.blocks:
        block.gain.data.fill_(1.0)
    seen = []
    model.head.register_forward_hook(lambda _m, _i, out: seen.append(out))  # the correction, before the clamp
    x = _x(b=1, h=64, w=64)
    x2 = x.clone()
    x2[:, :3] = torch.where(x[:, 3:] > 0, torch.rand_like(x[:, :3]), x[:, :3])  # other hole content
    with torch.no_grad():
        assert torch.equal(model(x), model(x2))
        x3 = x.clone()
        x3[:, :3, -4:, -4:] += 0.5  # the far corner (the hole: rows 8-20, columns 10-30)
        model(x3)
    assert (seen[-1] - seen[0])[:, :, 8:20, 10:30].abs().max() > 1e-5
    local = _randomised(FFCInpaint(channels=8, downs=2, blocks=2, ratio=0.0), std=0.05).eval()  # no spectral path
    for block in local.blocks:
        block.gain.data.fill_(1.0)
    local.head.register_forward_hook(lambda _m, _i, out: seen.append(out))
    with torch.no_grad():
        local(x), local(x3)
    assert torch.equal(seen[-1][:, :, 8:20, 10:30], seen[-2][:, :, 8:20, 10:30])


def test_ffc_weights_load_through_genapps_weights_and_keep_the_outside(tmp_path):
    torch.manual_seed(0)
    config = {"channels": 8, "downs": 2, "blocks": 1, "prefill": True}
    g = _randomised(define_G("ffc", **config))
    path = tmp_path / "ffc.safetensors"
    weights.save_weights(path, g.state_dict(), {"task": "inpaint", "arch": "ffc", "config": config})
    model, info = load_model(str(path))
    assert info.arch == "ffc" and info.config == config and model.input_multiple == 4
    rgb = torch.rand(3, 50, 70)
    mask = torch.zeros(50, 70, dtype=torch.bool)
    mask[10:25, 20:45] = True
    out = model_fill(model, rgb, mask, margin=8)
    assert torch.equal(out[:, ~mask], rgb[:, ~mask])
    assert (out[:, mask] - rgb[:, mask]).abs().mean() > 0.01
    assert torch.equal(out, model_fill(model, torch.where(mask, 1 - rgb, rgb), mask, margin=8))  # hole ignored
    with pytest.raises(ValueError, match="prefill"):
        weights.save_weights(tmp_path / "bad.safetensors", g.state_dict(),
                             {"task": "inpaint", "arch": "ffc", "config": config | {"prefill": 3}})
        load_model(str(tmp_path / "bad.safetensors"))


def test_lama_masks_cover_the_planned_range():
    cover = np.array([lama_mask(96, s).mean() for s in range(120)])
    assert lama_mask(96, 7).shape == (96, 96) and np.array_equal(lama_mask(96, 7), lama_mask(96, 7))
    assert cover.min() > 0.004 and cover.max() < 0.75
    assert 0.1 < np.median(cover) < 0.45
    assert abs(sum(p for _, p in LAMA) - 1) < 1e-9


def test_laplacian_pyramid_l1():
    a = torch.rand(2, 3, 33, 40)
    assert losses.laplacian_pyramid_l1(a, a) == 0
    b = a + 0.1  # a uniform shift lives in the coarsest level only
    assert torch.isclose(losses.laplacian_pyramid_l1(b, a), torch.tensor(0.1 * 32 / 63), atol=1e-4)
    c = a.clone().requires_grad_(True)
    losses.laplacian_pyramid_l1(c, a + torch.randn_like(a) * 0.1).backward()
    assert c.grad.abs().sum() > 0


# ---------------------------------------------------------------- training


@pytest.fixture
def train_dirs(tmp_path):
    data, extra = tmp_path / "train", tmp_path / "extra" / "sub"
    data.mkdir()
    extra.mkdir(parents=True)
    for i in range(3):
        Image.fromarray(photo((150, 160), seed=i)).save(data / f"p{i}.png")
    Image.fromarray(photo((100, 120), seed=9)).save(extra / "e.png")
    return data, extra.parent


def test_train_ffc_resumes_keeps_the_best_and_continues_with_init(cli, train_dirs, tmp_path):
    data, extra = train_dirs
    common = ["--data", data, "--extra", extra, "--holdout", 1, "--model", "ffc", "--masks", "lama",
              "--patch", 64, "--batch-size", 2, "--ngf", 4, "--blocks", 1, "--downs", 2, "--val-every", 1]
    out = tmp_path / "w.safetensors"
    r = cli("train", "inpaint", *common, "--steps", 2, "--out", out)
    assert r.exit_code == 0, r.output
    assert io.load_torch(out.with_suffix(".state.pt"))["step"] == 2
    r = cli("train", "inpaint", *common, "--steps", 3, "--out", out)  # resumes at step 2
    assert r.exit_code == 0, r.output
    assert io.load_torch(out.with_suffix(".state.pt"))["step"] == 3
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["arch"] == "ffc" and card["config"] == {"channels": 4, "downs": 2, "blocks": 1, "prefill": True,
                                                       "act": "lrelu"}
    assert len(card["stages"]) == 1 and card["stages"][0]["steps"] == 3 and card["stages"][0]["extra"]
    assert "structure" in card["history"][-1]
    best = out.with_suffix(".best.safetensors")
    _, meta = weights.load_weights(best)
    best_card = json.loads(best.with_suffix(".json").read_text())
    assert meta["validation"]["val_hole_l1"] <= card["validation"]["val_hole_l1"] + 1e-9
    assert 1 <= best_card["selected"]["step"] <= 3
    model, info = load_model(str(best))
    assert info.arch == "ffc"
    # another setup does not resume
    r = cli("train", "inpaint", *common[:-2], "--val-every", 1, "--no-prefill", "--steps", 4, "--out", out)
    assert r.exit_code == 2 and "another setup" in r.output
    # the next stage starts from the weights; its card lists both stages
    out2 = tmp_path / "w2.safetensors"
    r = cli("train", "inpaint", *common, "--init", out, "--steps", 1, "--out", out2)
    assert r.exit_code == 0, r.output
    card2 = json.loads(out2.with_suffix(".json").read_text())
    assert [s["steps"] for s in card2["stages"]] == [3, 1] and card2["stages"][1]["init"] == str(out)
    r = cli("train", "inpaint", *common[:-10], "--ngf", 8, "--blocks", 1, "--downs", 2, "--val-every", 1,
            "--init", out, "--steps", 1, "--out", tmp_path / "w3.safetensors")
    assert r.exit_code == 2 and "does not match" in r.output


# ---------------------------------------------------------------- community weights through spandrel


def test_spandrel_lama_runs_with_genapps_masks_and_guarantees(tmp_path):
    from spandrel.architectures.LaMa import LaMa

    torch.manual_seed(0)
    lama = LaMa(in_nc=4, out_nc=3)
    path = tmp_path / "big-lama.pth"
    torch.save(lama.state_dict(), path)
    model, info = load_model(str(path))
    assert info.arch == "LaMa" and info.config["purpose"] == "Inpainting" and not needs_prefill(model)
    rgb = torch.rand(3, 40, 52)
    mask = torch.zeros(40, 52, dtype=torch.bool)
    mask[10:22, 12:30] = True
    out = model_fill(model, rgb, mask, margin=4, tta=True)
    assert out.shape == rgb.shape
    assert torch.equal(out[:, ~mask], rgb[:, ~mask])
    assert torch.equal(out, model_fill(model, torch.where(mask, 1 - rgb, rgb), mask, margin=4))  # hole ignored
