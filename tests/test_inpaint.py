"""inpaint: mask conventions, the exact-outside-the-hole guarantee, crops, samples, classical methods,
seeded masks, and resume of `train inpaint`."""

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from conftest import photo
from genapps import io, losses, weights
from genapps.tasks.inpaint.task import hole_crops, load_model, model_fill
from genapps.tasks.inpaint import masks as M
from genapps.tasks.inpaint.classical import fill
from genapps.tasks.inpaint.models import define_G

ROOT = Path(__file__).resolve().parents[1]


def _save_mask(path, arr, mode="L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode).save(path)


def _box_mask(h=48, w=64, value=255):
    m = np.zeros((h, w), np.uint8)
    m[10:30, 20:40] = value
    return m


def _read(path):
    return np.asarray(Image.open(path))


@pytest.fixture
def tiny_models(tmp_path):
    """A random-weight GAN model and a pluralistic one whose latent changes the fill."""
    torch.manual_seed(0)
    paths = {}
    for arch, config in (("unet", {"ngf": 4}), ("pluralistic", {"ngf": 4, "z_dim": 4})):
        g = define_G(arch, **config)
        with torch.no_grad():
            for p in g.parameters():
                if p.abs().sum() == 0:  # the zero-initialised output layer and latent injection
                    p.normal_(0, 0.3)
        paths[arch] = tmp_path / f"{arch}.safetensors"
        weights.save_weights(paths[arch], g.state_dict(), {"task": "inpaint", "arch": arch, "config": config})
    return paths


# ---------------------------------------------------------------- mask conventions


def test_mask_threshold_invert_and_alpha():
    grey = torch.tensor([[0, 126, 127, 255]], dtype=torch.float32) / 255
    assert M.to_mask(io.LoadedImage(grey[None])).tolist() == [[False, False, True, True]]
    assert M.to_mask(io.LoadedImage(grey[None]), threshold=200).tolist() == [[False, False, False, True]]
    assert M.to_mask(io.LoadedImage(grey[None]), invert=True).tolist() == [[True, True, False, False]]
    rgba = io.LoadedImage(torch.zeros(3, 1, 4), alpha=grey[None])  # black colour, the hole in alpha
    assert M.to_mask(rgba).tolist() == [[False, False, True, True]]


def test_mask_matching_by_stem_and_suffix(tmp_path):
    masks = tmp_path / "masks"
    _save_mask(masks / "a" / "photo.png", _box_mask())
    _save_mask(masks / "b_mask.png", _box_mask())
    src = M.MaskSource(masks)
    assert src.path_for("a/photo.jpg") == masks / "a" / "photo.png"
    assert src.path_for("b.jpg") == masks / "b_mask.png"
    assert src.path_for("a/other.jpg") is None
    with pytest.raises(FileNotFoundError, match="no mask for"):
        src.mask_for("c.png", (48, 64))
    single = M.MaskSource(masks / "b_mask.png")
    assert single.path_for("anything/at/all.png") == masks / "b_mask.png"


def test_mask_of_another_size_is_resized_with_a_warning(tmp_path, caplog):
    _save_mask(tmp_path / "m.png", _box_mask(24, 32))
    with caplog.at_level(logging.WARNING):
        mask = M.MaskSource(tmp_path / "m.png").mask_for("x.png", (48, 64))
    assert mask.shape == (48, 64) and "resized" in caplog.text
    assert mask[20:60].any() and set(torch.unique(mask).tolist()) == {False, True}


# ---------------------------------------------------------------- the batch command


def test_outside_the_hole_is_exact_8bit(cli, photo_dir, tmp_path):
    masks = tmp_path / "masks"
    for rel in ("a", "b", "sub/c"):
        _save_mask(masks / f"{rel}.png", _box_mask())
    out = tmp_path / "out"
    r = cli("inpaint", photo_dir, out, "--masks", masks, "--method", "telea", "--ext", "png")
    assert r.exit_code == 0, r.output
    hole = _box_mask() > 0
    for rel in ("a.png", "sub/c.png"):
        src, res = _read(photo_dir / rel), _read(out / rel)
        assert np.array_equal(src[~hole], res[~hole])
        assert not np.array_equal(src[hole], res[hole])


def test_outside_the_hole_is_exact_16bit_with_alpha(cli, tmp_path, tiny_models):
    import cv2

    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 65536, (48, 64, 4), dtype=np.uint16)
    (tmp_path / "in").mkdir()
    cv2.imwrite(str(tmp_path / "in" / "deep.png"), rgba)
    _save_mask(tmp_path / "m.png", _box_mask())
    for method in ("model", "ns"):
        out = tmp_path / method
        r = cli("inpaint", tmp_path / "in", out, "--masks", tmp_path / "m.png", "--method", method,
                "--model", tiny_models["unet"])
        assert r.exit_code == 0, r.output
        res = cv2.imread(str(out / "deep.png"), cv2.IMREAD_UNCHANGED)
        hole = _box_mask() > 0
        assert res.dtype == np.uint16 and res.shape == rgba.shape
        assert np.array_equal(res[~hole], rgba[~hole])
        assert np.array_equal(res[..., 3], rgba[..., 3])  # alpha passes through


