"""A synthetic image-shaped data set whose true label distribution p*(y|x) is known exactly.

Classes y have prior pi_y; a latent ``z | y ~ N(mu_y, s^2 I_d)`` is embedded in image space by
an orthonormal basis ``U`` (3072 x d) and isotropic noise ``sigma^2`` is added:
``x = U z + eps``. The class-conditionals share the covariance ``s^2 U U^T + sigma^2 I``, so
the posterior is softmax-linear in closed form:

    log p*(y|x) = (mu_y . U^T x - |mu_y|^2 / 2) / (s^2 + sigma^2) + log pi_y + const.

Inputs are drawn from the mixture and each label is then *sampled from p*(y|x)*, so a teacher's
distance to p* on the training inputs can be measured exactly (``train/kl_pstar``).
Not augmented: any transformation of x would change p*(y|x).
"""

from __future__ import annotations

import torch

from .base import Augment, DataBundle, TensorSplit, split_indices

NUM_CLASSES = 10
LATENT_DIM = 16
N_TRAIN, N_TEST = 4000, 1000
SEPARATION = 0.7  # scale of the class means in latent space: Bayes accuracy about 74%
S2, SIGMA2 = 1.0, 0.25
DATA_SEED = 2024


def where(root) -> str:
    return "generated in memory (no files needed)"


def generate(n: int, gen: torch.Generator, params=None):
    if params is None:
        mu = torch.randn(NUM_CLASSES, LATENT_DIM, generator=gen) * SEPARATION
        # smooth patterns (random 4x4 maps upsampled), so convolutions and pooling can see them
        coarse = torch.randn(LATENT_DIM, 3, 4, 4, generator=gen)
        smooth = torch.nn.functional.interpolate(coarse, size=32, mode="bilinear", align_corners=False)
        basis, _ = torch.linalg.qr(smooth.reshape(LATENT_DIM, -1).T)
        params = (mu, basis)
    mu, basis = params
    y0 = torch.randint(0, NUM_CLASSES, (n,), generator=gen)
    z = mu[y0] + torch.randn(n, LATENT_DIM, generator=gen) * S2 ** 0.5
    x = z @ basis.T + torch.randn(n, 3 * 32 * 32, generator=gen) * SIGMA2 ** 0.5
    p_star = true_posterior(x, params)
    y = torch.multinomial(p_star, 1, generator=gen).squeeze(1)
    return x.view(n, 3, 32, 32), y, p_star, params


def true_posterior(x: torch.Tensor, params) -> torch.Tensor:
    mu, basis = params
    proj = x.reshape(len(x), -1) @ basis
    logits = (proj @ mu.T - 0.5 * (mu * mu).sum(1)) / (S2 + SIGMA2)  # uniform prior
    return torch.softmax(logits, dim=1)


def load(root, val_fraction: float, split_seed: int, augment: bool, download: bool) -> DataBundle:
    gen = torch.Generator().manual_seed(DATA_SEED)
    x, y, p_star, params = generate(N_TRAIN, gen)
    xt, yt, _, _ = generate(N_TEST, gen, params)
    tr, va = split_indices(N_TRAIN, val_fraction, split_seed)
    full = TensorSplit(x, y)
    return DataBundle(
        name="synthetic", num_classes=NUM_CLASSES, input_size=32,
        mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
        train=full.subset(tr), val=full.subset(va), test=TensorSplit(xt, yt),
        augment=Augment(), p_star_train=p_star[tr],
    )
