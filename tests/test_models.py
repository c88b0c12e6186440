"""Model zoo definitions: the lecture's models, naming, seeds, configs and the summary table."""

import pytest
import torch
from torch import nn

from attrkit.models import (MLP, VGG_CONFIGS, ImageTableNet, LogisticModel, SimpleMLP, SmallCNN,
                            TextTransformer, bench_cnn, bench_mlp, build, vgg, vgg16_quarter)
from attrkit.model_summary import summary


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ----------------------------------------------------------------------- the lecture
def test_simple_mlp_has_37_parameters_in_summary_like_the_lecture():
    assert summary(SimpleMLP(nvars=2), input_size=(10, 2)).total_params == 37   # torchinfo if installed
    s = summary(SimpleMLP(nvars=2), input_size=(10, 2), backend="hooks")
    assert s.total_params == 37 and s.trainable_params == 37
    assert [(r.type, r.output_shape, r.params) for r in s.rows] == [
        ("Linear", [10, 4], 12), ("ReLU", [10, 4], 0), ("Linear", [10, 4], 20),
        ("ReLU", [10, 4], 0), ("Linear", [10, 1], 5), ("Sigmoid", [10, 1], 0)]
    text = str(s)
    assert "Linear (1-1)" in text and "Linear (1-5)" in text and "Total params: 37" in text


def test_logistic_model_has_3_parameters():
    m = LogisticModel(nvars=2)
    s = summary(m, (10, 2), backend="hooks")
    assert s.total_params == 3
    assert [r.label for r in s.rows] == ["Linear (1-1)", "Sigmoid (1-2)"]
    y = m(torch.randn(10, 2))
    assert y.shape == (10, 1) and bool(((y > 0) & (y < 1)).all())


def test_summary_of_nested_model_counts_each_parameter_once_and_removes_hooks():
    m = SmallCNN(3, 5, 64)
    s = summary(m, (2, 3, 64, 64))
    assert s.total_params == sum(p.numel() for p in m.parameters())
    assert s.rows[0].type == "Sequential" and s.rows[0].depth == 1 and s.rows[1].depth == 2
    assert all(not mod._forward_hooks and not mod._forward_pre_hooks for mod in m.modules())
    with pytest.raises(ValueError, match="input_size"):
        summary(m, "3x64x64")
    with pytest.raises(TypeError):
        summary(lambda x: x, (1, 2))


# ---------------------------------------------------------------------------- VGG
def test_vgg16_uses_torchvision_names():
    m = vgg("vgg16", num_classes=7, in_size=64, width=1 / 16, fc_width=32)
    mods = dict(m.named_modules())
    assert isinstance(mods["features.28"], nn.Conv2d)            # last conv
    assert isinstance(mods["features.29"], nn.ReLU)              # the ReLU after it
    assert isinstance(mods["features.30"], nn.MaxPool2d)
    assert isinstance(mods["avgpool"], nn.AdaptiveAvgPool2d)
    assert [type(mods[f"classifier.{i}"]).__name__ for i in range(7)] == [
        "Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear"]
    assert m.last_conv == "features.28" and m.last_relu == "features.29"
    assert m(torch.rand(2, 3, 64, 64)).shape == (2, 7)
    assert sum(isinstance(x, nn.Conv2d) for x in m.features) == 13
    assert not any(getattr(x, "inplace", False) for x in m.modules())
    v11 = vgg("vgg11", num_classes=3, in_size=32, width=1 / 16, fc_width=16)
    assert sum(isinstance(x, nn.Conv2d) for x in v11.features) == 8
    assert [c for c in VGG_CONFIGS["vgg16"] if c != "M"] == [64, 64, 128, 128, 256, 256, 256,
                                                             512, 512, 512, 512, 512, 512]


def test_vgg16_quarter_layout():
    m = vgg16_quarter()
    convs = [x.out_channels for x in m.features if isinstance(x, nn.Conv2d)]
    assert convs == [16, 16, 32, 32, 64, 64, 64, 128, 128, 128, 128, 128, 128]
    fcs = [(x.in_features, x.out_features) for x in m.classifier if isinstance(x, nn.Linear)]
    assert fcs == [(6272, 1024), (1024, 1024), (1024, 1000)]
    assert not m.training
    s = summary(m, (1, 3, 224, 224))
    assert s.total_params == 9_418_936
    assert [r for r in s.rows if r.name == "features.29"][0].output_shape == [1, 128, 14, 14]


def test_vgg_rejects_bad_arguments():
    with pytest.raises(ValueError, match="vgg16"):
        vgg("vgg15")
    with pytest.raises(ValueError, match="in_size"):
        vgg(in_size=16)


# ------------------------------------------------------------------ bench models
def test_bench_models_layout():
    cnn = bench_cnn()
    assert [type(x).__name__ for x in cnn.features] == [
        "Conv2d", "ReLU", "Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU", "Conv2d", "ReLU", "MaxPool2d"]
    assert [x.out_channels for x in cnn.features if isinstance(x, nn.Conv2d)] == [32, 32, 64, 64]
    assert (cnn.classifier[0].in_features, cnn.classifier[0].out_features) == (16384, 128)
    assert cnn(torch.rand(2, 3, 64, 64)).shape == (2, 10)
    mlp = bench_mlp()
    assert [(x.in_features, x.out_features) for x in mlp.modules() if isinstance(x, nn.Linear)] == [
        (20, 64), (64, 64), (64, 1)]
    assert not cnn.training and not mlp.training