def test_all_black_mask_copies_through_and_missing_masks(cli, photo_dir, tmp_path):
    masks = tmp_path / "masks"
    _save_mask(masks / "a.png", np.zeros((48, 64), np.uint8))
    out = tmp_path / "out"
    r = cli("inpaint", photo_dir, out, "--masks", masks, "--method", "telea")
    assert r.exit_code == 1  # b and sub/c have no mask: per-file errors
    assert np.array_equal(_read(out / "a.png"), _read(photo_dir / "a.png"))
    assert not (out / "b.jpg").exists() and "no mask for" in r.output
    r = cli("inpaint", photo_dir, tmp_path / "out2", "--masks", masks, "--method", "telea", "--skip-missing-masks")
    assert r.exit_code == 0, r.output
    assert "1 ok, 2 skipped, 0 failed" in r.output


def test_inverted_mask_and_one_mask_for_all(cli, photo_dir, tmp_path):
    _save_mask(tmp_path / "keep.png", 255 - _box_mask())  # white = keep
    out = tmp_path / "out"
    r = cli("inpaint", photo_dir, out, "--masks", tmp_path / "keep.png", "--invert-mask", "--method", "ns",
            "--ext", "png")
    assert r.exit_code == 0, r.output
    hole = _box_mask() > 0
    for rel in ("a.png", "b.png", "sub/c.png"):
        src = _read(photo_dir / rel.replace("b.png", "b.jpg"))
        assert np.array_equal(src[~hole], _read(out / rel)[~hole])


def test_samples_concat_and_report(cli, photo_dir, tmp_path, tiny_models):
    _save_mask(tmp_path / "m.png", _box_mask())
    out = tmp_path / "out"
    r = cli("inpaint", photo_dir, out, "--masks", tmp_path / "m.png", "--model", tiny_models["pluralistic"],
            "--samples", 3, "--reference", photo_dir)
    assert r.exit_code == 0, r.output
    samples = [_read(out / f"a_s{k}.png") for k in range(3)]
    assert all(not np.array_equal(samples[i], samples[j]) for i in range(3) for j in range(i))
    assert "hole_l1" in r.output
    # the first fill is the most likely one (no draw: the same for every seed), the others are drawn;
    # --no-mode-first draws the first too
    for flags in (["--seed", 1], ["--seed", 1, "--no-mode-first"]):
        r = cli("inpaint", photo_dir, tmp_path / "seed1", "--masks", tmp_path / "m.png", "--model",
                tiny_models["pluralistic"], "--samples", 3, "--overwrite", *flags)
        assert r.exit_code == 0, r.output
        again = [_read(tmp_path / "seed1" / f"a_s{k}.png") for k in range(3)]
        assert np.array_equal(again[0], samples[0]) == ("--no-mode-first" not in flags)
        assert not np.array_equal(again[1], samples[1])
    report = json.loads((out / "report.json").read_text())
    assert report["stages"][0]["summary"]["samples"] == 3
    r = cli("inpaint", photo_dir, tmp_path / "gan", "--masks", tmp_path / "m.png", "--model", tiny_models["unet"],
            "--samples", 2)
    assert r.exit_code == 2 and "pluralistic" in r.output
    # --temperature 0: every sample is the prior mean's fill; a GAN model has no temperature to set
    r = cli("inpaint", photo_dir, tmp_path / "cold", "--masks", tmp_path / "m.png", "--model",
            tiny_models["pluralistic"], "--samples", 2, "--temperature", 0)
    assert r.exit_code == 0, r.output
    assert np.array_equal(_read(tmp_path / "cold" / "a_s0.png"), _read(tmp_path / "cold" / "a_s1.png"))
    r = cli("inpaint", photo_dir, tmp_path / "cold", "--masks", tmp_path / "m.png", "--model",
            tiny_models["pluralistic"], "--samples", 2, "--temperature", 2)
    assert r.exit_code == 2 and "temperature" in r.output  # another setup in that folder: no silent mix
    r = cli("inpaint", photo_dir, tmp_path / "gan", "--masks", tmp_path / "m.png", "--model", tiny_models["unet"],
            "--temperature", 2)
    assert r.exit_code == 2 and "pluralistic" in r.output
    r = cli("inpaint", photo_dir, tmp_path / "cat", "--masks", tmp_path / "m.png", "--method", "telea", "--concat")
    assert r.exit_code == 0, r.output
    cat = _read(tmp_path / "cat" / "a.png")
    assert cat.shape == (48, 192, 3)
    assert np.array_equal(cat[:, :64], _read(photo_dir / "a.png"))
    assert np.array_equal(cat[:, 64:128, 0] > 127, _box_mask() > 0)


