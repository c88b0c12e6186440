"""Players, maskers and the Game evaluator (cache, counter, chunks, all classes)."""
import pytest
import torch
from torch import nn

import attrkit as ak
from attrkit.games import Background, Game, as_players, features, grid, layer_players, superpixels
from conftest import TinyCNN


def test_features_and_groups():
    x = torch.randn(3, 5)
    assert features(x).tolist() == [[0, 1, 2, 3, 4]] * 3
    assert features(x, groups=[[1, 3], [0]])[0].tolist() == [1, 0, 2, 0, 3]
    assert features(x, groups=[7, 7, 2, 2, 9])[0].tolist() == [1, 1, 0, 0, 2]
    with pytest.raises(ValueError, match="one group only"):
        features(x, groups=[[0, 1], [1]])
    with pytest.raises(ValueError, match="outside"):
        features(x, groups=[[0, 5]])


def test_grid_shapes():
    g = grid(torch.zeros(2, 3, 6, 8), cells=(2, 4))
    assert g.shape == (2, 6, 8) and g.unique().tolist() == list(range(8))
    assert (g[0, :3, :2] == 0).all() and (g[0, 3:, 6:] == 7).all()
    assert grid(torch.zeros(1, 2, 10), cells=5)[0].tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    with pytest.raises(ValueError, match="does not fit"):
        grid(torch.zeros(1, 3, 4, 4), cells=5)


@pytest.mark.parametrize("algorithm", ["slic", "quickshift", "felzenszwalb"])
def test_superpixels_count_and_labels(algorithm):
    pytest.importorskip("skimage", reason="superpixels need scikit-image (attrkit[image])")
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32)
    x[:, :, 8:24, 8:24] += 2                                # an object so segments follow an edge
    sp = superpixels(x, n=12, algorithm=algorithm)
    assert sp.shape == (2, 32, 32) and sp.dtype == torch.long
    for s in sp:
        u = s.unique()
        assert u.tolist() == list(range(len(u)))            # contiguous 0..l-1
        assert 4 <= len(u) <= 40                            # near the requested 12
    with pytest.raises(ValueError, match="unknown superpixel algorithm"):
        superpixels(x, 10, algorithm="watershed")
    with pytest.raises(ValueError, match="images"):
        superpixels(torch.rand(2, 5), 10)


def test_user_mask_relabelled_and_mapping_recorded():
    x = torch.randn(2, 3, 4, 4)
    lab = torch.tensor([[3, 3, 10, 10]] * 4)              # labels 3 and 10 only
    p = as_players(lab, x)
    assert p.n.tolist() == [2, 2] and p.relabelled
    assert p.ids[0].tolist() == [3, 10]
    assert p.labels.shape == (2, 1, 4, 4) and p.labels.max() == 1
    a = ak.explain(TinyCNN(size=4).eval(), x, "feature_ablation", players=lab)
    assert a.info["player_ids"][0].tolist() == [3, 10]
    assert a.players.shape == (2, 4, 4)


def test_bad_player_masks():
    x = torch.randn(2, 3, 4, 4)
    with pytest.raises(ValueError, match="does not match the input"):
        as_players(torch.zeros(5, 5, dtype=torch.long), x)
    with pytest.raises(ValueError, match="empty"):
        as_players(torch.zeros(0, dtype=torch.long), x)
    with pytest.raises(TypeError, match="integer labels"):
        as_players(torch.zeros(4, 4), x)
    with pytest.raises(ValueError, match="negative"):
        as_players(-torch.ones(4, 4, dtype=torch.long), x)
    with pytest.raises(ValueError, match="only for layer games"):
        ak.explain(TinyCNN(size=4).eval(), x, "shapley", players="cells")


def test_per_sample_and_channel_players():
    x = torch.randn(2, 3, 4, 4)
    per_sample = torch.stack([grid(x, 2)[0], grid(x, 1)[0]])      # 4 players, then 1 player
    p = as_players(per_sample, x)
    assert p.n.tolist() == [4, 1]
    full = torch.arange(3).view(3, 1, 1).expand(3, 4, 4)         # one player per channel
    assert as_players(full, x).n.tolist() == [3, 3]


def test_layer_players():
    a = torch.randn(2, 5, 3, 3)
    assert layer_players(a).shape == (2, 1, 3, 3) and layer_players(a).max() == 8
    assert layer_players(a, "channels").shape == (2, 5, 1, 1)
    assert layer_players(a, cells=(1, 3)).unique().tolist() == [0, 1, 2]
    assert layer_players(torch.randn(2, 7)).shape == (2, 7)


def _linear_game(masker, x, **kw):
    lin = nn.Linear(x.shape[1], 1).double()
    return lin, Game(lin, x, masker=masker, **kw)


