"""Rules bound to call sites on real CNN shapes, without torchvision: attrkit's own small residual (one ReLU
module reused per block, as torchvision's ResNet), dense (concatenation, BatchNorm after it), gated
(squeeze-excitation), MobileNet-like (Hardswish, Hardsigmoid gate, functional calls) and ConvNeXt-like (LayerNorm,
GELU) networks. Every rule method runs; LRP conserves relevance on bias-free copies; DeepLIFT sums to delta;
batch sizes 1, 2, 3 agree; Captum's DeepLift and GuidedBackprop agree on the module-per-use twin; the traps of
issue 14 (float16, DataParallel, no rectifier) are refused or handled.
"""
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import attrkit as ak
from attrkit.core.modules import count_hooks
from attrkit.propagation import Canonizer, Epsilon, Flat, LRPComposite, MergeBatchNorm, ZPlus, make_rule

RULE_METHODS = ["guided_backprop", "deconvnet", "lrp", "deeplift", "deeplift_shap"]


def rel(a, b):
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def randomise_bn(model, bias_free=False):
    g = torch.Generator().manual_seed(3)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_var.copy_(torch.rand(m.num_features, generator=g) * 2 + 0.3)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            if bias_free:
                m.running_mean.zero_()
                m.bias.data.zero_()
            else:
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                m.bias.data.copy_(torch.rand(m.num_features, generator=g) * 0.4 - 0.2)
        elif bias_free and getattr(m, "bias", None) is not None and isinstance(m.bias, nn.Parameter):
            m.bias.data.zero_()
    return model.eval()


# ------------------------------------------------------------------------------------ networks
class Block(nn.Module):
    """torchvision's BasicBlock: one ``self.relu`` called twice; ``per_use`` gives each call its own module."""

    def __init__(self, cin, cout, stride=1, per_use=False):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.relu2 = nn.ReLU() if per_use else self.relu
        self.down = None if stride == 1 and cin == cout else \
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += x if self.down is None else self.down(x)
        return self.relu2(out)


class ResNet(nn.Module):
    def __init__(self, per_use=False, pool="max", seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(3, 2, 1) if pool == "max" else nn.AvgPool2d(2)
        self.layer1 = nn.Sequential(Block(8, 8, per_use=per_use), Block(8, 8, per_use=per_use))
        self.layer2 = nn.Sequential(Block(8, 16, 2, per_use=per_use))
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        x = self.pool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class Dense(nn.Module):
    """DenseNet: BatchNorm -> ReLU -> Conv on the concatenation of all earlier features (x.relu() functional)."""

    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.norms = nn.ModuleList([nn.BatchNorm2d(8 + 4 * i) for i in range(3)])
        self.convs = nn.ModuleList([nn.Conv2d(8 + 4 * i, 4, 3, padding=1) for i in range(3)])
        self.norm5 = nn.BatchNorm2d(20)
        self.fc = nn.Linear(20, 5)

    def forward(self, x):
        feats = [self.stem(x)]
        for norm, conv in zip(self.norms, self.convs):
            feats.append(conv(norm(torch.cat(feats, 1)).relu()))
        out = F.relu(self.norm5(torch.cat(feats, 1)))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


class SE(nn.Module):
    def __init__(self, c, act=nn.ReLU, gate=nn.Sigmoid):
        super().__init__()
        self.fc1, self.fc2, self.act, self.gate = nn.Conv2d(c, c // 2, 1), nn.Conv2d(c // 2, c, 1), act(), gate()

    def forward(self, x):
        return x * self.gate(self.fc2(self.act(self.fc1(F.adaptive_avg_pool2d(x, 1)))))


class Gated(nn.Module):
    """Squeeze-excitation after a conv (sigmoid gate, SiLU inside; EfficientNet-style)."""

    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv, self.bn, self.se = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), SE(8, nn.SiLU)
        self.conv2, self.fc = nn.Conv2d(8, 8, 3, padding=1), nn.Linear(8, 5)

    def forward(self, x):
        x = self.se(F.silu(self.bn(self.conv(x))))
        x = torch.sigmoid(self.conv2(x)) * x          # a full-size gate from torch.sigmoid
        return self.fc(x.mean((2, 3)))


class MobileLike(nn.Module):
    """MobileNetV3-like: Hardswish modules and F.hardswish, a Hardsigmoid SE gate, depthwise convs, a reused act."""

    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.stem, self.bn = nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8)
        self.hs = nn.Hardswish()
        self.dw, self.bn2 = nn.Conv2d(8, 8, 3, 1, 1, groups=8, bias=False), nn.BatchNorm2d(8)
        self.se = SE(8, nn.ReLU, nn.Hardsigmoid)
        self.pw, self.bn3 = nn.Conv2d(8, 12, 1, bias=False), nn.BatchNorm2d(12)
        self.head = nn.Sequential(nn.Linear(12, 16), nn.Hardswish(), nn.Dropout(0.2), nn.Linear(16, 5))

    def forward(self, x):
        x = self.hs(self.bn(self.stem(x)))
        x = self.hs(self.bn2(self.dw(x)))
        x = F.hardswish(self.bn3(self.pw(self.se(x))))
        return self.head(F.adaptive_avg_pool2d(x, 1).flatten(1))