def test_large_image_runs_in_crops_around_each_hole(tiny_models):
    from genapps.tasks.inpaint.task import load_model

    model, _ = load_model(str(tiny_models["unet"]))
    rng = np.random.default_rng(1)
    rgb = torch.from_numpy(rng.random((3, 200, 300), dtype=np.float32))
    mask = torch.zeros(200, 300, dtype=torch.bool)
    mask[20:40, 20:50] = True  # small hole: a crop at full resolution
    mask[60:190, 120:290] = True  # large hole: its crop exceeds work_size and is resized
    crops = hole_crops(mask, margin=8)
    assert len(crops) == 2 and sum(int(c[4].sum()) for c in crops) == int(mask.sum())
    out = model_fill(model, rgb, mask, work_size=64, margin=8)
    assert out.shape == rgb.shape
    assert torch.equal(out[:, ~mask], rgb[:, ~mask])
    assert (out[:, mask] - rgb[:, mask]).abs().mean() > 0.05


def test_work_crops_prefill_each_crop_at_the_size_the_network_sees(tiny_models):
    """The classical pre-fill runs on each hole's crop at the work resolution (a small hole in a
    large photo costs the crop's pixels), the hole's content is never read, and model_fill with the
    crops made once (several samples) equals model_fill making them itself."""
    from genapps.tasks.inpaint.task import load_model, work_crops

    y, x = torch.meshgrid(torch.linspace(0, 1, 200), torch.linspace(0, 1, 300), indexing="ij")
    rgb = torch.stack([x, y, (x + y) / 2])  # a smooth ramp: the classical fills continue it
    mask = torch.zeros(200, 300, dtype=torch.bool)
    mask[20:40, 20:50] = True  # crop 36 x 46 px with margin 8: kept at full size
    mask[60:190, 120:290] = True  # crop 146 x 186: resized to at most 64 px
    crops = work_crops(rgb, mask, classical=True, work_size=64, margin=8)
    assert [tuple(c.input.shape) for c in crops] == [(4, 36, 46), (4, 50, 64)]
    for c in crops:
        hole = c.input[3].bool()
        assert hole.any() and not hole.all()
        ramp = F.interpolate(rgb[None, :, c.y:c.y + c.h, c.x:c.x + c.w], size=tuple(hole.shape), mode="area")[0]
        err = (c.input[:3] - ramp).abs()
        assert err[:, ~hole].max() < 1e-5  # outside the hole: the image at that size
        assert 0 < err[:, hole].mean() < 0.08  # inside: pre-filled (zeros would be ~0.5 off)
    scrambled = work_crops(torch.where(mask, 1 - rgb, rgb), mask, classical=True, work_size=64, margin=8)
    assert all(torch.equal(a.input, b.input) for a, b in zip(crops, scrambled))
    assert not work_crops(rgb, mask, classical=False, work_size=64, margin=8)[1].input[:3, crops[1].input[3].bool()].any()
    model, _ = load_model(str(tiny_models["unet"]))
    assert torch.equal(model_fill(model, rgb, mask, work_size=64, margin=8),
                       model_fill(model, rgb, mask, work_size=64, margin=8, crops=crops))


@pytest.mark.parametrize("method", ["telea", "ns", "biharmonic"])
def test_classical_methods_fill_smooth_images(method):
    y, x = torch.meshgrid(torch.linspace(0, 1, 40), torch.linspace(0, 1, 50), indexing="ij")
    image = torch.stack([x, y, (x + y) / 2])
    mask = torch.zeros(40, 50, dtype=torch.bool)
    mask[12:24, 15:30] = True
    holed = torch.where(mask, torch.zeros(()), image)
    out = fill(method, holed, mask)
    assert torch.equal(out[:, ~mask], image[:, ~mask])
    assert (out[:, mask] - image[:, mask]).abs().mean() < 0.06  # zeros would be ~0.5 off
    with pytest.raises(ValueError, match="valid: telea"):
        fill("lama", holed, mask)


# ---------------------------------------------------------------- seeded masks


def test_genapps_masks_is_deterministic(cli, photo_dir, tmp_path):
    for out, seed in (("m1", 0), ("m2", 0), ("m3", 1)):
        r = cli("masks", photo_dir, tmp_path / out, "--kind", "thick", "--seed", seed)
        assert r.exit_code == 0, r.output
    a, b, c = (_read(tmp_path / m / "sub" / "c.png") for m in ("m1", "m2", "m3"))
    assert a.shape == (48, 64) and set(np.unique(a)) <= {0, 255} and a.any()
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert not np.array_equal(a, _read(tmp_path / "m1" / "a.png"))  # the relative path seeds each mask
    assert (tmp_path / "m1" / "b.png").exists()  # masks are PNG whatever the image's format


