"""Super-resolution in LR space: models, weights, training data and training.

* :class:`ESPCN` and its :class:`ESPCNConfig` (the deployed network: LR convolutions, one sub-pixel layer, an
  optional nearest-neighbour skip); :class:`RepESPCN`, its re-parameterized training form
  (:mod:`subpixel.sr.rep_blocks`); :func:`save` / :func:`load` (safetensors + JSON config);
  :func:`pretrained` (bundled ×2, ×3, ×4 weights of the ``"rep"`` and ``"espcn"`` families, no network).
* :mod:`subpixel.sr.data`: random aligned LR/HR patches from folders of HR images.
* :mod:`subpixel.sr.train`: ``subpixel train`` and :func:`subpixel.sr.train.train`.
* :mod:`subpixel.sr.protocol`: the standard evaluation protocol and its one evaluation loop
  (:func:`~subpixel.sr.protocol.score_images`), over :mod:`~subpixel.sr.resize` (MATLAB bicubic ``imresize``),
  :mod:`~subpixel.sr.color` (BT.601 Y), :mod:`~subpixel.sr.metrics` (PSNR, SSIM) and :mod:`~subpixel.sr.testsets`.
* :mod:`subpixel.sr.evaluate`: ``subpixel evaluate`` and :func:`evaluate`; the standing beside the published figures.
* :mod:`subpixel.sr.optim`: the learning-rate schedule and the optimisation step of every training loop.

Examples:
    >>> import torch, subpixel.sr
    >>> model = subpixel.sr.pretrained(3)
    >>> model(torch.rand(1, 1, 8, 8)).shape
    torch.Size([1, 1, 24, 24])
"""

from subpixel.sr.evaluate import evaluate
from subpixel.sr.models import (
    ESPCN,
    ESPCNConfig,
    RepESPCN,
    load,
    pretrained,
    pretrained_models,
    pretrained_scales,
    save,
)
from subpixel.sr.protocol import imresize, psnr, run_protocol, score_pair, ssim

__all__ = [
    "ESPCN",
    "ESPCNConfig",
    "RepESPCN",
    "evaluate",
    "imresize",
    "load",
    "pretrained",
    "pretrained_models",
    "pretrained_scales",
    "psnr",
    "run_protocol",
    "save",
    "score_pair",
    "ssim",
]