class ConvNeXtLike(nn.Module):
    """A ConvNeXt block: depthwise conv, channels-last LayerNorm, Linear-GELU-Linear, layer scale, skip add."""

    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.stem, self.dw = nn.Conv2d(3, 8, 2, 2), nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.ln, self.fc1, self.fc2 = nn.LayerNorm(8), nn.Linear(8, 16), nn.Linear(16, 8)
        self.scale = nn.Parameter(torch.full((8,), 0.5))
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        x = self.stem(x)
        y = self.ln(self.dw(x).permute(0, 2, 3, 1))
        y = self.fc2(F.gelu(self.fc1(y))).permute(0, 3, 1, 2)
        x = x + self.scale.view(1, -1, 1, 1) * y
        x = F.layer_norm(x.mean((2, 3)), (8,))
        return self.head(x)


NETS = {"residual": ResNet, "dense": Dense, "gated": Gated, "mobile": MobileLike, "convnext": ConvNeXtLike}


def data(seed=1, n=3):
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------ properties
@pytest.mark.parametrize("net", list(NETS))
def test_every_rule_method_runs_and_batches_agree(net):
    model, x = randomise_bn(NETS[net]()), data()
    opts = {"deeplift_shap": {"baseline": data(5, 4) * 0.5}}
    for method in RULE_METHODS:
        if method in ("guided_backprop", "deconvnet") and net == "convnext":
            continue                                    # GELU only: tested below
        runs = [ak.explain(model, x, method, target=[0, 3, 1], batch_size=b, **opts.get(method, {}))
                for b in (1, 2, 3)]
        assert runs[0].info["binding"] == "graph"
        assert torch.isfinite(runs[0].values).all()
        for r in runs[1:]:
            # float32 rounding of batched convs: LRP's z+ ratios amplify it to ~3e-5 on the ConvNeXt-like net
            assert rel(r.values, runs[0].values) < (1e-4 if method == "lrp" else 1e-5), (method, net)
    assert count_hooks(model) == 0


@pytest.mark.parametrize("net", list(NETS))
@pytest.mark.parametrize("opts", [{"rule": "epsilon"}, {"composite": {"conv": "gamma", "first": "flat"}},
                                  {"composite": "epsilon_gamma_box", "low": 0.0, "high": 1.0}])