@pytest.mark.parametrize("kind", list(M.BUCKETS))
def test_area_buckets(kind):
    lo, hi = M.BUCKETS[kind]
    for seed in range(3):
        area = M.generate(kind, (96, 128), seed).mean()
        assert max(lo, 0.01) <= area <= hi


def test_stroke_kinds_grow_thicker():
    area = {k: np.mean([M.generate(k, (128, 128), s).mean() for s in range(8)]) for k in ("thin", "medium", "thick")}
    assert area["thin"] < area["medium"] < area["thick"]
    with pytest.raises(ValueError, match="valid"):
        M.generate("blob", (8, 8), 0)


@pytest.mark.parametrize("patch", [64, 384, 512])
def test_training_masks_fit_crops_larger_than_the_benchmark_canvas(patch):
    """Training holes are drawn at benchmark size (320 x 480); a larger crop grows the canvas."""
    from genapps.tasks.inpaint.training import train_mask

    for seed in range(4):
        hole = train_mask("mixed", patch, seed)
        assert hole.shape == (patch, patch) and hole.dtype == bool and 0 < hole.mean() < 1


def test_training_masks_take_a_weighted_mixture_of_the_mixed_kinds():
    """--masks area:3,box:1 draws only those kinds, at those odds; a bad mixture is a clear error."""
    from genapps.tasks.inpaint.training import InpaintTrainConfig, mask_mixture, train_mask

    assert mask_mixture("area:3,box:1") == (("area", 0.75), ("box", 0.25))
    assert mask_mixture("mixed")[0] == ("thick", 0.4) and mask_mixture("thick") is None
    # "area" alone: every hole is one of the benchmark's area buckets (>= 10% of the canvas), so
    # crops of it are much fuller than thin scratches
    area = np.mean([train_mask("area:1", 128, s).mean() for s in range(12)])
    thin = np.mean([train_mask("thin", 128, s).mean() for s in range(12)])
    assert area > 2 * thin
    # the same seed gives the same hole as "mixed" when the weights are mixed's own
    spelled = ",".join(f"{k}:{w}" for k, w in mask_mixture("mixed"))
    assert all((train_mask(spelled, 96, s) == train_mask("mixed", 96, s)).all() for s in range(6))
    for bad in ("area", "area:x", "blob:1", "area:-1,box:1", "area:0"):
        with pytest.raises(ValueError, match="kind:weight"):
            InpaintTrainConfig(data="d", out="o.safetensors", masks=bad)


def test_inpaint_with_generated_masks_equals_masks_folder(cli, photo_dir, tmp_path):
    from genapps.tasks import load_task, make_config

    task = load_task("inpaint")
    cfg = make_config(task.Config, {"mask_kind": "medium", "method": "telea", "ext": "png"})
    task.run(cfg, photo_dir, tmp_path / "gen", torch.device("cpu"))
    cli("masks", photo_dir, tmp_path / "masks", "--kind", "medium")
    cli("inpaint", photo_dir, tmp_path / "folder", "--masks", tmp_path / "masks", "--method", "telea", "--ext", "png")
    assert np.array_equal(_read(tmp_path / "gen" / "a.png"), _read(tmp_path / "folder" / "a.png"))


# ---------------------------------------------------------------- training


@pytest.fixture
def train_dir(tmp_path):
    folder = tmp_path / "train"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(photo((150, 160), seed=i)).save(folder / f"p{i}.png")
    return folder


