"""Contract tests over the whole registry: every method, with its defaults, keeps the same promises.

- hooks are removed after every call, also after an error raised inside the method's own computation (while
  its hooks exist, in the forward and in the backward pass), and the model's modes, weights and
  ``requires_grad`` flags are restored;
- results are identical for batch sizes 1, 2 and 3;
- a per-sample target list equals per-sample calls (deterministic methods), sampled methods are
  reproducible under a seed;
- the full output shape (the input's, the layer's, or ``[N, 1, *layer]`` for CAMs); two targets give
  different maps (the model makes them different), the same only for class-agnostic methods;
- the error figure the registry declares (``spec.error``) is in ``info``, one key for every completeness gap
  (``completeness_gap = |sum(values) - (f(x) - f(reference))|``, checked against the model);
- TorchScript models are accepted (same values as the eager model) or refused as ``spec.torchscript`` says.
"""
import inspect
import sys
import warnings

import pytest
import torch
from torch import nn

import attrkit as ak
from attrkit.core.modules import count_hooks
from conftest import TinyCNN, tiny_mlp
from nets_transformer import TinyViT

ALL = sorted(ak.methods())


def _options(spec, x):
    opts = {}
    if spec.players:
        if x.dim() == 4:
            labels = torch.zeros(x.shape[-2:], dtype=torch.long)
            h, w = x.shape[-2] // 2, x.shape[-1] // 2
            labels[:h, w:], labels[h:, :w], labels[h:, w:] = 1, 2, 3
            opts["players"] = labels   # [H, W]: shared by all samples and channels
    params = inspect.signature(spec.fn).parameters
    if "n_samples" in params:
        opts["n_samples"] = 16 if spec.players else 4
    if "steps" in params:
        opts["steps"] = 4
    if spec.sampled:
        opts["seed"] = 0
    return opts


def _cases(spec):
    """(model, x, layer) combinations this method is expected to support."""
    if spec.family == "attention":
        return [("vit", None)]
    cases = [("cnn", None)]
    if spec.layer == "required":
        return [("cnn", None)]
    if spec.family in ("gradient", "game") or spec.layer == "optional":
        cases.append(("mlp", None))
    if spec.layer == "optional":
        cases.append(("cnn", "features.2"))
    return cases


def _make(kind):
    if kind == "cnn":
        return TinyCNN().eval(), torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    if kind == "vit":
        from nets_transformer import TinyViT
        return TinyViT().eval(), torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    return tiny_mlp().eval(), torch.randn(3, 5, generator=torch.Generator().manual_seed(0))


def _close(a, b):
    scale = b.abs().max().clamp_min(1e-8)
    return float((a - b).abs().max() / scale) < 1e-5


@pytest.mark.parametrize("name", ALL)
def test_contract(name):
    spec = ak.methods()[name]
    for kind, layer in _cases(spec):
        model, x = _make(kind)
        opts = _options(spec, x)
        if kind == "mlp" and "players" in opts:
            opts.pop("players")   # default: one player per column
        layer_kw = {"layer": layer} if layer else {}
        hooks = count_hooks(model)
        targets = [0, 2, 1]
        runs = [ak.explain(model, x, name, target=targets, batch_size=b, **layer_kw, **opts) for b in (1, 2, 3)]
        assert count_hooks(model) == hooks, f"{name}: hooks left behind"
        assert not model.training
        for r in runs[1:]:
            assert _close(r.values, runs[0].values), f"{name} ({kind}, {layer}): batch size changes the result"
        a = runs[0]
        assert a.values.shape[0] == 3 and torch.isfinite(a.values).all()
        assert a.info["n_evals"] > 0 and a.info["seconds"] >= 0
        if spec.sampled:
            again = ak.explain(model, x, name, target=targets, **layer_kw, **opts)
            assert torch.equal(again.values, ak.explain(model, x, name, target=targets, **layer_kw, **opts).values)
        else:
            for i, t in enumerate(targets):
                one = ak.explain(model, x[i:i + 1], name, target=t, **layer_kw,
                                 **{k: (v[i:i + 1] if isinstance(v, torch.Tensor) and v.shape[:1] == (3,) else v)
                                    for k, v in opts.items()})
                assert _close(one.values[0], a.values[i]), f"{name} ({kind}, {layer}): sample {i} differs alone"