def test_lrp_conserves_relevance_on_bias_free_copies(net, opts):
    """Skip additions, concatenations, gates, pooling, BatchNorm (folded or not), LayerNorm, GELU, Hardswish.
    The stabilisers absorb about eps/|z| of each neuron's relevance (1e-6 by default: up to 1e-2 of these small
    networks' logits), so they are set to 1e-9 here; z+ and alpha-beta also drop the relevance of neurons with
    no positive contribution (in these 8-channel networks ~0.5 % at a 1x1 downsampling conv; checked on
    torchvision's networks by crosscheck/graphs.py)."""
    model, x = randomise_bn(NETS[net](), bias_free=True), data()
    with torch.no_grad():
        t = model(x).argmax(1)
    a = ak.explain(model, x, "lrp", target=t, epsilon=1e-9, stabilizer=1e-9, **opts)
    f_x = a.info["f_x"]
    assert float(a.info["bias_share"].abs().max()) < 1e-4
    assert float((a.info["completeness_gap"] / f_x.abs()).max()) < 1e-4, (net, a.info["completeness_gap"], f_x)


@pytest.mark.parametrize("net", list(NETS))
def test_deeplift_sums_to_delta(net):
    model, x = randomise_bn(NETS[net]()), data()
    free = randomise_bn(NETS[net](), bias_free=True)   # a zero reference is exactly zero everywhere: LayerNorm of
    for m, base in ((model, "zeros"), (model, 0.5), (free, "zeros")):   # zeros has 1/sigma = 1/sqrt(eps)
        a = ak.explain(m, x, "deeplift", baseline=base, target=2)
        assert float(a.info["completeness_gap"].max()) < 1e-4, (net, base, a.info["completeness_gap"])


def test_reused_relu_resnet_equals_module_per_use_twin():
    reused, twin = randomise_bn(ResNet()), randomise_bn(ResNet(per_use=True))
    x = data()
    for method in ("guided_backprop", "deconvnet", "deeplift", "lrp"):
        a = ak.explain(reused, x, method, target=1)
        assert rel(a.values, ak.explain(twin, x, method, target=1).values) < 1e-6, method
        for layer in ("layer1", "layer2.0.conv1"):          # a block (traced through otherwise) and a conv
            at = ak.explain(reused, x, method, target=1, layer=layer).values
            assert rel(at, ak.explain(twin, x, method, target=1, layer=layer).values) < 1e-6, (method, layer)
    assert "layer1.0.relu#2" in a.info["rules"] or method == "lrp"


def test_dense_batchnorm_after_concatenation_is_its_own_layer():
    model, x = randomise_bn(Dense()), data()
    a = ak.explain(model, x, "lrp", target=1)
    assert torch.allclose(a.info["bias_share"], 1 - a.info["relevance_sum"] / a.info["f_x"])
    assert float(a.info["bias_share"].abs().max()) > 1e-3        # BatchNorm shifts and conv biases take a share
    assert sorted(a.info["batchnorm_layers"]) == ["norm5", "norms.0", "norms.1", "norms.2"]
    assert a.info["rules"]["norm5"].startswith("epsilon")


def test_timm_style_batchnorm_act_is_folded():
    """timm's BatchNormAct2d calls F.batch_norm then its activation: folded into the conv before it."""
    class BatchNormAct(nn.BatchNorm2d):
        def __init__(self, c):
            super().__init__(c)
            self.act = nn.ReLU()

        def forward(self, x):
            torch._assert(x.ndim == 4, "expected 4D input")        # timm checks the shape: not a use of the value
            x = F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
            return self.act(x)

    torch.manual_seed(0)
    model = randomise_bn(nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), BatchNormAct(6), nn.Flatten(),
                                       nn.Linear(6 * 16 * 16, 4)))
    plain = randomise_bn(nn.Sequential(model[0], nn.BatchNorm2d(6), nn.ReLU(), model[2], model[3]))
    plain[1].load_state_dict(model[1].state_dict(), strict=False)
    x = data()
    a = ak.explain(model, x, "lrp", target=1)
    assert len(a.info["canonized"]) == 1 and a.info["canonized"][0].endswith("-> 0")
    assert rel(a.values, ak.explain(plain, x, "lrp", target=1).values) < 1e-5