def test_train_inpaint_resumes(cli, train_dir, tmp_path):
    common = ["--data", train_dir, "--holdout", 1, "--patch", 64, "--batch-size", 2, "--ngf", 4,
              "--val-every", 1000, "--masks", "thick"]
    out = tmp_path / "w.safetensors"
    r = cli("train", "inpaint", *common, "--steps", 2, "--out", out)
    assert r.exit_code == 0, r.output
    state = io.load_torch(out.with_suffix(".state.pt"))
    assert state["step"] == 2
    r = cli("train", "inpaint", *common, "--steps", 3, "--out", out)
    assert r.exit_code == 0, r.output
    assert io.load_torch(out.with_suffix(".state.pt"))["step"] == 3
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["arch"] == "unet" and "val_hole_l1" in card["validation"]
    assert [h["step"] for h in card["history"]][-1] == 3
    r = cli("train", "inpaint", *common[:-2], "--masks", "mixed", "--steps", 4, "--out", out)
    assert r.exit_code == 2 and "another setup" in r.output
    # the pluralistic variant starts from the GAN weights
    r = cli("train", "inpaint", *common, "--model", "pluralistic", "--z-dim", 4, "--init", out, "--steps", 1,
            "--out", tmp_path / "p.safetensors")
    assert r.exit_code == 0, r.output
    tensors, meta = weights.load_weights(tmp_path / "p.safetensors")
    assert meta["arch"] == "pluralistic" and meta["config"]["z_dim"] == 4
    assert "temperature" not in meta["config"]  # 1: the prior itself (round 1's cards)
    v = meta["validation"]  # three samples each: best of 3 at most one sample's L1, and how far apart they are
    # (both pooled over the hole pixels, summed in different orders: 1e-4 on the 0-255 scale is float32 rounding)
    assert v["val_best_of_3_hole_l1"] <= v["val_hole_l1"] + 1e-4 and v["val_diversity"] > 0
    # the next stage samples hotter: the temperature is the checkpoint's, the weights continue
    r = cli("train", "inpaint", *common, "--model", "pluralistic", "--z-dim", 4, "--init", tmp_path / "p.safetensors",
            "--temperature", 3, "--diversity", 4, "--steps", 1, "--out", tmp_path / "p3.safetensors")
    assert r.exit_code == 0, r.output
    meta3 = weights.load_weights(tmp_path / "p3.safetensors")[1] | json.loads((tmp_path / "p3.json").read_text())
    assert meta3["config"]["temperature"] == 3
    assert 0 <= meta3["history"][-1]["diversity_short"] <= 4  # DSGAN's term was trained (and logged)
    assert [s["steps"] for s in meta3["stages"]] == [3, 1, 1]  # the GAN's, the stage it continued, its own
    # a latent map (one code per bottleneck cell) from the GAN weights; not from a vector model's encoders
    r = cli("train", "inpaint", *common, "--model", "pluralistic", "--z-dim", 4, "--latent-map", "--init", out,
            "--diversity", 4, "--steps", 1, "--out", tmp_path / "pm.safetensors")
    assert r.exit_code == 0, r.output
    assert weights.load_weights(tmp_path / "pm.safetensors")[1]["config"]["latent_map"] is True
    r = cli("train", "inpaint", *common, "--model", "pluralistic", "--z-dim", 4, "--latent-map",
            "--init", tmp_path / "p.safetensors", "--steps", 1, "--out", tmp_path / "pm2.safetensors")
    assert r.exit_code == 2 and "does not match" in r.output
    r = cli("train", "inpaint", *common, "--model", "pluralistic", "--temperature", 0, "--steps", 1,
            "--out", tmp_path / "p0.safetensors")
    assert r.exit_code == 2 and "temperature" in r.output
    r = cli("train", "inpaint", *common, "--diversity", 4, "--steps", 1, "--out", tmp_path / "g.safetensors")
    assert r.exit_code == 2 and "diversity needs --model pluralistic" in r.output


def test_diversity_term_pushes_close_samples_apart_up_to_its_floor():
    """DSGAN's clipped term: floor - mean(min(hole L1 between two samples / noise distance, floor))."""
    mask = torch.zeros(2, 1, 8, 8)
    mask[:, :, 2:6, 2:6] = 1
    base = torch.rand(2, 3, 8, 8)
    noise = torch.zeros(2, 2, 16)
    noise[1] = 2 / np.pi ** 0.5  # |eps_0 - eps_1| averages its expectation for unit normals: distance 1
    apart = torch.stack([base, base + 0.05 * mask])  # the hole differs by 0.05, the outside not at all
    assert losses.diversity_sensitive_loss(apart, noise, mask, 0.04) == 0  # far enough: nothing to gain
    assert torch.isclose(losses.diversity_sensitive_loss(apart, noise, mask, 0.08), torch.tensor(0.03))
    assert torch.isclose(losses.diversity_sensitive_loss(apart, noise * 2, mask, 0.08), torch.tensor(0.055))
    close = torch.stack([base, base + 0.001]).requires_grad_(True)
    loss = losses.diversity_sensitive_loss(close, noise, mask, 0.04)
    loss.backward()
    with torch.no_grad():
        stepped = close - close.grad * 10
        assert losses.diversity_sensitive_loss(stepped, noise, mask, 0.04) < loss
        assert torch.equal(close.grad * (1 - mask), torch.zeros_like(close.grad))  # only the hole counts
    with pytest.raises(ValueError, match="two samples"):
        losses.diversity_sensitive_loss(apart[:1], noise[:1], mask, 0.04)


def test_sample_spread_best_of_k_is_measured_like_one_fill():
    """Best-of-K takes each crop's best fill, then pools the hole pixels as val_hole_l1 does."""
    from genapps.tasks.inpaint.training import sample_spread

    target = torch.zeros(2, 3, 8, 8)
    mask = torch.zeros(2, 1, 8, 8)
    mask[0, :, :2, :2], mask[1, :, :, :4] = 1, 1  # a small hole (4 px) and a large one (32 px)
    good, bad = torch.full((2, 3, 8, 8), 0.1), torch.full((2, 3, 8, 8), 0.3)
    mixed = torch.stack([torch.stack([good[0], bad[1]]), torch.stack([bad[0], good[1]])])
    r = sample_spread(mixed, target, mask)
    assert r["val_best_of_2_hole_l1"] == pytest.approx(0.1 * 255, rel=1e-5)  # crop 0 from fill 0, crop 1 from fill 1
    assert r["val_diversity"] == pytest.approx(0.2 * 255, rel=1e-5)
    one = sample_spread(torch.stack([good, good]), target, mask)
    assert one["val_best_of_2_hole_l1"] == pytest.approx(float(losses.hole_l1(good, target, mask)) * 255)
    assert one["val_diversity"] == 0


