import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Small tensors: one thread is faster than two and leaves a core to whatever else runs."""
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _reruns_reach_the_resume_check(request, monkeypatch):
    """A rerun in these tests reaches the per-file resume check (genapps.batch) they test; the whole-run
    "nothing to do" stamp in front of it (genapps.stamps) is tested, with that check behind it, in
    tests/test_stamps.py."""
    if request.path.name != "test_stamps.py":
        from genapps import stamps

        monkeypatch.setattr(stamps.Stamp, "current", lambda self: None)


@pytest.fixture
def cli():
    """Invoke the real `genapps` click group; returns the click Result."""
    from genapps.cli import main

    def invoke(*args):
        return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)

    return invoke


def photo(size=(48, 64), seed=0) -> np.ndarray:
    """A smooth-plus-texture RGB uint8 test image (H, W, 3)."""
    rng = np.random.default_rng(seed)
    h, w = size
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([128 + 100 * np.sin(x / 7 + c) * np.cos(y / 9 - c) for c in range(3)], -1)
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


@pytest.fixture
def photo_dir(tmp_path):
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    for i, name in enumerate(["a.png", "b.jpg", "sub/c.png"]):
        Image.fromarray(photo(seed=i)).save(folder / name, quality=95)
    return folder