def test_residual_addition_splits_relevance_proportionally():
    """At ``relu(a + b)`` both branches receive the same signal, so ``R_a / a == R_b / b`` elementwise, and the
    two relevances add up to the relevance of the sum (bias-free: to the target output)."""
    class TwoBranch(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.a, self.b = nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.Conv2d(3, 4, 1, bias=False)
            self.fc = nn.Linear(4 * 16 * 16, 3, bias=False)

        def forward(self, x):
            return self.fc(F.relu(self.a(x) + self.b(x)).flatten(1))

    model, x = TwoBranch().eval(), data()
    t = model(x).argmax(1)
    ra = ak.explain(model, x, "lrp", target=t, layer="a")
    rb = ak.explain(model, x, "lrp", target=t, layer="b")
    with torch.no_grad():
        act_a, act_b = model.a(x), model.b(x)
    assert rel(ra.values / act_a, rb.values / act_b) < 1e-5
    total = (ra.values + rb.values).flatten(1).sum(1)
    assert torch.allclose(total, model(x).gather(1, t[:, None]).squeeze(1).detach(), rtol=1e-4)


def test_squeeze_excitation_gate_takes_no_relevance():
    """With the gate held constant, relevance at the SE input equals relevance at its output."""
    model, x = randomise_bn(Gated(), bias_free=True), data()
    t = model(x).argmax(1)
    at_in = ak.explain(model, x, "lrp", target=t, layer="bn").values.flatten(1).sum(1)
    assert torch.allclose(at_in, model(x).gather(1, t[:, None]).squeeze(1).detach(), rtol=1e-4)
    assert set(ak.explain(model, x, "lrp", target=t).info["rules"]) >= {"se:mul", "mul"}


# ------------------------------------------------------------------------------------ configuration
def test_rule_objects_user_composites_and_canonizers():
    model, x = randomise_bn(ResNet()), data()
    ref = ak.explain(model, x, "lrp", rule="epsilon", epsilon=0.01, target=1).values
    same = ak.explain(model, x, "lrp", composite={"linear": Epsilon(0.01), "conv": "epsilon"}, epsilon=0.01,
                      target=1).values
    assert rel(same, ref) < 1e-6
    assert rel(ak.explain(model, x, "lrp", rule=Epsilon(0.01), target=1).values, ref) < 1e-6
    one = ak.explain(model, x, "lrp", composite={"linear": "epsilon", "conv": "zplus", "layer1.0.conv1": Epsilon(0.5)},
                     target=1)
    assert one.info["rules"]["layer1.0.conv1"] == "epsilon(epsilon=0.5)"
    assert one.info["rules"]["layer1.0.conv2"].startswith("zplus")

    seen = []

    class Recorder:                         # the canonizer protocol: canonize(binding) before rules are chosen
        def canonize(self, binding):
            seen.append([s.kind for s in binding.order])

    a = ak.explain(model, x, "lrp", canonizers=[Recorder(), MergeBatchNorm()], target=1)
    assert seen and "batch_norm" in seen[0] and len(a.info["canonized"]) == 8 and not a.info["batchnorm_layers"]
    with pytest.raises(ValueError, match="unknown LRP composite"):
        ak.explain(model, x, "lrp", composite="magic")
    with pytest.raises(TypeError, match="Rule object"):
        ak.explain(model, x, "lrp", composite={"conv": 3})


def test_composite_objects_module_class_keys_and_rule_parameters_from_constructors():
    model, x = randomise_bn(ResNet()), data()
    ref = ak.explain(model, x, "lrp", rule=Epsilon(0.01), target=1)
    obj = ak.explain(model, x, "lrp", composite=LRPComposite(Epsilon(0.01), Epsilon(0.01), name="mine"), target=1)
    by_type = ak.explain(model, x, "lrp", composite={"linear": Epsilon(0.01), nn.Conv2d: Epsilon(0.01)}, target=1)
    assert torch.equal(obj.values, ref.values) and torch.equal(by_type.values, ref.values)
    assert (ref.info["composite"], obj.info["composite"], by_type.info["composite"]) == (None, "mine", "user")
    named = ak.explain(model, x, "lrp", composite="epsilon_plus_flat", target=1)
    spelled = ak.explain(model, x, "lrp", composite=LRPComposite(Epsilon(1e-6), ZPlus(), Flat()), target=1)
    assert torch.equal(named.values, spelled.values) and named.info["rules"] == spelled.info["rules"]
    assert spelled.info["rules"]["conv1"].startswith("flat")
    # a rule takes the parameters its constructor has; the others are ignored
    assert repr(make_rule("gamma", gamma=0.5, epsilon=0.1, low=0.0)) == "gamma(gamma=0.5, stabilizer=1e-06)"
    assert repr(make_rule("zero", epsilon=0.1)) == "epsilon(epsilon=0.0)"
    with pytest.raises(TypeError, match="mapping"):
        LRPComposite(rules=3)


def test_a_graph_only_canonizer_is_refused_on_an_untraceable_model():
    class Shift(Canonizer):                      # the protocol's default attach() refuses module hooks
        def canonize(self, binding):
            pass

    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(x) if x.sum() > -1e9 else x     # data-dependent: torch.fx cannot trace this

    x = torch.rand(2, 4, generator=torch.Generator().manual_seed(0))
    model = Branchy().eval()
    with pytest.raises(ValueError, match="Shift works on the traced graph only"):
        ak.explain(model, x, "lrp", canonizers=[Shift()], target=0)
    assert count_hooks(model) == 0


# ------------------------------------------------------------------------------------ traps (issue 14 d, e, g)
def test_float16_model_is_explained_in_a_float32_copy():
    model, x = randomise_bn(ResNet()), data()
    half = randomise_bn(ResNet()).half()
    for method, opts in (("lrp", {}), ("deeplift", {"baseline": 0.2}), ("deeplift_shap", {"baseline": data(5, 3)})):
        a = ak.explain(half, x.half(), method, target=1, **opts)
        assert torch.isfinite(a.values).all() and a.values.dtype == torch.float16, method
        assert "float32 copy" in a.info["precision"]
        full = ak.explain(model, x, method, target=1, **opts).values
        assert rel(a.values.float(), full) < 2e-2, method    # weights rounded to float16: ~1e-3 apart
    assert next(half.parameters()).dtype == torch.float16


def test_data_parallel_is_unwrapped_with_a_warning_and_batchnorm_folded():
    model, x = randomise_bn(ResNet()), data()
    with pytest.warns(UserWarning, match="DataParallel"):
        a = ak.explain(nn.DataParallel(model), x, "lrp", target=1)
    b = ak.explain(model, x, "lrp", target=1)
    assert rel(a.values, b.values) < 1e-6 and len(a.info["canonized"]) == len(b.info["canonized"]) == 8


def test_unfolded_batchnorm_on_an_untraceable_model_is_said():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv, self.bn, self.fc = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Linear(4, 3)

        def forward(self, x):
            h = self.bn(self.conv(x))
            if h.mean() > -1e9:                    # data-dependent: torch.fx cannot trace this
                h = h * 1.0
            return self.fc(h.mean((2, 3)))

    with pytest.warns(UserWarning, match=r"BatchNorm layer\(s\) \(bn\) were not folded.*h.mean\(\) > -1e9"):
        a = ak.explain(randomise_bn(Branchy()), data(), "lrp", target=1)
    assert a.info["binding"].startswith("module hooks") and a.info["batchnorm_layers"] == ["bn"]


def test_guided_methods_refuse_a_model_without_rectifiers_and_use_gelu():
    torch.manual_seed(0)
    tanh = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).eval()
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(0))
    for method in ("guided_backprop", "deconvnet"):
        with pytest.raises(ValueError, match=r"has none \(its nonlinearities: tanh\).*saliency"):
            ak.explain(tanh, x, method)
    gelu = nn.Sequential(nn.Linear(5, 8), nn.GELU(), nn.Linear(8, 3)).eval()
    w1, b1, w2 = gelu[0].weight.detach(), gelu[0].bias.detach(), gelu[2].weight.detach()
    z = (x @ w1.T + b1).requires_grad_()
    dgelu = torch.autograd.grad(F.gelu(z).sum(), z)[0]
    g = w2[2].expand(4, -1).clamp(min=0)
    assert rel(ak.explain(gelu, x, "guided_backprop", target=2).values, (dgelu * g) @ w1) < 1e-5
    assert rel(ak.explain(gelu, x, "deconvnet", target=2).values, g @ w1) < 1e-5
    sal = ak.explain(gelu, x, "saliency", target=2, abs=False).values
    assert rel(ak.explain(gelu, x, "guided_backprop", target=2).values, sal) > 1e-2