def test_pluralistic_temperature_scales_how_far_samples_spread(tiny_models):
    """Same noise, hotter sampling: the fills differ more; at 0 every sample is the prior mean's fill."""
    from genapps.tasks.inpaint.task import load_model

    model, _ = load_model(str(tiny_models["pluralistic"]))
    x = torch.cat([torch.rand(2, 3, 32, 32), (torch.rand(2, 1, 32, 32) > 0.6).float()], 1)

    @torch.no_grad()
    def spread(t):
        model.temperature = t
        a, b = (model(x, torch.Generator().manual_seed(s)) for s in (1, 2))
        return float((a - b).abs().mean())

    assert spread(0.0) == 0.0
    assert 0 < spread(1.0) < spread(4.0)
    with torch.no_grad():
        mu, _ = model.prior_params(x)
        model.temperature = 0.0
        assert torch.equal(model(x, torch.Generator().manual_seed(5)), model.decode(x, mu))


def test_latent_map_is_one_code_per_bottleneck_cell():
    """--latent-map: the prior is a map at the bottleneck's size; a constant map acts as the vector z;
    the KL and the diversity term treat a map's cells as one long vector's entries."""
    from genapps.nn.dilated import DilatedBottleneck

    torch.manual_seed(0)
    neck = DilatedBottleneck(8, (1, 2), z_dim=3)
    torch.nn.init.normal_(neck.inject.weight)
    feats, z = torch.randn(2, 8, 4, 5), torch.randn(2, 3)
    neck.latent = z
    as_vector = neck(feats)
    neck.latent = z[:, :, None, None].expand(2, 3, 4, 5)
    assert torch.allclose(neck(feats), as_vector, atol=1e-6)
    model = define_G("pluralistic", ngf=4, z_dim=4, latent_map=True)
    x = torch.cat([torch.rand(2, 3, 64, 96), (torch.rand(2, 1, 64, 96) > 0.5).float()], 1)
    mu, logvar = model.prior_params(x)
    assert mu.shape == logvar.shape == (2, 4, 2, 3)  # 1/32 of the input, as the bottleneck's features
    assert model.posterior_params(x[:, :3], x[:, 3:])[0].shape == (2, 4, 2, 3)
    with torch.no_grad():
        for p in model.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.3)
        a, b = (model(x, torch.Generator().manual_seed(s)) for s in (1, 2))
        assert a.shape == (2, 3, 64, 96) and float((a - b).abs().mean()) > 0
        model.temperature = 0.0
        assert torch.equal(model(x, torch.Generator().manual_seed(1)), model(x, torch.Generator().manual_seed(2)))
    m = [torch.randn(2, 4, 2, 3) for _ in range(4)]
    cells = [t.permute(0, 2, 3, 1).reshape(12, 4) for t in m]  # each cell a vector of its own
    assert torch.allclose(losses.kl_gaussians(*m), losses.kl_gaussians(*cells))
    samples, noise, mask = torch.rand(3, 2, 3, 8, 8), torch.randn(3, 2, 4, 2, 3), torch.ones(2, 1, 8, 8)
    assert torch.allclose(losses.diversity_sensitive_loss(samples, noise, mask, 0.5),
                          losses.diversity_sensitive_loss(samples, noise.flatten(2), mask, 0.5))


def test_resume_redoes_an_image_whose_mask_changed(cli, photo_dir, tmp_path):
    masks = tmp_path / "masks"
    for rel in ("a", "b", "sub/c"):
        _save_mask(masks / f"{rel}.png", _box_mask())
    out = tmp_path / "out"
    assert cli("inpaint", photo_dir, out, "--masks", masks, "--method", "telea").exit_code == 0
    r = cli("inpaint", photo_dir, out, "--masks", masks, "--method", "telea")
    assert "0 ok, 3 skipped" in r.output
    _save_mask(masks / "a.png", np.zeros((48, 64), np.uint8))
    r = cli("inpaint", photo_dir, out, "--masks", masks, "--method", "telea")
    assert "1 ok, 2 skipped" in r.output
    assert np.array_equal(_read(out / "a.png"), _read(photo_dir / "a.png"))
    r = cli("inpaint", photo_dir, out, "--masks", masks, "--method", "ns")
    assert r.exit_code == 2 and "method" in r.output  # other settings: one line, no silent mix


