"""Modified backward rules: DeconvNet, Guided Backprop, LRP (rules, composites, canonizer), DeepLIFT.

Closed forms, conservation laws, clean-up (hooks, parameters, outputs) and the refusals of models the rules
cannot see (functional relu, reused ReLU modules).
"""
import gc

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import attrkit as ak
from attrkit.core.modules import count_hooks
from attrkit.propagation import Composite, MergeBatchNorm
from conftest import TinyCNN, tiny_mlp

RULE_METHODS = ["guided_backprop", "deconvnet", "lrp", "deeplift"]
LRP_OPTIONS = [{"rule": "alpha_beta"}, {"composite": "epsilon_gamma_box", "low": 0, "high": 1},
               {"composite": "epsilon_plus", "first": "wsquare"}]


def rel(a, b):
    return float((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-12))


def bias_free_cnn(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1, bias=False), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1, bias=False), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
        nn.Linear(8 * 2 * 2, 12, bias=False), nn.ReLU(), nn.Linear(12, 4, bias=False)).eval()


def bias_free_mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 16, bias=False), nn.ReLU(), nn.Linear(16, 16, bias=False), nn.ReLU(),
                         nn.Linear(16, 3, bias=False)).eval()


class BNNet(nn.Module):
    """Conv-BN pairs inside a Sequential and one outside it (found through torch.fx)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.block = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU())
        self.conv = nn.Conv2d(6, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.act = nn.ReLU()
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(8 * 8 * 8, 16), nn.BatchNorm1d(16), nn.ReLU(),
                                  nn.Linear(16, 4))
        for m in self.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.3, 3.0)
                m.weight.data.uniform_(0.5, 2.0)
                m.bias.data.uniform_(-0.5, 0.5)
        self.eval()

    def forward(self, x):
        return self.head(self.act(self.bn(self.conv(self.block(x)))))


class FunctionalReLU(nn.Module):
    def __init__(self, kind="F"):
        super().__init__()
        torch.manual_seed(0)
        self.fc1, self.fc2, self.kind = nn.Linear(5, 8), nn.Linear(8, 3), kind

    def forward(self, x):
        h = self.fc1(x)
        h = F.relu(h) if self.kind == "F" else (torch.relu(h) if self.kind == "torch" else h.relu())
        return self.fc2(h)


class ReusedReLU(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc1, self.fc2, self.fc3, self.act = nn.Linear(5, 8), nn.Linear(8, 8), nn.Linear(8, 3), nn.ReLU()

    def forward(self, x):
        return self.fc3(self.act(self.fc2(self.act(self.fc1(x)))))


class FailingTarget:
    """A callable target that raises on its k-th call (explain validates it once before the method runs)."""

    def __init__(self, k=2):
        self.k, self.calls = k, 0

    def __call__(self, out):
        self.calls += 1
        if self.calls >= self.k:
            raise RuntimeError("boom")
        return out[:, 0]


# ------------------------------------------------------------------------------------ clean-up
@pytest.mark.parametrize("method,opts", [(m, {}) for m in RULE_METHODS] + [("lrp", o) for o in LRP_OPTIONS]
                         + [("guided_grad_cam", {}), ("score_cam", {}), ("ablation_cam", {})])
def test_model_identical_after_call_and_after_error(method, opts):
    model = BNNet()
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    params = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        before = model(x)
    hooks = count_hooks(model)
    ak.explain(model, x, method, target=1, **opts)
    with torch.no_grad():
        assert torch.equal(model(x), before)
    with pytest.raises(RuntimeError, match="boom"):
        ak.explain(model, x, method, target=FailingTarget(), batch_size=1, **opts)
    assert count_hooks(model) == hooks
    with torch.no_grad():
        assert (model(x) - before).abs().max() <= 1e-6
    assert all(torch.equal(v, params[k]) for k, v in model.state_dict().items())


def test_no_hook_left_after_1000_calls_and_memory_flat():
    """1,000 calls of the registered rule methods (what explain dispatches to) on one problem."""
    from attrkit.core.problem import Problem
    from attrkit.core.targets import resolve_target
    from attrkit.registry import get

    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).eval()
    x = torch.randn(1, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(x)
    problem = Problem(model=model, inputs=x, outputs=out, target=resolve_target(1, out))
    fns = [get(m).fn for m in RULE_METHODS]
    first = fns[0](problem).values

    def run(k):
        for i in range(k):
            fns[i % len(fns)](problem)

    psutil = pytest.importorskip("psutil", reason="psutil is a test dependency")
    run(100)
    gc.collect()
    objects, rss = len(gc.get_objects()), psutil.Process().memory_info().rss
    run(900)
    gc.collect()
    assert count_hooks(model) == 0
    assert len(gc.get_objects()) - objects < 200                         # nothing accumulates per call
    assert psutil.Process().memory_info().rss - rss < 20 * 2 ** 20
    assert torch.equal(fns[0](problem).values, first)


def test_inplace_relu_is_handled_and_restored():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(inplace=True), nn.Linear(8, 3)).eval()
    ref = nn.Sequential(model[0], nn.ReLU(), model[2]).eval()
    x = torch.randn(4, 5)
    for method in ("guided_backprop", "deconvnet", "deeplift", "lrp"):
        assert torch.allclose(ak.explain(model, x, method, target=2).values,
                              ak.explain(ref, x, method, target=2).values, atol=1e-6)
    assert model[1].inplace is True


# ----------------------------------------------------------------- call sites: functional and reused ReLUs
class ModulePerUse(nn.Module):
    """The twin of FunctionalReLU / ReusedReLU with one nn.ReLU module per use."""

    def __init__(self, fc1, fc2, fc3=None):
        super().__init__()
        self.fc1, self.fc2, self.fc3, self.a1, self.a2 = fc1, fc2, fc3, nn.ReLU(), nn.ReLU()

    def forward(self, x):
        h = self.a1(self.fc1(x))
        return self.fc2(h) if self.fc3 is None else self.fc3(self.a2(self.fc2(h)))


class Untraceable(nn.Module):
    """Data-dependent control flow (torch.fx cannot trace it) around a functional ReLU."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc1, self.fc2 = nn.Linear(5, 8), nn.Linear(8, 3)

    def forward(self, x):
        h = self.fc1(x)
        if h.sum() > -1e9:
            h = F.relu(h)
        return self.fc2(h)


