"""subpixel: transposed, sub-pixel and LR-space convolutions as one exact operation.

The three forms of an upsampling convolution
(:func:`~subpixel.functional.conv_transpose`, :func:`~subpixel.functional.fractionally_strided_conv`,
:func:`~subpixel.functional.lr_conv_shuffle`) compute the same thing; :class:`SubPixelConv2d` and its 1-D and 3-D
siblings are drop-in replacements for ``nn.ConvTranspose*d`` that compute the fastest one.

Upscaling a picture is one call, ``subpixel.upscale(image, scale=3)`` (PIL image, numpy array or tensor in, the
same kind out; :mod:`subpixel.upscaling.api`). It is imported on first use, so ``import subpixel`` stays light.

Examples:
    >>> import torch, subpixel
    >>> deconv = torch.nn.ConvTranspose2d(64, 32, kernel_size=4, stride=2, padding=1)
    >>> layer = subpixel.from_conv_transpose(deconv)
    >>> x = torch.randn(1, 64, 16, 16)
    >>> bool(torch.allclose(layer(x), deconv(x), atol=1e-5))
    True
"""

from subpixel import dispatch, functional
from subpixel.convert import ConversionReport, convert_model, from_conv_transpose, to_conv_transpose
from subpixel.errors import SubpixelError
from subpixel.init import icnr_
from subpixel.layers import (
    FractionallyStridedConv1d,
    FractionallyStridedConv2d,
    FractionallyStridedConv3d,
    SubPixelConv1d,
    SubPixelConv2d,
    SubPixelConv3d,
    SubPixelConvNd,
)
from subpixel.shuffle import (
    PixelShuffle1d,
    PixelShuffle2d,
    PixelShuffle3d,
    PixelUnshuffle1d,
    PixelUnshuffle2d,
    PixelUnshuffle3d,
    convert_channel_order,
    pixel_shuffle,
    pixel_unshuffle,
)

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """``subpixel.upscale``, the function :func:`subpixel.upscaling.api.upscale`, imported on first access."""
    if name == "upscale":
        from subpixel.upscaling.api import upscale

        globals()["upscale"] = upscale  # later look-ups find it directly
        return upscale
    raise AttributeError(f"module 'subpixel' has no attribute {name!r}")


__all__ = [
    "ConversionReport",
    "FractionallyStridedConv1d",
    "FractionallyStridedConv2d",
    "FractionallyStridedConv3d",
    "PixelShuffle1d",
    "PixelShuffle2d",
    "PixelShuffle3d",
    "PixelUnshuffle1d",
    "PixelUnshuffle2d",
    "PixelUnshuffle3d",
    "SubPixelConv1d",
    "SubPixelConv2d",
    "SubPixelConv3d",
    "SubPixelConvNd",
    "SubpixelError",
    "__version__",
    "convert_channel_order",
    "convert_model",
    "dispatch",
    "from_conv_transpose",
    "functional",
    "icnr_",
    "pixel_shuffle",
    "pixel_unshuffle",
    "to_conv_transpose",
    "upscale",
]
