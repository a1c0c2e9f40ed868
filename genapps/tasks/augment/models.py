"""Models of the augment task: a conditional VAE, a conditional GAN (DCGAN-style generator; its
projection discriminator is genapps.nn's) and the small CNN classifier used for the
pseudo-labels, the quality filter and the downstream proof.

Images are (B, C, S, S) in [0, 1] with S a multiple of 4; labels are (B, K) float tensors,
one-hot (or soft, for interpolation between classes). Models never touch file paths.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genapps.nn.blocks import ResidualBlock
from genapps.nn.discriminators import ProjectionDiscriminator
from genapps.tasks.augment.config import DECODERS



def reparameterize(mu: torch.Tensor, sigma: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """z = mu + sigma * eps (any matching shapes). Gradients reach mu and sigma, never eps."""
    return mu + sigma * eps.detach()


class CVAE(nn.Module):
    """Class-conditional VAE: encoder (x, y) -> (mu, logvar) of q(z|x, y); decoder (z, y) -> logits.

    x: (B, C, S, S) in [0, 1]; y: (B, K); z: (B, z_dim). forward returns (logits, mu, logvar), the
    logits being the decoder's pre-sigmoid output (B, C, S, S).
    decoder "conv": two transposed convolutions; "residual": a residual block (genapps.nn's
    ResidualBlock) before each of them, for sharper samples at about twice the decoder's cost.
    """

    def __init__(self, channels: int = 1, num_classes: int = 10, image_size: int = 28, z_dim: int = 16,
                 width: int = 32, hidden: int = 256, decoder: str = "conv"):
        super().__init__()
        if decoder not in DECODERS:
            raise ValueError(f"unknown CVAE decoder {decoder!r}; valid: {', '.join(DECODERS)}")
        self.channels, self.num_classes, self.image_size, self.z_dim = channels, num_classes, image_size, z_dim
        s, w = image_size // 4, width
        self.base = (2 * w, s)
        self.enc = nn.Sequential(
            nn.Conv2d(channels, w, 4, 2, 1), nn.LeakyReLU(0.2, True),
            nn.Conv2d(w, 2 * w, 4, 2, 1), nn.BatchNorm2d(2 * w), nn.LeakyReLU(0.2, True),
            nn.Flatten())
        self.enc_fc = nn.Sequential(nn.Linear(2 * w * s * s + num_classes, hidden), nn.LeakyReLU(0.2, True),
                                    nn.Linear(hidden, 2 * z_dim))
        self.dec_fc = nn.Sequential(nn.Linear(z_dim + num_classes, hidden), nn.ReLU(True),
                                    nn.Linear(hidden, 2 * w * s * s), nn.ReLU(True))
        res = (lambda ch: [ResidualBlock(ch, 0.5)]) if decoder == "residual" else (lambda ch: [])
        self.dec = nn.Sequential(
            *res(2 * w), nn.ConvTranspose2d(2 * w, w, 4, 2, 1), nn.BatchNorm2d(w), nn.ReLU(True),
            *res(w), nn.ConvTranspose2d(w, channels, 4, 2, 1))

    def encode(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.enc_fc(torch.cat([self.enc(x * 2 - 1), y], 1))
        mu, logvar = h.chunk(2, 1)
        return mu, logvar.clamp(-12, 8)

    def decode_logits(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        ch, s = self.base
        return self.dec(self.dec_fc(torch.cat([z, y], 1)).view(-1, ch, s, s))

    def forward(self, x: torch.Tensor, y: torch.Tensor):
        mu, logvar = self.encode(x, y)
        z = reparameterize(mu, (0.5 * logvar).exp(), torch.randn_like(mu))
        return self.decode_logits(z, y), mu, logvar

    def generate(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(B, z_dim), (B, K) -> images (B, C, S, S) in [0, 1]."""
        return torch.sigmoid(self.decode_logits(z, y))


class Generator(nn.Module):
    """DCGAN-style conditional generator: (z (B, z_dim), y (B, K)) -> (B, C, S, S) in [0, 1].

    The class enters as a learned embedding (a linear map of y, so soft labels interpolate)
    concatenated to z, and again through class-conditional batch-norm gains and biases.
    """

    def __init__(self, channels: int = 1, num_classes: int = 10, image_size: int = 28, z_dim: int = 64,
                 width: int = 32):
        super().__init__()
        self.channels, self.num_classes, self.image_size, self.z_dim = channels, num_classes, image_size, z_dim
        s, w = image_size // 4, width
        self.base = (2 * w, s)
        self.embed = nn.Linear(num_classes, 64, bias=False)
        self.fc = nn.Linear(z_dim + 64, 2 * w * s * s)
        self.bn0 = nn.BatchNorm2d(2 * w, affine=False)
        self.up1 = nn.ConvTranspose2d(2 * w, w, 4, 2, 1)
        self.bn1 = nn.BatchNorm2d(w, affine=False)
        self.up2 = nn.ConvTranspose2d(w, w // 2, 4, 2, 1)
        self.bn2 = nn.BatchNorm2d(w // 2, affine=False)
        self.out = nn.Conv2d(w // 2, channels, 3, 1, 1)
        self.film = nn.Linear(num_classes, 2 * (2 * w + w + w // 2))  # class-conditional BN gain/bias
        nn.init.zeros_(self.film.weight)

    def _cbn(self, h, bn, gb):
        g, b = gb.chunk(2, 1)
        return F.relu(bn(h) * (1 + g[:, :, None, None]) + b[:, :, None, None])

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        ch, s = self.base
        film = self.film(y).split([2 * ch, 2 * (ch // 2), 2 * (ch // 4)], 1)
        h = self._cbn(self.fc(torch.cat([z, self.embed(y)], 1)).view(-1, ch, s, s), self.bn0, film[0])
        h = self._cbn(self.up1(h), self.bn1, film[1])
        h = self._cbn(self.up2(h), self.bn2, film[2])
        return torch.sigmoid(self.out(h))

    def generate(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self(z, y)


class Classifier(nn.Module):
    """The small CNN of the proof: 2 x (conv3x3 + ReLU + maxpool), dense 128, dense K.

    (B, C, S, S) in [0, 1] -> logits (B, K); `features` gives the penultimate (B, 128) activations.
    """

    def __init__(self, channels: int = 1, num_classes: int = 10, image_size: int = 28, width: int = 16):
        super().__init__()
        s = image_size // 4
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 3, 1, 1), nn.ReLU(True), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, 1, 1), nn.ReLU(True), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(2 * width * s * s, 128), nn.ReLU(True))
        self.drop = nn.Dropout(0.3)
        self.head = nn.Linear(128, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x - 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.features(x)))


# vaegan: the CVAE trained with an adversarial loss on its decoded prior samples (VAE-GAN, Larsen et
# al. 2016); same network, so its weights load as a CVAE. ENCODER_MODELS have q(z|x, y).
GENERATORS = {"cvae": CVAE, "vaegan": CVAE, "cgan": Generator}
MODELS = GENERATORS | {"cgan_d": ProjectionDiscriminator, "classifier": Classifier}


def define_model(name: str, **config) -> nn.Module:
    """Build a model by name; an unknown name lists the valid ones."""
    if name not in MODELS:
        raise ValueError(f"unknown augment model {name!r}; valid: {', '.join(MODELS)}")
    return MODELS[name](**config)
