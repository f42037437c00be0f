"""The fixed-budget study: LR-space versus HR-space networks at equal compute.

* :func:`count_macs`: exact multiply-adds and parameters, per layer, per output pixel and in total.
* :func:`to_lr_space`: an upsample-first (HR-space) network rewritten exactly as an LR-space network.
* :mod:`subpixel.study.families` and :mod:`subpixel.study.experiment`: the three families at equal MACs per
  HR pixel, trained and evaluated alike (``subpixel study``).
"""

from subpixel.study.blocks import BicubicUpsample2d, cubic, interpolation_taps
from subpixel.study.lr_space import hr_conv_to_lr, hr_to_lr_weight_map, to_lr_space
from subpixel.study.macs import LayerCount, MacReport, count_macs

__all__ = [
    "BicubicUpsample2d",
    "LayerCount",
    "MacReport",
    "count_macs",
    "cubic",
    "hr_conv_to_lr",
    "hr_to_lr_weight_map",
    "interpolation_taps",
    "to_lr_space",
]