def test_tta_transforms_invert_and_keep_the_outside(tiny_models):
    from genapps.inference import dihedral
    from genapps.tasks.inpaint.task import load_model

    x = torch.rand(1, 3, 4, 6)
    assert all(torch.equal(dihedral(dihedral(x, k), k, inverse=True), x) for k in range(8))
    assert len({dihedral(x, k).flatten().tolist().__repr__() for k in range(8)}) == 8
    model, _ = load_model(str(tiny_models["unet"]))
    rgb = torch.rand(3, 40, 72)
    mask = torch.zeros(40, 72, dtype=torch.bool)
    mask[10:30, 20:50] = True
    plain, tta = model_fill(model, rgb, mask), model_fill(model, rgb, mask, tta=True)
    assert torch.equal(tta[:, ~mask], rgb[:, ~mask]) and not torch.equal(plain, tta)


def test_refine_levels_continue_a_model_unchanged_then_train(cli, train_dir, tmp_path):
    """--refine adds residual blocks on U-Net levels' skip + decoder features; from --init they start as
    the identity (same fills), then train; the checkpoint's config carries them, so loading needs no flag."""
    common = ["--data", train_dir, "--holdout", 1, "--patch", 64, "--batch-size", 2, "--ngf", 4,
              "--val-every", 1000, "--masks", "thick"]
    base = tmp_path / "base.safetensors"
    assert cli("train", "inpaint", *common, "--steps", 1, "--out", base).exit_code == 0
    from genapps.tasks.inpaint.training import InpaintTrainConfig, build_generator
    g, arch, config = build_generator(InpaintTrainConfig(data=str(train_dir), out="unused", ngf=4, init=str(base),
                                                         refine="4,2,3"))
    assert arch == "unet" and config["refine"] == [2, 3, 4]
    old, _ = load_model(str(base))
    x = torch.rand(2, 4, 64, 64)
    x[:, 3] = (x[:, 3] > 0.6).float()
    with torch.no_grad():
        assert torch.equal(g.eval()(x), old(x))  # identity at start
    refined = tmp_path / "refined.safetensors"
    r = cli("train", "inpaint", *common[:-4], "--masks", "thick", "--val-every", 1, "--init", base, "--refine", "2,3,4",
            "--lr", 0.01, "--steps", 2, "--out", refined)
    assert r.exit_code == 0, r.output
    model, info = load_model(str(refined))
    assert info.config["refine"] == [2, 3, 4]
    best = json.loads(refined.with_suffix(".best.json").read_text())  # the U-Nets keep their best validation too
    assert best["config"]["refine"] == [2, 3, 4] and 1 <= best["selected"]["step"] <= 2
    assert len(best["stages"]) == 2 and best["stages"][1]["init"] == str(base)
    tensors, _ = weights.load_weights(refined)
    moved = [k for k in tensors if ".refine." in k and k.endswith("body.4.weight") and tensors[k].abs().max() > 0]
    assert moved  # the new blocks trained away from zero
    with torch.no_grad():
        assert not torch.equal(model(x), old(x))
    # its U-Net under a pluralistic model's encoders (scripts/graft_pluralistic.py), then a pluralistic stage
    plural = tmp_path / "p.safetensors"
    assert cli("train", "inpaint", *common, "--model", "pluralistic", "--z-dim", 4, "--init", base, "--steps", 1,
               "--out", plural).exit_code == 0
    graft = tmp_path / "graft.safetensors"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "graft_pluralistic.py"), "--unet", str(refined),
                    "--pluralistic", str(plural), "--out", str(graft)], check=True, capture_output=True)
    grafted, ginfo = load_model(str(graft))
    assert ginfo.arch == "pluralistic" and ginfo.config["refine"] == [2, 3, 4]
    with torch.no_grad():  # the decoder is the refined U-Net: with z's injection muted, its exact fills
        grafted.net.bottleneck.inject.weight.zero_()
        grafted.net.bottleneck.inject.bias.zero_()
        assert torch.equal(grafted.decode_net(x, torch.randn(2, 4)), model(x))
    r = cli("train", "inpaint", *common, "--model", "pluralistic", "--z-dim", 4, "--refine", "2,3,4", "--init", graft,
            "--steps", 1, "--out", tmp_path / "p2.safetensors")
    assert r.exit_code == 0, r.output
    # a model with refine levels does not continue into one without them; bad levels are one-line errors
    r = cli("train", "inpaint", *common, "--init", refined, "--steps", 1, "--out", tmp_path / "back.safetensors")
    assert r.exit_code == 2 and "does not match" in r.output
    for bad, words in (("2,x", "comma-separated"), ("5", "levels in 1..4")):
        r = cli("train", "inpaint", *common, "--refine", bad, "--steps", 1, "--out", tmp_path / "bad.safetensors")
        assert r.exit_code == 2 and words in r.output, r.output