# --------------------------------------------------------------------------- errors inside the method's computation
class Tripped(RuntimeError):
    """Raised by the tripwire; ``hooks``: the hooks on the model when it was raised."""

    def __init__(self, hooks: int, call: int, where: str):
        super().__init__(f"tripwire: model call {call} inside the method ({where})")
        self.hooks = hooks


def all_hooks(model: nn.Module) -> int:
    """Module hooks (forward, forward-pre, backward, backward-pre; global ones too) and tensor hooks on the
    model's parameters and buffers; and forwards replaced on instances (attention capture, AttnLRP's norms)."""
    mm = nn.modules.module
    total = count_hooks(model) + sum("forward" in m.__dict__ for m in model.modules()) + sum(len(getattr(mm, a, None) or {})
                                     for a in ("_global_forward_pre_hooks", "_global_backward_pre_hooks"))
    for t in list(model.parameters()) + list(model.buffers()):
        total += len(t._backward_hooks or {}) + len(getattr(t, "_post_accumulate_grad_hooks", None) or {})
    return total


class _Tripwire:
    """Identity between the CNN's features and its classifier. It counts only the model calls made while the
    method's own function (``spec.fn``) is on the stack — explain's first pass over the model does not count —
    and, armed: "probe" records (hooks present, output differentiated) per call; "forward" raises from call
    ``at`` on; "backward" makes call ``at`` and later ones raise when the gradient flows back through them."""

    def __init__(self):
        self.arm()

    def arm(self, mode=None, fn=None, model=None, at=0):
        self.mode, self.code, self.model, self.at, self.calls, self.seen = \
            mode, getattr(fn, "__code__", None), model, at, 0, []

    def __call__(self, h):
        if self.mode is None or not _on_stack(self.code):
            return h
        self.calls += 1
        if self.mode == "probe":
            self.seen.append((all_hooks(self.model), h.requires_grad))
        elif self.calls >= self.at and self.mode == "forward":
            raise Tripped(all_hooks(self.model), self.calls, "forward")
        elif self.calls >= self.at and self.mode == "backward":
            return _RaiseInBackward.apply(h)
        return h


class _RaiseInBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h):
        return h.clone()

    @staticmethod
    def backward(ctx, g):
        raise Tripped(all_hooks(TRIP.model), TRIP.calls, "backward")


def _on_stack(code) -> bool:
    f = sys._getframe(2)
    while f is not None:
        if f.f_code is code:
            return True
        f = f.f_back
    return False


TRIP = _Tripwire()


def tripwire(h):
    return TRIP(h)


torch.fx.wrap("tripwire")      # a call of its own in traced graphs (games and perturbation CAMs split the model)


class TrippedCNN(nn.Module):
    """conv-BN-relu(inplace)-conv-relu-pool | tripwire | linear. The BatchNorm (random statistics) is folded by
    LRP's canonizer and the in-place ReLU switched off by rule bindings, so a failure must also restore the weights
    and the flag. ``traceable=False``: data-dependent Python control flow, so torch.fx cannot trace it and rules,
    splits and taps fall back to hooks on the model's modules."""

    def __init__(self, traceable: bool = True):
        super().__init__()
        torch.manual_seed(0)
        self.traceable = traceable
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(inplace=True),
                                      nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(8 * 8 * 8, 4))
        bn = self.features[1]
        bn.running_mean.uniform_(-0.2, 0.2), bn.running_var.uniform_(0.5, 2.0)
        nn.init.uniform_(bn.weight, 0.5, 1.5), nn.init.uniform_(bn.bias, -0.2, 0.2)

    def forward(self, x):
        h = tripwire(self.features(x))
        if not self.traceable and not bool(torch.isfinite(h).all()):
            raise ValueError("non-finite features")
        return self.classifier(h)


class TrippedViT(TinyViT):
    """The test ViT with the tripwire between the encoder and the head (attention methods)."""

    def forward(self, x):
        t = self.patch(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(x.shape[0], -1, -1), t], 1) + self.pos
        t = tripwire(self.norm(self.blocks(t)))
        return self.head(t[:, 0] if self.pool == "cls" else t[:, self.prefix:].mean(1))


def _module_state(model) -> dict:
    """Every module's public attributes (training, inplace, ...; an instance-level ``forward`` patch too)."""
    return {n: {k: v for k, v in vars(m).items() if not k.startswith("_")} for n, m in model.named_modules()}


