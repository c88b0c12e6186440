"""Built-in data: exact masks, separated objects, balance, class-blind colours, determinism."""

import math

import numpy as np
import pytest
import torch

from attrkit.data import (SHAPE_CLASSES, TEXT_EVIDENCE, TEXT_VOCAB, Dataset, breast_cancer, diabetes,
                          digits, faces, image_table, photos, shape_mask, shapes, shapes_pairs,
                          synthetic_tabular, text_evidence)
from attrkit.data.text import FILLER, PAD_ID, decode


@pytest.fixture(scope="module")
def flat_shapes():
    """Noise-free images: every object pixel has exactly the object colour."""
    return shapes(100, size=48, seed=3, noise=0.0, progress=False)


@pytest.fixture(scope="module")
def pairs():
    return shapes_pairs(120, size=64, seed=4, progress=False)


# ------------------------------------------------------------------------- shapes
def test_shapes_masks_cover_exactly_the_object_pixels(flat_shapes):
    d = flat_shapes
    assert d.x.shape == (100, 3, 48, 48) and d.masks.shape == (100, 1, 48, 48)
    assert d.masks.dtype == torch.bool and float(d.x.min()) >= 0 and float(d.x.max()) <= 1
    for i in range(len(d)):
        m = d.masks[i, 0]
        colour = d.meta["color"][i][:, None]
        inside = d.x[i][:, m]                       # [3, pixels in mask]
        outside = d.x[i][:, ~m]
        assert m.any()
        assert torch.allclose(inside, colour.expand_as(inside), atol=1e-6)    # all painted
        # no pixel outside the mask has the object colour: L-inf distance >= the contrast margin
        assert float((outside - colour).abs().amax(0).min()) >= 0.25 - 1e-6


def test_shape_masks_have_the_expected_area():
    r, size = 100.0, 256                      # large, so pixel discretisation is negligible
    areas = {
        "circle": math.pi * r ** 2,
        "square": (1.5 * r) ** 2,
        "triangle": 3 * math.sqrt(3) / 4 * r ** 2,
        "cross": 2 * (0.56 * r) * (1.8 * r) - (0.56 * r) ** 2,
        "star": 5 * r * 0.45 * r * math.sin(math.pi / 5),      # 10 triangles: centre, tip, notch
    }
    for name, area in areas.items():
        m = shape_mask(name, 128.0, 128.0, r, 0.0, size)
        assert abs(int(m.sum()) - area) / area < 0.01, name


def test_shapes_labels_are_balanced_and_deterministic():
    a = shapes(103, size=32, seed=7, progress=False)
    counts = torch.bincount(a.y, minlength=5)
    assert int(counts.max() - counts.min()) <= 1 and a.classes == list(SHAPE_CLASSES)
    b = shapes(103, size=32, seed=7, progress=False)
    c = shapes(103, size=32, seed=8, progress=False)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and torch.equal(a.masks, b.masks)
    assert not torch.equal(a.x, c.x)


def _nearest_centroid_accuracy(feats, y, n_train):
    """Accuracy of a nearest-class-mean classifier fitted on the first n_train rows."""
    means = torch.stack([feats[:n_train][y[:n_train] == c].mean(0) for c in range(5)])
    pred = torch.cdist(feats[n_train:], means).argmin(1)
    return float((pred == y[n_train:]).float().mean())


def test_shape_class_is_not_decidable_from_colour_or_background():
    d = shapes(1000, size=16, seed=11, progress=False)
    assert torch.equal(torch.bincount(d.y), torch.full((5,), 200))
    corner = d.x[:, :, :2, :2].mean((2, 3))                          # background pixels only
    for feats in (d.meta["color"], d.meta["background"], corner):
        assert _nearest_centroid_accuracy(feats, d.y, 750) < 0.3     # chance is 0.2
    # the check has power: a class-dependent colour is found at once
    leaky = torch.cat([d.meta["color"], 0.3 * torch.nn.functional.one_hot(d.y, 5)], 1)
    assert _nearest_centroid_accuracy(leaky, d.y, 750) > 0.6


def test_shape_pairs_hold_two_different_objects_apart(pairs):
    from scipy.ndimage import distance_transform_edt

    d = pairs
    assert d.y.shape == (120, 2) and d.masks.shape == (120, 5, 64, 64)
    assert bool((d.y[:, 0] != d.y[:, 1]).all())
    counts = torch.bincount(d.y.reshape(-1), minlength=5)
    assert int(counts.max() - counts.min()) <= 1                          # classes balanced
    for i in range(len(d)):
        present = [int(c) for c in torch.nonzero(d.masks[i].flatten(1).any(1)).flatten()]
        assert sorted(present) == sorted(d.y[i].tolist())                 # one mask per class
        a, b = d.masks[i, d.y[i, 0]].numpy(), d.masks[i, d.y[i, 1]].numpy()
        assert not (a & b).any()
        dist = distance_transform_edt(~a)                                 # distance to object A
        assert dist[b].min() >= d.meta["gap"]