@pytest.mark.parametrize("latent_map", [False, True])
def test_pluralistic_tta_averages_the_unet_per_sample_and_keeps_the_colour_field(latent_map):
    """With TTA a sample draws z once (the one-pass sample's draw), averages the U-Net over the 8
    transforms (a latent map transformed with the image) and adds the colour field once, in the image's
    frame: a U-Net that only returns its pre-fill (equivariant) gives exactly the one-pass sample, field
    included, where averaging the field over the transforms would blur it; a trained-looking U-Net
    gives a different fill that still depends on the draw."""
    from genapps.tasks.inpaint.task import sample_with_tta

    torch.manual_seed(0)
    model = define_G("pluralistic", ngf=4, z_dim=4, latent_map=latent_map).eval()
    with torch.no_grad():
        model.coarse.weight.normal_(0, 0.5)  # a colour field that varies over the image
        model.prior[-1].bias.normal_(0, 1)
    x = torch.cat([torch.rand(1, 3, 64, 64), (torch.rand(1, 1, 64, 64) > 0.5).float()], 1)
    draw = lambda seed: torch.Generator().manual_seed(seed)  # noqa: E731
    with torch.no_grad():
        one, tta = model(x, draw(3)), sample_with_tta(model, x, draw(3))
        assert float((one - x[:, :3]).abs().max()) > 0.05  # the field moves the fill
        assert torch.allclose(tta, one, atol=1e-6)
        for p in model.net.parameters():
            p.add_(torch.randn_like(p) * 0.2)
        one, tta = model(x, draw(3)), sample_with_tta(model, x, draw(3))
        assert not torch.allclose(tta, one, atol=1e-3)
        assert not torch.allclose(tta, sample_with_tta(model, x, draw(4)), atol=1e-3)


def test_pluralistic_mode_is_the_prior_mean_fill_with_and_without_tta(tiny_models):
    """mode: z is the prior's mean (no draw, whatever the generator), one pass or averaged over the 8
    transforms like a drawn sample; a draw differs from it."""
    from genapps.tasks.inpaint.task import _run_model, load_model, sample_with_tta

    model, _ = load_model(str(tiny_models["pluralistic"]))
    x = torch.cat([torch.rand(1, 3, 32, 32), (torch.rand(1, 1, 32, 32) > 0.6).float()], 1)
    draw = lambda seed: torch.Generator().manual_seed(seed)  # noqa: E731
    with torch.no_grad():
        mu, _ = model.prior_params(x)
        assert torch.equal(_run_model(model, x, draw(1), False, mode=True), model.decode(x, mu))
        mode = _run_model(model, x, draw(1), False, mode=True)
        assert torch.equal(mode, _run_model(model, x, draw(2), False, mode=True))
        assert not torch.equal(_run_model(model, x, draw(1), False), model.decode(x, mu))
        tta = _run_model(model, x, draw(1), True, mode=True)
        assert torch.equal(tta, sample_with_tta(model, x, draw(2), mode=True))
        model.temperature = 0.0  # the mode is what a zero temperature draws
        assert torch.allclose(tta, sample_with_tta(model, x, draw(3)), atol=1e-6)


def test_hole_masks_pair_each_output_with_its_own_mask_when_measured_out_of_order():
    """The writer threads measure an output after the model has filled the next images: each output
    still finds its own mask (a single "last mask" slot lost the hole metrics of all but the last)."""
    from genapps.tasks.inpaint.task import HoleMasks, hole_measure

    holes = HoleMasks()
    ref = torch.rand(3, 16, 16)
    outs = [ref.clone() for _ in range(3)]
    masks = [torch.zeros(16, 16, dtype=torch.bool) for _ in range(3)]
    for i, (o, m) in enumerate(zip(outs, masks)):
        m[i:i + 4, :] = True
        o[:, m] = 0.0  # a black fill: hole L1 = the reference's mean inside that hole
        holes.put(o, m)
    measure = hole_measure(holes)
    for i in (0, 2, 1):  # out of order, after every image was made
        expected = float(ref[:, masks[i]].mean()) * 255
        assert measure(outs[i], ref)["hole_l1"] == pytest.approx(expected, abs=0.6)  # (8-bit rounding)
    assert "hole_l1" not in measure(outs[0], ref)  # taken once
    assert "hole_l1" not in measure(ref.clone(), ref)  # an output made elsewhere has no mask here


def test_every_image_gets_its_hole_metrics(cli, photo_dir, tmp_path):
    assert cli("masks", photo_dir, tmp_path / "m", "--kind", "thick").exit_code == 0
    r = cli("inpaint", photo_dir, tmp_path / "out", "--method", "telea", "--masks", tmp_path / "m",
            "--reference", photo_dir)
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    stats = report["stages"][0]["stats"]
    assert stats["metrics"]["hole_l1"]["n"] == stats["ok"] >= 2