def _for_transformers(spec) -> bool:
    """Methods of ``attrkit.transformers`` (attention family, AttnLRP) run on the test ViT."""
    return spec.fn.__module__.startswith("attrkit.transformers")


def _traceback_codes(tb) -> list:
    codes = []
    while tb is not None:
        codes.append(tb.tb_frame.f_code)
        tb = tb.tb_next
    return codes


@pytest.mark.parametrize("name", ALL)
def test_error_inside_the_method_leaves_no_hook_and_restores_the_model(name):
    """The model fails at the method's own last model call with the most hooks present (forward), and at the
    last such call whose output is differentiated (backward, for gradient methods); explain lets the error
    through and leaves no hook, mode, weight or requires_grad flag changed."""
    spec = ak.methods()[name]
    # (layer, options, traceable model); hooks must exist at the failure where the method works through them:
    # layer taps (gradient and CAM methods), rules on an untraceable model, games with the replacing hook
    vit = _for_transformers(spec)
    at = "blocks.0" if vit else "features.3"
    cases = [(None, {}, True)] + ([(at, {}, True)] if spec.layer == "optional" else [])
    if spec.family == "propagation" and not vit:
        cases.append((None, {}, False))
    if spec.family == "game":     # at a layer: the split model (torch.fx, no hooks) and the replacing hook
        cases.append(("features.3", {"head_only": False}, True))
    for layer, extra, traceable in cases:
        model = TrippedViT() if vit else TrippedCNN(traceable)
        x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
        opts, layer_kw = {**_options(spec, x), **extra}, ({"layer": layer} if layer else {})
        model.train()
        base, weights = all_hooks(model), {k: v.clone() for k, v in model.state_dict().items()}
        flags, state = [p.requires_grad for p in model.parameters()], _module_state(model)
        expect_hooks = spec.family in ("cam", "attention") or bool(extra) or vit or (spec.family == "propagation" and not traceable) \
            or (layer is not None and spec.family == "gradient")

        shared = spec.shared_pass is not None

        def run():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")           # "the model was in train mode"
                # a method whose pass is explain's own (shared_pass, tests/test_attnlrp.py) runs its own pass when
                # the batch does not fit one chunk: that path is the one with model calls inside the method
                return ak.explain(model, x, name, target=[0, 2], batch_size=1 if shared else 2, **layer_kw, **opts)

        TRIP.arm("probe", spec.fn, model)
        try:
            run()
            seen = TRIP.seen
        finally:
            TRIP.arm()
        assert seen, f"{name}: the method never called the model"
        most = max(h for h, _ in seen)
        if expect_hooks:
            assert most > base, f"{name} ({layer}, {extra}, traceable={traceable}): no hook on the model while it ran"
        # the last call with the most hooks (earlier calls have run: partial results, caches, split models exist)
        modes = [("forward", max(i + 1 for i, (h, _) in enumerate(seen) if h == most))]
        grads = [i for i, (_, g) in enumerate(seen) if g]      # calls whose output has a graph
        if spec.gradients:
            assert grads, f"{name}: declared a gradient method, but no model call recorded a graph"
            modes.append(("backward", 1 + max(grads, key=lambda i: (seen[i][0], i))))
        for mode, at in modes:
            TRIP.arm(mode, spec.fn, model, at)
            try:
                with pytest.raises(Tripped) as err:
                    run()
            finally:
                TRIP.arm()
            where = f"{name} ({layer}, {extra}, traceable={traceable}, {mode} failure at call {at} of {len(seen)})"
            assert spec.fn.__code__ in _traceback_codes(err.tb), f"{where}: not raised inside the method"
            if mode == "forward":
                assert err.value.hooks == most, f"{where}: raised with {err.value.hooks} hooks, not {most}"
            assert all_hooks(model) == base, f"{where}: hooks left behind"
            assert all(m.training for m in model.modules()), f"{where}: train mode not restored"
            assert _module_state(model) == state, f"{where}: module attributes changed"
            assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items()), f"{where}: weights"
            assert [p.requires_grad for p in model.parameters()] == flags, f"{where}: requires_grad flags"
            assert torch.is_grad_enabled() and not x.requires_grad


