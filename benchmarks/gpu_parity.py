"""GPU check, part 1: every registered method on the zoo models and a ResNet-18, on the CPU and on the device.

Each (model, method) runs twice with the same arguments and seed: model and inputs on the CPU, then on the
device; the attributions must agree to a relative L2 tolerance. attrkit draws every random number (coalitions,
permutations, noise, path positions, background rows) from seeded *CPU* ``torch.Generator`` s and moves the
draws to the device (``games.common.generator``, ``gradients.noise``, ``gradients.methods``, ``core.references``,
``games.maskers``), so sampled methods see the same draws on both devices and are held to a tolerance only
10x looser than deterministic ones (for float differences that move a stopping rule by a step). TF32 is off,
so both sides compute in float32. A method that refuses a model (e.g. a CAM on a transformer) must refuse it
on both devices with the same error type.
"""
from __future__ import annotations

import inspect
import time

import torch

from .case import rel_error

DETERMINISTIC_TOL = 1e-3     # float32 on two devices (conv algorithms, summation orders differ)
SAMPLED_TOL = 1e-2
ZOO = ("shapes_cnn", "digits_cnn", "faces_cnn", "breast_cancer_mlp", "diabetes_mlp", "text_transformer",
       "image_table_net")
SMOKE_ZOO = ("digits_cnn", "breast_cancer_mlp")


def subjects(smoke: bool) -> list[tuple[str, torch.nn.Module, object]]:
    """``(name, model, x)``: two held-out samples of each zoo model, one 112x112 photo through the ResNet-18
    (smoke: one sample of two small zoo models, a 32x32 photo, width 4)."""
    import attrkit as ak
    from . import inputs
    from .resnet import resnet18
    out = []
    for name in (SMOKE_ZOO if smoke else ZOO):
        x = ak.zoo.dataset(name).x
        k = 1 if smoke else 2
        x = tuple(t[:k] for t in x) if isinstance(x, tuple) else x[:k]
        out.append((name, ak.zoo.pretrained(name).eval(), x))
    size = 32 if smoke else 112
    out.append((f"resnet18{'/4' if smoke else ''} {size}px", resnet18(4 if smoke else 64), inputs.chelsea(size)))
    return out


def options(spec, x, smoke: bool) -> dict:
    """Arguments that keep each method small: 9 grid players on images, few samples and steps, seed 0."""
    import attrkit as ak
    opts = {}
    params = inspect.signature(spec.fn).parameters
    first = x[0] if isinstance(x, tuple) else x
    if spec.players and not isinstance(x, tuple) and first.dim() == 4:
        opts["players"] = ak.grid(x, cells=3)
    elif spec.players and isinstance(x, tuple):    # (the default, 16 image cells + 4 columns: 2^20 coalitions)
        opts["players"] = tuple(ak.grid(t, cells=2) if t.dim() == 4 else ak.features(t) for t in x)
    if "n_samples" in params:
        opts["n_samples"] = (64 if smoke else 128) if spec.players else (4 if smoke else 8)   # (30 features: >= 58)
    if "steps" in params:
        opts["steps"] = 4 if smoke else 16
    if spec.sampled:
        opts["seed"] = 0
    return opts


def _to(v, device):
    if isinstance(v, torch.Tensor):
        return v.to(device)
    if isinstance(v, tuple):
        return tuple(_to(t, device) for t in v)
    if isinstance(v, dict):
        return {k: _to(t, device) for k, t in v.items()}
    return v


def _flat(v) -> torch.Tensor:
    if isinstance(v, dict):
        v = tuple(v[k] for k in sorted(v))
    if isinstance(v, (tuple, list)):
        return torch.cat([_flat(t) for t in v])
    return v.detach().to("cpu", torch.float64).reshape(-1)


def _run(model, x, name, opts, device):
    import attrkit as ak
    m, xd = model.to(device), _to(x, device)
    o = {k: _to(v, device) for k, v in opts.items()}
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    try:
        a = ak.explain(m, xd, method=name, progress=False, **o)
        vals = _flat(a.values)
        err = None
    except (ValueError, TypeError, NotImplementedError) as e:   # attrkit's refusals; torch's 'op not implemented
        # for this device' (NotImplementedError) on one side only becomes a FAIL row naming it, not a crash
        vals, err = None, e
    if device.type == "cuda":
        torch.cuda.synchronize()
    return vals, err, time.perf_counter() - t0


def parity(device: torch.device, smoke: bool, say=print) -> list[dict]:
    """One row per (model, method): status ``ok`` / ``refused on both`` / ``FAIL``, the relative L2 difference,
    its tolerance, and the CPU and device seconds."""
    import attrkit as ak
    rows = []
    cpu = torch.device("cpu")
    for mname, model, x in subjects(smoke):
        for name, spec in sorted(ak.methods().items()):
            opts = options(spec, x, smoke)
            tol = SAMPLED_TOL if spec.sampled else DETERMINISTIC_TOL
            ref, ref_err, cpu_s = _run(model, x, name, opts, cpu)
            got, got_err, dev_s = _run(model, x, name, opts, device)
            row = {"model": mname, "method": name, "sampled": spec.sampled, "tol": tol,
                   "cpu_s": cpu_s, "device_s": dev_s, "error": None}
            if ref_err is not None or got_err is not None:
                same = type(ref_err) is type(got_err)
                row["status"] = "refused on both" if same else "FAIL"
                row["detail"] = f"cpu: {type(ref_err).__name__ if ref_err else 'ok'}, device: " \
                                f"{type(got_err).__name__ if got_err else 'ok'}" + \
                                (f" ({str(ref_err or got_err)[:120]})" if not same else "")
            else:
                e = rel_error(got, ref) if got.shape == ref.shape else float("inf")
                ok = e <= tol or (ref.abs().max() == 0 and got.abs().max() <= 1e-12)
                row.update(error=e, status="ok" if ok else "FAIL", detail="")
            rows.append(row)
            if row["status"] == "FAIL":
                say(f"  parity FAIL: {mname} / {name}: {row['detail'] or row['error']}")
        model.to(cpu)
    return rows


def table(rows: list[dict]) -> str:
    """Markdown: per model, methods ok / refused on both / failed, the worst relative difference."""
    out = ["| model | ok | refused on both | failed | worst rel. L2 (deterministic) | worst rel. L2 (sampled) "
           "| CPU s | device s |", "|---|---|---|---|---|---|---|---|"]
    for m in dict.fromkeys(r["model"] for r in rows):
        rs = [r for r in rows if r["model"] == m]

        def worst(sampled):
            es = [r["error"] for r in rs if r["error"] is not None and r["sampled"] == sampled]
            return f"{max(es):.1e}" if es else "-"
        fails = [r["method"] for r in rs if r["status"] == "FAIL"]
        out.append(f"| {m} | {sum(r['status'] == 'ok' for r in rs)} | "
                   f"{sum(r['status'] == 'refused on both' for r in rs)} | {len(fails)}"
                   f"{' (' + ', '.join(fails) + ')' if fails else ''} | {worst(False)} | {worst(True)} | "
                   f"{sum(r['cpu_s'] for r in rs):.1f} | {sum(r['device_s'] for r in rs):.1f} |")
    return "\n".join(out)