def test_shape_pairs_objects_carry_their_colour(pairs):
    d = shapes_pairs(20, size=64, seed=5, noise=0.0, progress=False)
    for i in range(len(d)):
        for j in range(2):
            m = d.masks[i, d.y[i, j]]
            assert torch.allclose(d.x[i][:, m], d.meta["color"][i, j][:, None].expand(3, int(m.sum())),
                                  atol=1e-6)


def test_generators_show_progress_bars_that_can_be_silenced(capsys):
    shapes(300, size=32, seed=0, progress=True)
    assert "shapes" in capsys.readouterr().err
    shapes(300, size=32, seed=0, progress=False)
    shapes_pairs(10, size=32, seed=0, progress=False)
    assert capsys.readouterr().err == ""


def test_shape_arguments_are_checked():
    with pytest.raises(ValueError, match="n must"):
        shapes(0)
    with pytest.raises(ValueError, match="size"):
        shapes(10, size=8)
    with pytest.raises(ValueError, match="classes"):
        shapes(10, classes=["circle", "hexagon"])
    with pytest.raises(ValueError, match="radius"):
        shapes(10, radius=(0.3, 0.1))
    with pytest.raises(ValueError, match="apart"):
        shapes_pairs(10, size=32, radius=(0.25, 0.25), gap=20, progress=False)


# -------------------------------------------------------------------- real images
def test_digits_and_faces():
    d = digits()
    assert d.x.shape == (1797, 1, 8, 8) and d.num_classes == 10
    assert float(d.x.min()) == 0.0 and float(d.x.max()) == 1.0
    assert digits(upscale=2).x.shape == (1797, 1, 16, 16)
    with pytest.raises(ValueError, match="upscale"):
        digits(upscale=0)
    f = faces()
    assert f.x.shape == (200, 1, 25, 25) and f.classes == ["non-face", "face"]
    assert torch.equal(torch.bincount(f.y), torch.tensor([100, 100]))


def test_photos():
    p = photos()
    assert {"chelsea", "astronaut", "coffee", "rocket"} <= set(p)
    assert p["astronaut"].shape == (3, 512, 512) and p["chelsea"].shape == (3, 300, 451)
    assert all(float(v.min()) >= 0 and float(v.max()) <= 1 for v in p.values())
    small = photos(size=32, names=["coffee", "rocket"])
    assert torch.stack(list(small.values())).shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match="unknown photo"):
        photos(names=["mona_lisa"])


# ------------------------------------------------------------------------ tabular
def test_breast_cancer_is_standardised_with_stats_in_meta():
    from sklearn.datasets import load_breast_cancer

    d = breast_cancer()
    raw = torch.from_numpy(load_breast_cancer().data).float()
    assert d.x.shape == (569, 30) and len(d.feature_names) == 30 and d.classes == ["malignant", "benign"]
    assert torch.allclose(d.x.mean(0), torch.zeros(30), atol=1e-5)
    assert torch.allclose(d.x.std(0, unbiased=False), torch.ones(30), atol=1e-4)
    assert torch.allclose(d.x * d.meta["std"] + d.meta["mean"], raw, rtol=1e-4, atol=1e-3)


def test_diabetes_is_a_standardised_regression():
    d = diabetes()
    assert d.x.shape == (442, 10) and d.classes is None and not d.is_classification
    assert d.feature_names[:3] == ["age", "sex", "bmi"]
    assert abs(float(d.y.mean())) < 1e-5
    assert 25 <= float(d.y.min() * d.meta["y_std"] + d.meta["y_mean"]) <= float(
        d.y.max() * d.meta["y_std"] + d.meta["y_mean"]) <= 346 + 1e-3


def test_synthetic_tabular_has_a_known_formula():
    d = synthetic_tabular(500, seed=1)
    f = d.meta["formula"]
    assert torch.allclose(d.y, f(d.x))
    assert "sin" in d.meta["formula_str"] and d.feature_names[5] == "dummy"
    x = d.x.clone()
    x[:, 5] = torch.randn(500)                                     # dummy: no effect
    assert torch.equal(f(x), d.y)
    assert torch.allclose(f(d.x[:, [1, 0, 2, 3, 4, 5]]), d.y)      # symmetric pair
    x = d.x.clone()
    x[:, 2] = 0                                                    # interaction vanishes with one factor
    x2 = x.clone()
    x2[:, 3] = torch.randn(500)
    assert torch.allclose(f(x), f(x2))
    assert torch.equal(synthetic_tabular(50, seed=2).x, synthetic_tabular(50, seed=2).x)
    assert not torch.equal(synthetic_tabular(50, seed=2).x, synthetic_tabular(50, seed=3).x)
    noisy = synthetic_tabular(500, seed=1, noise=0.1)
    assert 0.05 < float((noisy.y - f(noisy.x)).std()) < 0.15


