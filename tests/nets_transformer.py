"""Small architectures for the transformer / automatic-layer tests: a ViT (conv patch embedding, class and register
tokens, nn.MultiheadAttention blocks), a Swin-like channels-last net, a torchvision-style ResNet (one ReLU module
reused per block) and a DenseNet-style net (concatenation, final norm). Random init under fixed seeds."""
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln1(x)); x + mlp(ln2(x)) with GELU."""

    def __init__(self, d, heads):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.fc1, self.act, self.fc2 = nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d)

    def forward(self, x):
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.fc2(self.act(self.fc1(self.norm2(x))))


class TinyViT(nn.Module):
    """16x16 images, 4x4 patches -> a 4x4 grid; ``1 + registers`` prefix tokens; ``pool``: "cls" or "mean"."""

    def __init__(self, d=16, heads=2, depth=2, classes=3, registers=0, pool="cls", seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.patch = nn.Conv2d(3, d, 4, stride=4)
        self.cls = nn.Parameter(torch.randn(1, 1 + registers, d) * 0.5)
        self.pos = nn.Parameter(torch.randn(1, 1 + registers + 16, d) * 0.5)
        self.blocks = nn.Sequential(*[Block(d, heads) for _ in range(depth)])
        self.norm, self.head, self.pool, self.prefix = nn.LayerNorm(d), nn.Linear(d, classes), pool, 1 + registers
        self.eval()

    def forward(self, x):
        t = self.patch(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(x.shape[0], -1, -1), t], 1) + self.pos
        t = self.norm(self.blocks(t))
        return self.head(t[:, 0] if self.pool == "cls" else t[:, self.prefix:].mean(1))


class SwinLike(nn.Module):
    """Patch embedding then channels-last blocks ``[N, H, W, C]`` (LayerNorm + Linear on the last dim), mean pool."""

    def __init__(self, d=12, classes=3, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.patch = nn.Conv2d(3, d, 4, stride=4)
        self.stage = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d), nn.GELU())
        self.norm, self.head = nn.LayerNorm(d), nn.Linear(d, classes)
        self.eval()

    def forward(self, x):
        h = self.stage(self.patch(x).permute(0, 2, 3, 1))
        return self.head(self.norm(h).mean((1, 2)))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)                       # reused, as torchvision does
        self.downsample = None if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += idt
        return self.relu(out)


class ResNetLike(nn.Module):
    def __init__(self, classes=4, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv1, self.bn1, self.relu = nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU()
        self.maxpool = nn.MaxPool2d(2)
        widths = [(8, 8, 1), (8, 16, 2), (16, 16, 2), (16, 32, 2)]
        for i, (a, b, s) in enumerate(widths, 1):
            setattr(self, f"layer{i}", nn.Sequential(BasicBlock(a, b, s), BasicBlock(b, b, 1)))
        self.norm_pre = nn.Identity()                           # timm's pattern: an identity before the head
        self.avgpool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(32, classes)
        self.eval()

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.norm_pre(self.layer4(self.layer3(self.layer2(self.layer1(x)))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class DenseLayer(nn.Module):
    def __init__(self, cin, growth):
        super().__init__()
        self.norm, self.conv = nn.BatchNorm2d(cin), nn.Conv2d(cin, growth, 3, 1, 1)

    def forward(self, x):
        return torch.cat([x, self.conv(F.relu(self.norm(x)))], 1)


class DenseLike(nn.Module):
    def __init__(self, classes=4, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.features = nn.Sequential(OrderedDict(conv0=nn.Conv2d(3, 8, 3, 2, 1), block1=nn.Sequential(
            DenseLayer(8, 4), DenseLayer(12, 4)), pool=nn.AvgPool2d(2), block2=DenseLayer(16, 4),
            norm5=nn.BatchNorm2d(20)))
        self.classifier = nn.Linear(20, classes)
        self.eval()

    def forward(self, x):
        f = F.relu(self.features(x))
        return self.classifier(F.adaptive_avg_pool2d(f, 1).flatten(1))
