"""BatchTopK training (Bussmann et al. 2024, *BatchTopK Sparse Autoencoders*): the ``k x batch`` largest latent
activations of the whole batch are kept, not the ``k`` largest of each row, so that a row may use more latents
or fewer than ``k`` and the batch uses ``k`` per row on average.

With sparsify's ``SparseCoder``'s parameters (its TopK forward selects per row, so this forward is written
here; the AuxK loss and the FVU follow sparsify's formulas)::

    pre    = ReLU((x - b_dec) W_enc^T + b_enc)                     (b_dec not subtracted for a transcoder)
    codes  = pre * (pre >= the (k x batch)-th largest value of pre over the batch)
    y_hat  = codes W_dec + b_dec (+ x W_skip^T)
    fvu    = ||y - y_hat||^2 / ||y - mean(y)||^2
    auxk   = min(dead / k_aux, 1) ||e_hat - (y - y_hat)||^2 / ||y - mean(y)||^2, e_hat decoded from the
             k_aux = d_out / 2 largest pre-activations among dead latents

At inference a batch is not there to select from: the dictionary becomes a JumpReLU with one threshold for
every latent, the mean over training of each batch's smallest kept activation (an exponential moving average
with ``THRESHOLD_DECAY``, kept in the coder's state so that a resumed run goes on bit-exactly).
"""

from typing import NamedTuple

import torch
from torch import Tensor

THRESHOLD_DECAY = 0.99
THRESHOLD_BUFFER = "batch_topk_threshold"  # the coder's buffer: the running threshold (NaN before the first step)


class BatchTopKOutput(NamedTuple):
    """What the training loop reads of a forward (the names of sparsify's ``ForwardOutput``)."""

    sae_out: Tensor
    latent_acts: Tensor  # [batch, d_sae]: the kept activations, dense
    latent_indices: Tensor  # the latents that fired in the batch (with repeats)
    fvu: Tensor
    auxk_loss: Tensor


def add_threshold(coder) -> None:
    """Give ``coder`` the running-threshold buffer (saved and restored with its state dict)."""
    coder.register_buffer(THRESHOLD_BUFFER, torch.tensor(float("nan")))


def batch_topk_forward(coder, x: Tensor, y: Tensor | None, k: int, dead_mask: Tensor | None) -> BatchTopKOutput:
    """One BatchTopK forward of ``coder`` on the batch ``x`` (target ``y``; ``None``: autoencoding), updating its
    running threshold; see the module docstring."""
    transcoder = y is not None
    target: Tensor = x if y is None else y
    pre = torch.relu(coder.encoder(x if transcoder else x - coder.b_dec))
    kept = min(k * pre.shape[0], pre.numel())
    cutoff = pre.flatten().topk(kept, sorted=False).values.min()
    codes = pre * (pre >= cutoff) * (pre > 0)
    out = codes @ coder.W_dec + coder.b_dec
    if coder.W_skip is not None:
        out = out + x @ coder.W_skip.mT
    residual = target - out
    total_variance = (target - target.mean(0)).pow(2).sum()
    auxk_loss = out.new_tensor(0.0)
    if dead_mask is not None and (n_dead := int(dead_mask.sum())) > 0:
        k_aux = min(target.shape[-1] // 2, n_dead)
        scale = min(n_dead / (target.shape[-1] // 2), 1.0)
        values, indices = torch.where(dead_mask[None], pre, -torch.inf).topk(k_aux, sorted=False)
        dead_codes = torch.zeros_like(pre).scatter_(-1, indices, values)
        auxk_loss = scale * (dead_codes @ coder.W_dec - residual.detach()).pow(2).sum() / total_variance
    with torch.no_grad():
        smallest = codes[codes > 0].min() if bool((codes > 0).any()) else cutoff
        threshold = getattr(coder, THRESHOLD_BUFFER)
        first = bool(torch.isnan(threshold))
        threshold.copy_(smallest if first else THRESHOLD_DECAY * threshold + (1 - THRESHOLD_DECAY) * smallest)
    return BatchTopKOutput(out, codes, codes.nonzero()[:, 1], residual.pow(2).sum() / total_variance, auxk_loss)
