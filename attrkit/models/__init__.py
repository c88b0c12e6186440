"""Model definitions: plain ``nn.Module``s in eval mode, seeded init, ``model.config`` to rebuild.

>>> from attrkit.models import SimpleMLP, build
>>> m = SimpleMLP(nvars=2)
>>> sum(p.numel() for p in m.parameters())
37
>>> type(build(m.config)).__name__
'SimpleMLP'
"""

from ._base import DEFAULT_SEED, build, registered
from .cnn import BenchCNN, SmallCNN, bench_cnn
from .mlp import ACTIVATIONS, MLP, LogisticModel, SimpleMLP, bench_mlp
from .multimodal import ImageTableNet
from .text import TextTransformer
from .vgg import VGG, VGG_CONFIGS, vgg, vgg16_quarter
from .vit import SmallViT

__all__ = [
    "LogisticModel", "SimpleMLP", "MLP", "SmallCNN", "VGG", "vgg", "vgg16_quarter",
    "bench_cnn", "BenchCNN", "bench_mlp", "build", "registered", "ACTIVATIONS", "VGG_CONFIGS",
    "DEFAULT_SEED", "TextTransformer", "ImageTableNet", "SmallViT",
]
