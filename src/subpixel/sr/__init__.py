"""Super-resolution with ESPCN: models, weights, training data and training.

* :class:`ESPCN` and its :class:`ESPCNConfig`; :func:`save` / :func:`load` (safetensors + JSON config);
  :func:`pretrained` (the bundled ×2, ×3, ×4 weights, no network).
* :mod:`subpixel.sr.data`: random aligned LR/HR patches from folders of HR images.
* :mod:`subpixel.sr.train`: ``subpixel train`` and :func:`subpixel.sr.train.train`.

Examples:
    >>> import torch, subpixel.sr
    >>> model = subpixel.sr.pretrained(3)
    >>> model(torch.rand(1, 1, 8, 8)).shape
    torch.Size([1, 1, 24, 24])
"""

from subpixel.sr.models import ESPCN, ESPCNConfig, load, pretrained, pretrained_scales, save

__all__ = ["ESPCN", "ESPCNConfig", "load", "pretrained", "pretrained_scales", "save"]
