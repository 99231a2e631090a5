"""Synthetic h_last with a planted class direction per layer: for tests, benchmarks and examples."""

from collections.abc import Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from interp.errors import InterpError


def synthetic_activations(
    n_layers: int = 4,
    n_prompts: int = 400,
    d_model: int = 32,
    separation: Sequence[float] | None = None,
    spectrum: float = 1.0,
    seed: int = 0,
) -> tuple[Float[Tensor, "layer prompt d_model"], list[str]]:
    """Gaussian h_last-like activations with a planted class direction per layer.

    Layer l has covariance with eigenvalues ``k^-spectrum`` in a random basis, a large offset and a
    few high-variance dimensions (as residual streams have), and class means
    ``separation[l]`` apart in Mahalanobis distance (0: no signal). Labels alternate
    "benign" / "harmful" in a shuffled order.

    >>> acts, labels = synthetic_activations(n_layers=2, n_prompts=10, d_model=4)
    >>> tuple(acts.shape), sorted(set(labels))
    ((2, 10, 4), ['benign', 'harmful'])
    """
    gen = torch.Generator().manual_seed(seed)
    if separation is None:
        separation = [3.0 * layer / max(n_layers - 1, 1) for layer in range(n_layers)]
    if len(separation) != n_layers:
        raise InterpError(f"separation has {len(separation)} entries for {n_layers} layers.")
    y = (torch.arange(n_prompts) % 2).to(torch.float32)[torch.randperm(n_prompts, generator=gen)]
    eigen = torch.arange(1, d_model + 1, dtype=torch.float32) ** (-spectrum)
    eigen = eigen / eigen.mean()
    acts = torch.empty(n_layers, n_prompts, d_model)
    for layer in range(n_layers):
        basis, _ = torch.linalg.qr(torch.randn(d_model, d_model, generator=gen))
        planted = torch.randn(d_model, generator=gen)
        planted = planted / planted.norm()
        z = torch.randn(n_prompts, d_model, generator=gen) + (y[:, None] - 0.5) * float(separation[layer]) * planted
        h = (z * eigen.sqrt()) @ basis.T + 3.0 * torch.randn(d_model, generator=gen)
        h[:, : min(3, d_model)] *= 20.0
        acts[layer] = h
    labels = ["harmful" if v else "benign" for v in y.tolist()]
    return acts, labels