@pytest.mark.parametrize("kind", ["F", "torch", "method"])
@pytest.mark.parametrize("method", ["guided_backprop", "deconvnet", "deeplift", "lrp"])
def test_functional_relu_gets_its_own_rule(method, kind):
    model = FunctionalReLU(kind).eval()
    twin = ModulePerUse(model.fc1, model.fc2).eval()
    x = torch.randn(3, 5, generator=torch.Generator().manual_seed(0))
    a = ak.explain(model, x, method, target=1)
    assert rel(a.values, ak.explain(twin, x, method, target=1).values) < 1e-6
    if method != "lrp":      # LRP needs no ReLU rule in the signal form
        assert list(a.info["rules"]) == ["relu"] and a.info["binding"] == "graph"
    assert count_hooks(model) == 0


@pytest.mark.parametrize("method", ["guided_backprop", "deconvnet", "deeplift"])
def test_untraceable_model_with_functional_relu_is_refused_naming_the_op(method):
    model = Untraceable().eval()
    with pytest.raises(ValueError, match=r"as a function \(torch.relu / F.relu / Tensor.relu\).*torch.fx cannot "
                                         r"trace.*if h.sum\(\) > -1e9.*nn.ReLU\(\) module"):
        ak.explain(model, torch.randn(2, 5), method)
    assert count_hooks(model) == 0


def test_lrp_refuses_functional_linear_naming_the_module():
    class FunctionalLinear(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(3, 5))

        def forward(self, x):
            return F.linear(x, self.w)

    with pytest.raises(ValueError, match="F.linear as a function.*use an nn.Linear module"):
        ak.explain(FunctionalLinear(), torch.randn(3, 5), "lrp")


class ReusedConvReLU(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.c1, self.c2, self.act, self.fc = nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3), nn.ReLU(), nn.Linear(32, 3)

    def forward(self, x):
        return self.fc(self.act(self.c2(self.act(self.c1(x)))).flatten(1))