# ------------------------------------------------------------------------------------ Captum
def test_agreement_with_captum_on_a_resnet_without_reused_modules():
    captum_attr = pytest.importorskip("captum.attr", reason="captum is a test dependency")
    model, x = randomise_bn(ResNet(per_use=True, pool="avg")), data()
    t = torch.tensor([0, 3, 1])
    base = torch.full_like(x, 0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dl = captum_attr.DeepLift(model).attribute(x.clone(), baselines=base, target=t)
        gb = captum_attr.GuidedBackprop(model).attribute(x.clone(), target=t)
    ours = ak.explain(model, x, "deeplift", baseline=base, target=t)
    assert rel(ours.values, dl) < 1e-4 and float(ours.info["completeness_gap"].max()) < 1e-4
    assert rel(ak.explain(model, x, "guided_backprop", target=t).values, gb) < 1e-4
    reused = randomise_bn(ResNet(pool="avg"))           # the same weights, one ReLU per block reused
    assert rel(ak.explain(reused, x, "deeplift", baseline=base, target=t).values, dl) < 1e-4


def test_deeplift_shap_matches_captum():
    captum_attr = pytest.importorskip("captum.attr", reason="captum is a test dependency")
    model, x = randomise_bn(ResNet(per_use=True, pool="avg")), data()
    bg = data(7, 4)
    t = torch.tensor([0, 3, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = captum_attr.DeepLiftShap(model).attribute(x.clone(), baselines=bg, target=t)
    ours = ak.explain(model, x, "deeplift_shap", baseline=bg, target=t)
    assert rel(ours.values, theirs) < 1e-4
    assert float(ours.info["completeness_gap"].max()) < 1e-4 and ours.info["n_background"] == 4


def test_deeplift_layernorm_with_an_all_zero_reference_stays_exact():
    """Bias-free LayerNorm stack, zero reference: every reference LayerNorm sees zeros (1/sigma = 1/sqrt(1e-6)).
    Splitting with the mean of both 1/sigma amplified float32 rounding into gaps of 8-84 here; the one-sided split
    with the smaller 1/sigma keeps the gap at rounding level."""
    torch.manual_seed(0)
    layers = [nn.Linear(10, 32, bias=False)]
    for _ in range(4):
        layers += [nn.Linear(32, 32, bias=False), nn.LayerNorm(32, eps=1e-6, elementwise_affine=False), nn.GELU()]
    model = nn.Sequential(*layers, nn.Linear(32, 3, bias=False)).eval()
    x = torch.randn(4, 10, generator=torch.Generator().manual_seed(1))
    a = ak.explain(model, x, "deeplift", baseline="zeros", target=1)
    assert float(a.info["completeness_gap"].max()) < 1e-5


@pytest.mark.parametrize("final", [nn.Softmax(dim=1), nn.LogSoftmax(dim=1)])
def test_deeplift_through_a_final_softmax_keeps_summation(final):
    """A classifier exported with its softmax (MTCNN's ONet, many others), confident predictions: without a
    softmax rule the gap was most of f(x) - f(r); the exact (log)softmax multipliers keep it at rounding."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.PReLU(8), nn.MaxPool2d(3, 2), nn.Flatten(), nn.Linear(8 * 6 * 6, 4),
                          final).eval()
    with torch.no_grad():
        model[4].weight.mul_(20)                         # confident: the top probability close to 1
    x = data()
    t = model(x).argmax(1)
    for base in ("zeros", 0.5):
        a = ak.explain(model, x, "deeplift", baseline=base, target=t)
        assert float(a.info["completeness_gap"].max()) < 1e-5, (base, a.info["completeness_gap"])
        assert float((a.info["f_x"] - a.info["f_baseline"]).abs().max()) > 1e-2
    assert set(a.info["rules"]) == {"1", "2", "5"}


def test_deeplift_prelu_and_overlapping_max_pool_sum_to_delta_at_every_batch_size():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.PReLU(6), nn.MaxPool2d(3, 2, 1),
                          nn.Conv2d(6, 6, 3, padding=1), nn.PReLU(), nn.MaxPool2d(3, 2), nn.Flatten(),
                          nn.Linear(6 * 3 * 3, 4)).eval()
    with torch.no_grad():
        model[1].weight.uniform_(-0.5, 0.5)
        model[4].weight.fill_(-0.3)
    x = data()
    runs = [ak.explain(model, x, "deeplift", baseline=0.3, target=[0, 3, 1], batch_size=b) for b in (1, 2, 3)]
    assert float(runs[0].info["completeness_gap"].max()) < 1e-5
    assert max(rel(r.values, runs[0].values) for r in runs[1:]) < 1e-5, [rel(r.values, runs[0].values) for r in runs]


def test_batchnorm_is_folded_the_same_under_module_hooks():
    """MergeBatchNorm.attach(model, binding) (hook fallback) marks the same sites as canonize(binding) (graph):
    the layer's rule reads the merged weights, the BatchNorm gets no rule; the numbers agree."""
    class Seq(nn.Module):
        def __init__(self, traceable):
            super().__init__()
            torch.manual_seed(0)
            self.traceable = traceable
            self.f = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3),
                                   nn.BatchNorm2d(4), nn.ReLU())
            self.fc = nn.Linear(4 * 12 * 12, 3)

        def forward(self, x):
            if self.traceable or x.mean() > -1e9:          # data-dependent: torch.fx cannot trace this
                x = self.f(x)
            return self.fc(x.flatten(1))

    hooked, traced, x = randomise_bn(Seq(False)), randomise_bn(Seq(True)), data()
    for opts in ({}, {"composite": "epsilon_alpha2_beta1_flat"}):
        a, b = ak.explain(hooked, x, "lrp", target=1, **opts), ak.explain(traced, x, "lrp", target=1, **opts)
        assert a.info["binding"].startswith("module hooks") and b.info["binding"] == "graph"
        assert a.info["canonized"] == b.info["canonized"] == ["f.1 -> f.0", "f.4 -> f.3"]
        assert a.info["rules"] == b.info["rules"] and "f.1" not in a.info["rules"]
        assert rel(a.values, b.values) < 1e-6
    unfolded = ak.explain(hooked, x, "lrp", target=1, canonize=False).values
    assert rel(unfolded, a.values) > 1e-3
    assert count_hooks(hooked) == 0


def test_untraceable_model_of_modules_falls_back_to_hooks_with_the_same_numbers():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.c1, self.a1, self.c2, self.a2 = nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.Tanh()
            self.fc = nn.Linear(4 * 12 * 12, 3)

        def forward(self, x, traceable=False):
            h = self.a1(self.c1(x))
            if traceable or h.mean() > -1e9:              # data-dependent: torch.fx cannot trace this
                h = self.a2(self.c2(h))
            return self.fc(h.flatten(1))

    class Traceable(Branchy):
        def forward(self, x):
            return super().forward(x, traceable=True)

    hooked, traced, x = Branchy().eval(), Traceable().eval(), data()
    for method in ("guided_backprop", "deeplift", "lrp"):
        a, b = ak.explain(hooked, x, method, target=1), ak.explain(traced, x, method, target=1)
        assert a.info["binding"].startswith("module hooks (torch.fx cannot trace") and b.info["binding"] == "graph"
        assert rel(a.values, b.values) < 1e-6, method