def test_maskers_references():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    cnn = TinyCNN(size=8).double().eval()
    players = grid(x, 2)
    for name in ("zeros", "mean", "blur", "noise", "shuffle", 0.5, torch.full((3, 8, 8), 0.2, dtype=torch.float64)):
        g = Game(cnn, x, players=players, masker=name)
        ref = g.references[:, 0]
        assert ref.shape == x.shape and torch.isfinite(ref).all()
    g = Game(cnn, x, players=players, masker="shuffle", seed=3)
    ref = g.references[:, 0]
    assert not torch.equal(ref, x)
    for j in range(4):                                   # each player's pixels permuted within the player
        m = players[0] == j
        a = x[0][:, m].T.tolist()
        b = ref[0][:, m].T.tolist()
        assert sorted(a) == sorted(b)                   # same pixel colour vectors, channels kept together
    mean = Game(cnn, x, players=players, masker="mean").references[:, 0]
    assert torch.allclose(mean[0, 1], x[0, 1].mean().expand(8, 8))
    with pytest.raises(ValueError, match="unknown masker"):
        Game(cnn, x, masker="gray")


def test_background_masker_averages_outputs():
    torch.manual_seed(0)
    x = torch.randn(2, 4, dtype=torch.float64)
    bg = torch.randn(6, 4, dtype=torch.float64)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1)).double()
    g = Game(model, x, masker=Background(bg))
    z = torch.tensor([[True, False, True, False]])
    v = g(z, torch.tensor([1]))
    masked = torch.where(z, x[1:2], bg)
    expect = model(masked).mean()
    assert torch.allclose(v[0, 0], expect.detach(), atol=1e-12)
    assert g.n_evals == 6
    with pytest.raises(ValueError, match="background rows have shape"):
        Game(model, x, masker=Background(torch.randn(3, 5)))


def test_game_cache_counter_and_chunk_invariance():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 8, 8)
    cnn = TinyCNN(size=8).eval()
    z = torch.rand(12, 4) < 0.5
    rows = torch.arange(12) % 2
    ref = None
    for bs in (1, 2, 3, None):
        g = Game(cnn, x, players=grid(x, 2), batch_size=bs)
        v = g(torch.cat([z, z]), torch.cat([rows, rows]))       # every coalition twice
        distinct = len({(int(r), tuple(c.tolist())) for c, r in zip(z, rows)})
        assert g.n_evals == distinct
        v2 = g(z, rows)
        assert g.n_evals == distinct                           # all cached now
        assert torch.equal(v2, v[:12])
        ref = v if ref is None else ref
        assert torch.allclose(v, ref, atol=1e-6)
    # values are the model's target output on the masked input
    g = Game(cnn, x, players=grid(x, 2), target=1)
    keep = grid(x, 2)[0] != 2
    direct = cnn(torch.where(keep, x[:1], torch.zeros(()))).detach()[0, 1]
    assert torch.allclose(g(torch.tensor([[True, True, False, True]]), torch.tensor([0]))[0, 0], direct.double(), atol=1e-6)


def test_all_classes_from_the_same_forward_passes():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 8, 8)
    cnn = TinyCNN(size=8).eval()
    g = Game(cnn, x, players=grid(x, 2), all_classes=True)
    z = torch.rand(10, 4) < 0.5
    v = g(z, torch.zeros(10, dtype=torch.long))
    assert v.shape == (10, 4) and g.n_evals == len({tuple(r) for r in z.tolist()})
    for c in range(4):
        gc = Game(cnn, x, players=grid(x, 2), target=c)
        assert torch.allclose(gc(z, torch.zeros(10, dtype=torch.long))[:, 0], v[:, c])
    a = ak.explain(cnn, x, "shapley", target=[1, 3], players=grid(x, 2), all_classes=True)
    pv = a.info["player_values_all"]
    assert pv.shape == (2, 4, 4)
    assert torch.allclose(pv[0, 1], a.info["player_values"][0]) and torch.allclose(pv[1, 3], a.info["player_values"][1])
    with pytest.raises(ValueError, match="all_classes"):
        ak.explain(cnn, x, "shapley", target=lambda out: out.sum(1), all_classes=True)


def test_progress_bar_and_hooks_removed(capsys):
    from attrkit.core.modules import count_hooks
    x = torch.rand(1, 3, 8, 8)
    cnn = TinyCNN(size=8).eval()
    before = count_hooks(cnn)
    ak.explain(cnn, x, "shapley", players=grid(x, 2), progress=True)
    err = capsys.readouterr().err                      # one bar for the call: 2^4 coalitions of one sample
    assert "attrkit shapley" in err and "/16" in err
    ak.explain(cnn, x, "kernel_shap", layer="features.4", n_samples=50)
    assert count_hooks(cnn) == before