# ------------------------------------------------------------------------------ shapes, targets, error figures
def _expected_shape(spec, model, x, layer):
    if spec.family == "attention":                 # on the ViT's 4 x 4 patch grid; the probe: one map per head
        return (x.shape[0], model.blocks[0].attn.num_heads if spec.name == "attention_probe" else 1, 4, 4)
    if layer is None and spec.layer != "required":
        return tuple(x.shape)
    if spec.name == "guided_grad_cam":              # the CAM upsampled, times guided backpropagation
        return tuple(x.shape)
    acts = dict(model.named_modules())[layer]
    with torch.no_grad():
        out = []
        h = acts.register_forward_hook(lambda m, a, o: out.append(o.shape))
        model(x)
        h.remove()
    shape = tuple(out[0])
    return (shape[0], 1) + shape[2:] if spec.family == "cam" else shape


def _f(model, z, t):
    with torch.no_grad():
        return model(z)[torch.arange(len(z)), t].double()


@pytest.mark.parametrize("name", ALL)
def test_shape_targets_and_error_figure(name):
    spec = ak.methods()[name]
    vit = _for_transformers(spec)
    model = TinyViT() if vit else TinyCNN().eval()
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    opts = _options(spec, x)
    for layer in ([None, "blocks.0" if vit else "features.2"] if spec.layer == "optional" else [None]):
        layer_kw = {"layer": layer} if layer else {}
        a = ak.explain(model, x, name, target=[0, 1], **layer_kw, **opts)
        b = ak.explain(model, x, name, target=[1, 0], **layer_kw, **opts)
        assert tuple(a.values.shape) == _expected_shape(spec, model, x, a.layer), (name, layer, a.layer)
        # two targets, two maps: the maps of (0, 1) and (1, 0) swap unless the method ignores the target
        agnostic = bool(a.info.get("class_agnostic"))
        for i in range(2):
            d = float((a.values[i] - b.values[i]).abs().max() / a.values[i].abs().max().clamp_min(1e-12))
            assert (d < 1e-6) if agnostic else (d > 1e-3), f"{name} ({layer}): sample {i}, targets 0/1: {d:.2g}"
        gaps = [k for k in a.info if k.endswith("_gap") and k not in ("completeness_gap", "relative_gap")]
        assert not gaps, f"{name}: completeness gaps are reported as 'completeness_gap', not {gaps}"
        if spec.error:
            err = a.info[spec.error]
            assert err.shape[0] == 2 and torch.isfinite(err).all() and (err >= 0).all(), name
        if spec.error == "completeness_gap":
            t = torch.tensor([0, 1])
            ref = a.baseline
            ref = torch.zeros_like(x) if isinstance(ref, str) and ref == "zeros" else ref
            f_ref = _f(model, ref.expand_as(x), t) if isinstance(ref, torch.Tensor) else torch.zeros(2).double()
            want = (a.values.double().flatten(1).sum(1) - (_f(model, x, t) - f_ref)).abs()
            assert torch.allclose(err.double(), want, rtol=1e-4, atol=1e-6), (name, layer, err, want)
    assert spec.error in ("", "completeness_gap", "std_err"), f"{name}: undeclared error figure {spec.error!r}"


def test_every_path_and_propagation_method_with_a_gap_declares_it():
    declared = {n for n, s in ak.methods().items() if s.error == "completeness_gap"}
    assert {"integrated_gradients", "deeplift", "lrp"} <= declared
    assert all(ak.methods()[n].error == "std_err" for n in ("kernel_shap", "shapley_sampling", "vargrad"))


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("name", ALL)
def test_torchscript_as_declared(name):
    spec = ak.methods()[name]
    vit = _for_transformers(spec)
    model = TinyViT() if vit else TinyCNN().eval()
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    scripted = torch.jit.script(model)
    opts = _options(spec, x)
    if spec.torchscript:
        got = ak.explain(scripted, x, name, target=[0, 2], **opts)
        want = ak.explain(model, x, name, target=[0, 2], **opts)
        assert torch.allclose(got.values, want.values, rtol=1e-4, atol=1e-6), name
    else:
        with pytest.raises(TypeError, match="TorchScript"):
            ak.explain(scripted, x, name, target=[0, 2], **opts)
    if spec.layer != "never":
        with pytest.raises(TypeError, match="TorchScript"):
            ak.explain(scripted, x, name, target=[0, 2], layer="blocks.0" if vit else "features.2", **opts)
