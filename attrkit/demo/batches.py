"""The samples the demo explains: held-out one- and two-object images, digits, table rows; two targets each."""
from __future__ import annotations

import torch

from .settings import DIGITS_MODEL, IMAGE_MODEL, TABLE_MODEL, Settings


def image_batch(zoo, model, S: Settings, seed: int) -> dict:
    """Held-out one-object images (the zoo's test split) and fresh two-object images; two targets each."""
    from ..data import shapes_pairs
    test = zoo.dataset(IMAGE_MODEL)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(test), generator=g)[:S.n_single].tolist()
    single = test.subset(idx)
    size = int(single.x.shape[-1])
    pairs = shapes_pairs(n=S.n_pairs, size=size, seed=10_000 + seed, progress=False)
    classes = list(test.classes)
    x = torch.cat([single.x, pairs.x])
    with torch.no_grad():
        out = model(x)
    top2 = out.topk(2, dim=1).indices
    ns = S.n_single
    target_a = torch.cat([top2[:ns, 0], pairs.y[:, 0]])
    target_b = torch.cat([top2[:ns, 1], pairs.y[:, 1]])
    names = [f"held-out {classes[int(c)]} #{i + 1}" for i, c in enumerate(single.y)] + \
            [f"two objects: {classes[int(a)]} + {classes[int(b)]}" for a, b in pairs.y]
    # ground-truth masks [N, C, H, W]: one-object images put their mask under their class
    masks = torch.zeros(len(x), len(classes), size, size, dtype=torch.bool)
    for i in range(ns):
        masks[i, int(single.y[i])] = single.masks[i, 0]
    masks[ns:] = pairs.masks.bool()
    return {"x": x, "targets": (target_a, target_b), "names": names, "classes": classes, "masks": masks,
            "n_single": ns, "pair_classes": pairs.y, "labels": torch.cat([single.y, pairs.y[:, 0]])}


def digits_batch(zoo, model, S: Settings) -> dict:
    test = zoo.dataset(DIGITS_MODEL)
    d = test.subset(list(range(S.n_single)))
    with torch.no_grad():
        top2 = model(d.x).topk(2, dim=1).indices
    classes = [str(c) for c in (test.classes or range(10))]
    return {"x": d.x, "targets": (top2[:, 0], top2[:, 1]), "classes": classes, "masks": None, "n_single": len(d),
            "names": [f"digit {classes[int(c)]} #{i + 1}" for i, c in enumerate(d.y)]}


def table_batch(zoo, model, S: Settings) -> dict:
    test = zoo.dataset(TABLE_MODEL)
    n = min(S.n_rows, len(test))
    d = test.subset(list(range(n)))
    classes = list(test.classes or ["0", "1"])
    return {"x": d.x, "y": d.y, "classes": classes, "features": list(test.feature_names or []),
            "names": [f"patient {i + 1} ({classes[int(c)]})" for i, c in enumerate(d.y)],
            "background": zoo.dataset(TABLE_MODEL, "train").x, "meta": test.meta}