# ------------------------------------------------------------------------ Dataset
def test_dataset_split_is_stratified_disjoint_and_reproducible():
    d = digits()
    tr, te = d.split(0.2, seed=0)
    assert len(tr) + len(te) == len(d)
    assert set(tr.indices).isdisjoint(te.indices) and sorted(tr.indices + te.indices) == list(range(len(d)))
    assert torch.equal(te.x, d.x[te.indices])
    share = torch.bincount(te.y, minlength=10).float() / torch.bincount(d.y, minlength=10).float()
    assert float((share - 0.2).abs().max()) < 0.02
    assert te.indices == d.split(0.2, seed=0)[1].indices != d.split(0.2, seed=1)[1].indices
    sub = te.subset([0, 2])                                   # indices stay those of the full set
    assert sub.indices == [te.indices[0], te.indices[2]]
    with pytest.raises(ValueError, match="test_fraction"):
        d.split(1.5)


def test_dataset_validates_its_fields():
    with pytest.raises(ValueError, match="rows"):
        Dataset(torch.zeros(3, 2), torch.zeros(4))
    with pytest.raises(TypeError):
        Dataset(np.zeros((3, 2)), torch.zeros(3))
    with pytest.raises(TypeError, match="tuple of tensors"):
        Dataset((torch.zeros(3, 2), np.zeros(3)), torch.zeros(3))
    with pytest.raises(ValueError, match="attention_mask has 2 rows"):
        Dataset(torch.zeros(3, 2), torch.zeros(3), attention_mask=torch.ones(2, 2))


# ------------------------------------------------------------------------- text with planted evidence
def test_text_rationale_marks_exactly_the_evidence_of_the_label():
    d = text_evidence(300, seed=5)
    ids, mask, r = d.x, d.attention_mask, d.rationale
    assert ids.dtype == torch.long and ids.shape == (300, 16) and r is d.masks and r.shape == ids.shape
    assert torch.equal(mask, ids != PAD_ID) and d.meta["vocab"] == list(TEXT_VOCAB)
    assert bool((~mask[:, :6]).sum() == 0)                         # at least min_len real tokens
    pads = ~mask                                                   # padding only at the end
    assert torch.equal(pads, pads.int().cummax(1).values.bool())
    evidence = {c: {TEXT_VOCAB.index(w) for w in ws} for c, ws in enumerate(TEXT_EVIDENCE.values())}
    fillers = {TEXT_VOCAB.index(w) for w in FILLER}
    for i in range(len(d)):
        label = int(d.y[i])
        assert {int(t) for t in ids[i][r[i]]} <= evidence[label]  # the rationale: the label's evidence
        assert {int(t) for t in ids[i][mask[i] & ~r[i]]} <= fillers   # the rest: neutral fillers
        assert 1 <= int(r[i].sum()) <= 3 and not bool((r[i] & ~mask[i]).any())
    assert abs(float(d.y.float().mean()) - 0.5) <= 1 / 300
    assert len(decode(ids[0])) == int(mask[0].sum())
    # fillers carry no label: each appears about as often in both classes
    counts = torch.stack([torch.bincount(ids[d.y == c][mask[d.y == c]], minlength=len(TEXT_VOCAB))
                          for c in (0, 1)]).float()
    f = sorted(fillers)
    share = counts[0, f] / (counts[0, f] + counts[1, f])
    assert float((share - 0.5).abs().max()) < 0.2                # 300 sentences: ~60 draws of each filler


def test_text_and_image_table_are_deterministic_under_their_seed():
    a, b, c = text_evidence(50, seed=1), text_evidence(50, seed=1), text_evidence(50, seed=2)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and torch.equal(a.rationale, b.rationale)
    assert not torch.equal(a.x, c.x)
    p, q, o = image_table(40, seed=1), image_table(40, seed=1), image_table(40, seed=2)
    assert all(torch.equal(s, t) for s, t in zip(p.x, q.x)) and torch.equal(p.y, q.y)
    assert not torch.equal(p.x[1], o.x[1])
    with pytest.raises(ValueError, match="evidence"):
        text_evidence(10, evidence=(2, 9))


def test_image_table_label_is_square_xor_key():
    d = image_table(400, seed=3)
    img, tab = d.x
    assert img.shape == (400, 1, 16, 16) and tab.shape == (400, 4) and d.feature_names[0] == "key"
    present = d.masks.flatten(1).any(1)
    assert torch.equal(present, d.meta["present"]) and abs(float(present.float().mean()) - 0.5) <= 1 / 400
    assert torch.equal(d.y.bool(), present ^ (tab[:, 0] > 0))
    inside = img[d.masks]                                          # the square is 0.5 brighter
    outside = img[~d.masks]
    assert float(inside.min()) >= 0.65 - 1e-6 and float(outside.max()) <= 0.35 + 1e-6
    for k in (0, 1):                                               # each input alone is at chance
        assert abs(float(d.y[present == bool(k)].float().mean()) - 0.5) < 0.1
    train, test = d.split(0.25, seed=0)                            # tuple inputs split row by row
    assert torch.equal(test.x[1], tab[test.indices]) and torch.equal(test.masks, d.masks[test.indices])
    assert len(train) + len(test) == 400