class ConvPerUse(nn.Module):
    def __init__(self, r):
        super().__init__()
        self.c1, self.c2, self.a1, self.a2, self.fc = r.c1, r.c2, nn.ReLU(), nn.ReLU(), r.fc

    def forward(self, x):
        return self.fc(self.a2(self.c2(self.a1(self.c1(x)))).flatten(1))


@pytest.mark.parametrize("method", ["guided_backprop", "deconvnet", "deeplift", "guided_grad_cam"])
def test_reused_relu_module_gets_a_rule_per_call(method):
    if method == "guided_grad_cam":
        model = ReusedConvReLU().eval()
        twin, x, opts = ConvPerUse(model).eval(), torch.randn(2, 1, 8, 8), {"layer": "c2"}
    else:
        model = ReusedReLU().eval()
        twin, x, opts = ModulePerUse(model.fc1, model.fc2, model.fc3).eval(), torch.randn(2, 5), {}
    a = ak.explain(model, x, method, target=1, **opts)
    assert rel(a.values, ak.explain(twin, x, method, target=1, **opts).values) < 1e-6
    if method != "guided_grad_cam":
        assert set(a.info["rules"]) == {"act#1", "act#2"}
    assert count_hooks(model) == 0


def test_option_errors():
    model, x = tiny_mlp().eval(), torch.randn(2, 5)
    with pytest.raises(ValueError, match="unknown LRP rule"):
        ak.explain(model, x, "lrp", rule="magic")
    with pytest.raises(ValueError, match="unknown LRP composite"):
        ak.explain(model, x, "lrp", composite="magic")
    with pytest.raises(ValueError, match="not both"):
        ak.explain(model, x, "lrp", rule="epsilon", composite="epsilon_plus")
    with pytest.raises(ValueError, match="alpha - beta must equal 1"):
        ak.explain(model, x, "lrp", rule="alpha_beta", alpha=2.0, beta=2.0)
    with pytest.raises(ValueError, match="first layer only"):
        ak.explain(model, x, "lrp", rule="flat")
    with pytest.raises(ValueError, match="epsilon must be >= 0"):
        ak.explain(model, x, "lrp", rule="epsilon", epsilon=-1.0)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        ak.explain(lambda t: model(t), x, "guided_backprop")
    with pytest.raises(TypeError, match="does not take option"):
        ak.explain(model, x, "guided_backprop", rule="epsilon")

    class Scaled(nn.Module):       # the first layer does not see the model input itself
        def __init__(self):
            super().__init__()
            self.inner = tiny_mlp()

        def forward(self, x):
            return self.inner(x * 2)

    with pytest.raises(ValueError, match="input-layer rule"):
        ak.explain(Scaled().eval(), x, "lrp", composite="epsilon_plus_flat")


# ------------------------------------------------------------------------------ closed forms
def test_guided_backprop_and_deconvnet_closed_form():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)).eval()
    x = torch.randn(5, 4)
    w1, b1, w2 = model[0].weight.detach(), model[0].bias.detach(), model[2].weight.detach()
    active = (x @ w1.T + b1 > 0).float()
    g_out = w2[2].expand(5, -1)                             # gradient at the ReLU output for class 2
    guided = (g_out.clamp(min=0) * active) @ w1
    deconv = g_out.clamp(min=0) @ w1
    assert torch.allclose(ak.explain(model, x, "guided_backprop", target=2).values, guided, atol=1e-6)
    assert torch.allclose(ak.explain(model, x, "deconvnet", target=2).values, deconv, atol=1e-6)


@pytest.mark.parametrize("make,shape", [(bias_free_mlp, (6, 5)), (bias_free_cnn, (3, 3, 8, 8))])
def test_lrp_epsilon_to_zero_is_gradient_times_input(make, shape):
    model = make()
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    lrp = ak.explain(model, x, "lrp", rule="epsilon", epsilon=1e-9, target=1).values
    gxi = ak.explain(model, x, "input_x_gradient", target=1).values
    assert rel(lrp, gxi) < 1e-5
    assert rel(ak.explain(model, x, "lrp", rule="zero", target=1).values, gxi) < 1e-5