# ------------------------------------------------------------- seeds and configs
FACTORIES = [
    lambda s: LogisticModel(4, seed=s), lambda s: SimpleMLP(2, seed=s),
    lambda s: MLP(6, [8, 5], "tanh", 3, seed=s), lambda s: SmallCNN(1, 10, 16, seed=s),
    lambda s: bench_cnn(seed=s), lambda s: bench_mlp(seed=s),
    lambda s: vgg("vgg11", 4, 32, 1 / 16, 16, seed=s),
    lambda s: TextTransformer(20, 3, 8, 16, 2, 2, 32, seed=s), lambda s: ImageTableNet(3, 5, 4, seed=s),
]


@pytest.mark.parametrize("make", FACTORIES)
def test_models_are_seeded_in_eval_mode_and_rebuild_from_config(make):
    state = torch.random.get_rng_state()
    a, b, c = make(0), make(0), make(1)
    assert torch.equal(state, torch.random.get_rng_state())       # global RNG untouched
    assert _same_weights(a, b) and not _same_weights(a, c)
    assert not a.training
    rebuilt = build(a.config)
    assert type(rebuilt) is type(a) and _same_weights(a, rebuilt) and rebuilt.config == a.config


def test_small_cnn_uses_one_relu_module_per_use():
    for c, size in ((3, 64), (1, 25), (1, 16), (1, 8)):
        m = SmallCNN(c, 4, size)
        calls = {}
        hooks = [mod.register_forward_hook(lambda mod, i, o: calls.__setitem__(mod, calls.get(mod, 0) + 1))
                 for mod in m.modules() if isinstance(mod, nn.ReLU)]
        out = m(torch.rand(2, c, size, size))
        for h in hooks:
            h.remove()
        relus = [x for x in m.modules() if isinstance(x, nn.ReLU)]
        layers = [x for x in m.modules() if isinstance(x, (nn.Conv2d, nn.Linear))]
        assert out.shape == (2, 4)
        assert len(relus) == len(layers) - 1                    # a ReLU after every layer but the last
        assert all(calls.get(r) == 1 for r in relus)
        assert not any(r.inplace for r in relus)
        assert isinstance(dict(m.named_modules())[m.last_relu], nn.ReLU)
        assert isinstance(dict(m.named_modules())[m.last_conv], nn.Conv2d)


def test_model_arguments_are_checked():
    with pytest.raises(ValueError, match="activation"):
        MLP(3, [4], activation="swish2")
    with pytest.raises(ValueError, match="n_in"):
        MLP(0)
    with pytest.raises(ValueError, match="head"):
        SmallCNN(head="mean")
    with pytest.raises(ValueError, match="unknown model"):
        build({"name": "resnet"})
    with pytest.raises(TypeError, match="seed"):
        MLP(3, seed=1.5)


# ----------------------------------------------------------------------- token ids and two inputs
def test_text_transformer_reads_token_ids_and_its_attention_mask():
    m = TextTransformer(20, 3, max_len=8, d_model=16, heads=2, layers=2, ff=32)
    assert sum(isinstance(x, nn.Embedding) for x in m.modules()) == 1     # the one embedding to attribute at
    ids = torch.randint(3, 20, (4, 8))
    ids[0, 5:] = 0                                                # padding at the end of row 0
    out = m(ids)
    assert out.shape == (4, 3) and torch.isfinite(out).all()
    assert torch.allclose(m(ids, attention_mask=ids != 0), out, atol=1e-6)   # the mask defaults to ids != pad
    other = ids.clone()
    other[0, 5:] = 7                                              # what sits under the padding is ignored
    assert torch.allclose(m(other, (ids != 0).long())[0], out[0], atol=1e-5)
    assert not torch.allclose(m(other)[0], out[0], atol=1e-4)     # ... unless it is attended to
    assert torch.allclose(m(ids[:, :5])[0], out[0], atol=1e-5)    # trailing padding changes nothing
    empty = m(torch.zeros(2, 8, dtype=torch.long))                # every token masked (an empty coalition)
    assert torch.isfinite(empty).all()
    with pytest.raises(ValueError, match="max_len"):
        m(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="input_ids"):
        m(torch.zeros(8, dtype=torch.long))
    with pytest.raises(ValueError, match="divisible"):
        TextTransformer(20, d_model=10, heads=4)


def test_image_table_net_takes_two_inputs_and_uses_both():
    m = ImageTableNet(1, 4, 2)
    img, tab = torch.rand(3, 1, 16, 16), torch.randn(3, 4)
    out = m(img, tab)
    assert out.shape == (3, 2)
    assert not torch.allclose(m(img, tab + 1), out) and not torch.allclose(m(img + 0.5, tab), out)
    assert isinstance(dict(m.named_modules())[m.last_conv], nn.Conv2d)
    relus = [x for x in m.modules() if isinstance(x, nn.ReLU)]
    assert len(relus) == 4 and not any(r.inplace for r in relus)
    with pytest.raises(ValueError, match="n_features"):
        ImageTableNet(n_features=0)