@pytest.mark.parametrize("opts", [{"rule": "zplus"}, {"rule": "zplus", "first": "zbox", "low": -1.0, "high": 2.0},
                                  {"rule": "zplus", "first": "flat"}])
def test_lrp_conservative_rules_conserve_relevance_layer_by_layer(opts):
    model = bias_free_cnn()
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 0.5
    target = model(x).argmax(1)       # positive outputs: the relevance to distribute is the target score
    a = ak.explain(model, x, "lrp", target=target, **opts)
    f_x = model(x).gather(1, target.view(-1, 1)).squeeze(1).detach()
    assert torch.allclose(a.values.sum((1, 2, 3)), f_x, atol=1e-4, rtol=1e-4)
    assert float(a.info["completeness_gap"].max()) < 1e-4
    for layer in ("0", "5", "7"):
        r = ak.explain(model, x, "lrp", target=target, layer=layer, **opts).values
        assert torch.allclose(r.flatten(1).sum(1), f_x, atol=1e-4, rtol=1e-4), layer


def test_lrp_rules_closed_form_on_one_layer():
    """One Linear layer, relevance at the output = z_t: each rule's formula written out."""
    torch.manual_seed(0)
    lin = nn.Linear(4, 3).eval()
    x = torch.randn(5, 4)
    w, b = lin.weight.detach()[1], lin.bias.detach()[1]
    z = x @ w + b
    st = lambda v, e=1e-6: v + ((v == 0).float() + v.sign()) * e
    low, high = -2.0, 3.0
    wp, wn = w.clamp(min=0), w.clamp(max=0)
    xp, xn = x.clamp(min=0), x.clamp(max=0)
    zp = xp @ wp + xn @ wn + b.clamp(min=0)
    zn = xp @ wn + xn @ wp + b.clamp(max=0)
    zb = x @ w - low * wp.sum() - high * wn.sum()
    expected = {
        ("epsilon", None): x * w * (z / st(z, 0.1)).unsqueeze(1),
        ("zplus", None): (xp * wp + xn * wn) * (z / st(zp)).unsqueeze(1),
        ("alpha_beta", None): 2 * (xp * wp + xn * wn) * (z / st(zp)).unsqueeze(1)
        - (xp * wn + xn * wp) * (z / st(zn)).unsqueeze(1),
        ("epsilon", "flat"): (z / 4).unsqueeze(1).expand(5, 4),
        ("epsilon", "wsquare"): (w * w / (w.pow(2).sum() + b * b)) * z.unsqueeze(1),
        ("epsilon", "zbox"): (x * w - low * wp - high * wn) * (z / st(zb)).unsqueeze(1),
    }
    for (rule, first), want in expected.items():
        got = ak.explain(lin, x, "lrp", rule=rule, first=first, epsilon=0.1, low=low, high=high, target=1)
        assert rel(got.values, want) < 1e-5, (rule, first)


def test_deeplift_completeness_with_maxpool_after_relu(trained_cnn):
    model, x = trained_cnn
    x = x[:5]
    for baseline in ("zeros", 0.3, "blur"):
        a = ak.explain(model, x, "deeplift", baseline=baseline)
        total = a.values.flatten(1).sum(1)
        delta = a.info["f_x"] - a.info["f_baseline"]
        assert torch.allclose(total, delta, atol=1e-4), baseline
        assert float(a.info["completeness_gap"].max()) < 1e-4
    layer = ak.explain(model, x, "deeplift", baseline=0.3, layer="2")
    assert float(layer.info["completeness_gap"].max()) < 1e-4


def test_deeplift_is_exact_for_a_linear_model_and_differs_from_gradient_for_relu():
    torch.manual_seed(0)
    lin = nn.Linear(4, 2)
    x, r = torch.randn(3, 4), torch.randn(3, 4)
    assert torch.allclose(ak.explain(lin, x, "deeplift", baseline=r, target=1).values,
                          lin.weight[1].detach() * (x - r), atol=1e-6)
    relu = nn.Sequential(nn.Linear(1, 1), nn.ReLU())    # y = relu(w x + b): multiplier is the secant
    relu[0].weight.data.fill_(2.0)
    relu[0].bias.data.fill_(-1.0)
    a = ak.explain(relu, torch.tensor([[2.0]]), "deeplift", baseline=torch.tensor([[0.0]]))
    assert torch.allclose(a.values, torch.tensor([[3.0]]))       # f(2) - f(0) = 3 - 0
    smooth = nn.Sequential(nn.Linear(2, 1), nn.Tanh(), nn.Linear(1, 1, bias=False))   # secant of tanh, per input
    with torch.no_grad():
        smooth[0].weight.copy_(torch.tensor([[1.5, -0.5]]))
        smooth[0].bias.fill_(0.2)
        smooth[2].weight.fill_(2.0)
    x, r = torch.tensor([[1.0, 2.0]]), torch.tensor([[-1.0, 0.5]])
    z, z_r = x @ torch.tensor([1.5, -0.5]) + 0.2, r @ torch.tensor([1.5, -0.5]) + 0.2
    secant = (torch.tanh(z) - torch.tanh(z_r)) / (z - z_r)
    want = 2.0 * secant * torch.tensor([1.5, -0.5]) * (x - r)
    assert torch.allclose(ak.explain(smooth, x, "deeplift", baseline=r).values, want, atol=1e-6)


# ------------------------------------------------------------------------------- canonizer
def test_batchnorm_canonizer_keeps_outputs_and_restores_exactly():
    model = BNNet()
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        before = model(x)
    canon = MergeBatchNorm()
    with Composite(model, lambda tr: {}, example=x[:1], canonizers=[canon]):
        assert len(canon.pairs) == 3          # two in Sequentials, one found through torch.fx
        with torch.no_grad():
            inside = model(x)
    assert (inside - before).abs().max() <= 1e-5 * before.abs().max()
    with torch.no_grad():
        assert torch.equal(model(x), before)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_lrp_on_batchnorm_model_equals_lrp_on_the_folded_model():
    model = BNNet()
    folded = BNNet()
    with torch.no_grad():
        for conv, bn in ((folded.block[0], folded.block[1]), (folded.conv, folded.bn),
                         (folded.head[1], folded.head[2])):
            s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            b = conv.bias if conv.bias is not None else torch.zeros_like(s)
            conv.weight.mul_(s.view((-1,) + (1,) * (conv.weight.dim() - 1)))
            conv.bias = nn.Parameter((b - bn.running_mean) * s + bn.bias)
        folded.block[1], folded.bn, folded.head[2] = nn.Identity(), nn.Identity(), nn.Identity()
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    for opts in ({"composite": "epsilon_plus"}, {"composite": "epsilon_alpha2_beta1_flat"}):
        a = ak.explain(model, x, "lrp", target=2, **opts)
        b = ak.explain(folded, x, "lrp", target=2, **opts)
        assert rel(a.values, b.values) < 1e-5
        assert len(a.info["canonized"]) == 3


# ----------------------------------------------------------------------------- batches, targets
@pytest.mark.parametrize("method,opts", [("lrp", {"composite": "epsilon_gamma_box"}),
                                         ("lrp", {"composite": "epsilon_plus_flat"})])
def test_batch_size_and_per_sample_targets(method, opts):
    """(tests/test_contract.py covers every method with its defaults; here the input-layer rules.)"""
    model = TinyCNN().eval()
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    targets = [3, 0, 1]
    runs = [ak.explain(model, x, method, target=targets, batch_size=b, **opts).values for b in (1, 2, 3)]
    for r in runs[1:]:
        assert rel(r, runs[0]) < 1e-6
    for i, t in enumerate(targets):
        one = ak.explain(model, x[i:i + 1], method, target=t, **opts).values
        assert rel(one[0], runs[0][i]) < 1e-6


def test_registered_with_family_and_listed():
    table = ak.methods()
    for name in ("deconvnet", "guided_backprop", "lrp", "deeplift"):
        assert table[name].family == "propagation"
    assert table["deeplift"].baseline
