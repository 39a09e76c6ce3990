"""Writes Tests/OptimTests/Fixtures/optim_reference.safetensors: 10 steps of SGD, SGD with Nesterov
momentum, Adam (L2 weight decay) and AdamW on two small parameters, with gradient clipping and a
learning-rate schedule per case, computed by PyTorch, for Lockstep's optimizer tests to match.
The run is checked against an independent float64 NumPy implementation of the same update rules.

    python launch/pytorch/make_optim_reference.py [--out PATH]
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_reference import write_fixture  # noqa: E402
from nanogpt import lr_at  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_OUT = os.path.join(ROOT, "Tests", "OptimTests", "Fixtures", "optim_reference.safetensors")

STEPS = 10
CLIP = 1.0
# Per-step gradient scales: the global norm is above the clip on some steps and below on others.
GRAD_SCALES = [2.0, 0.3, 1.5, 0.2, 3.0, 0.5, 0.1, 2.5, 0.4, 1.0]
CASES = [
    {"name": "sgd", "kind": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": False,
     "weight_decay": 0.01, "clip": CLIP, "schedule": {"kind": "constant"}},
    {"name": "sgd_nesterov", "kind": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True,
     "weight_decay": 0.01, "clip": CLIP,
     "schedule": {"kind": "linear", "warmup": 2, "decay_steps": 8, "min_lr": 0.01}},
    {"name": "adam", "kind": "adam", "lr": 0.05, "betas": [0.9, 0.99], "eps": 1e-8,
     "weight_decay": 0.1, "clip": CLIP, "schedule": {"kind": "inverse-sqrt", "warmup": 3}},
    {"name": "adamw", "kind": "adamw", "lr": 0.05, "betas": [0.9, 0.99], "eps": 1e-8,
     "weight_decay": 0.1, "clip": CLIP,
     "schedule": {"kind": "warmup-cosine", "warmup": 3, "decay_steps": 8, "min_lr": 0.005}},
]
RTOL = 1e-5


def schedule_lr(it, lr, sched):
    kind = sched["kind"]
    if kind == "constant":
        return lr
    if kind == "linear":
        warmup, decay_steps, min_lr = sched["warmup"], sched["decay_steps"], sched["min_lr"]
        if it < warmup:
            return lr * it / warmup
        if it > decay_steps:
            return min_lr
        return lr + (min_lr - lr) * (it - warmup) / (decay_steps - warmup)
    if kind == "inverse-sqrt":
        if it == 0:
            return 0.0
        return lr * min(it ** -0.5, it * sched["warmup"] ** -1.5)
    if kind == "warmup-cosine":
        return lr_at(it, lr, sched["warmup"], sched["decay_steps"], sched["min_lr"])
    raise ValueError(f"unknown schedule {kind!r}")


def make_optimizer(case, w, b):
    groups = [{"params": [w], "weight_decay": case["weight_decay"]},
              {"params": [b], "weight_decay": 0.0}]
    if case["kind"] == "sgd":
        return torch.optim.SGD(groups, lr=case["lr"], momentum=case["momentum"], dampening=0.0,
                               nesterov=case["nesterov"], foreach=False)
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[case["kind"]]
    return cls(groups, lr=case["lr"], betas=tuple(case["betas"]), eps=case["eps"], foreach=False)


def run_torch(case, init, grads):
    """Returns final (w, b), lrs, pre-clip norms and the clipped gradients of every step."""
    w = init["w"].clone().requires_grad_(True)
    b = init["b"].clone().requires_grad_(True)
    opt = make_optimizer(case, w, b)
    lrs, norms, clipped = [], [], []
    for it in range(STEPS):
        w.grad = grads["w"][it].clone()
        b.grad = grads["b"][it].clone()
        norm = torch.nn.utils.clip_grad_norm_([w, b], case["clip"])
        lr = schedule_lr(it, case["lr"], case["schedule"])
        for g in opt.param_groups:
            g["lr"] = lr
        opt.step()
        lrs.append(lr)
        norms.append(norm.item())
        clipped.append((w.grad.detach().clone(), b.grad.detach().clone()))
    return (w.detach().clone(), b.detach().clone()), lrs, norms, clipped


def run_numpy(case, init, clipped, lrs):
    """Float64 implementation of PyTorch's documented SGD / Adam / AdamW update rules."""
    ps = [init["w"].numpy().astype(np.float64), init["b"].numpy().astype(np.float64)]
    wds = [case["weight_decay"], 0.0]
    state = [[np.zeros_like(p), np.zeros_like(p)] for p in ps]
    for it in range(STEPS):
        lr, t = lrs[it], it + 1
        for i, (p, wd) in enumerate(zip(ps, wds)):
            g = clipped[it][i].numpy().astype(np.float64)
            if case["kind"] == "sgd":
                d = g + wd * p
                buf = state[i][0] = case["momentum"] * state[i][0] + d
                d = d + case["momentum"] * buf if case["nesterov"] else buf
                ps[i] = p - lr * d
                continue
            b1, b2 = case["betas"]
            if case["kind"] == "adamw":
                p = p * (1.0 - lr * wd)
            else:
                g = g + wd * p
            m = state[i][0] = b1 * state[i][0] + (1.0 - b1) * g
            v = state[i][1] = b2 * state[i][1] + (1.0 - b2) * g * g
            denom = np.sqrt(v) / math.sqrt(1.0 - b2 ** t) + case["eps"]
            ps[i] = p - lr / (1.0 - b1 ** t) * m / denom
    return ps


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=DEFAULT_OUT)
    args = ap.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)

    init = {"w": torch.randn(4, 3), "b": torch.randn(3)}
    scales = torch.tensor(GRAD_SCALES, dtype=torch.float32)
    grads = {"w": torch.randn(STEPS, 4, 3) * scales[:, None, None],
             "b": torch.randn(STEPS, 3) * scales[:, None]}
    out = {"init.w": init["w"], "init.b": init["b"], "grads.w": grads["w"], "grads.b": grads["b"]}

    finals = {}
    for case in CASES:
        name = case["name"]
        (w, b), lrs, norms, clipped = run_torch(case, init, grads)
        ref_w, ref_b = run_numpy(case, init, clipped, lrs)
        # Deviation relative to each tensor's largest entry: float32 cancellation leaves entries
        # near zero with a large elementwise relative error but a tiny absolute one.
        dev = max(float(np.abs(got.numpy().astype(np.float64) - ref).max() / np.abs(ref).max())
                  for got, ref in ((w, ref_w), (b, ref_b)))
        assert dev <= RTOL, f"{name}: torch and numpy differ by {dev:.3e} relative"
        finals[name] = w
        out[f"{name}.final.w"] = w
        out[f"{name}.final.b"] = b
        out[f"{name}.lrs"] = torch.tensor(lrs, dtype=torch.float32)
        out[f"{name}.norms"] = torch.tensor(norms, dtype=torch.float32)
        print(f"{name:13s} max rel deviation from numpy {dev:.3e}")
        print(f"{'':13s} lrs   " + " ".join(f"{x:.5f}" for x in lrs))
        print(f"{'':13s} norms " + " ".join(f"{x:.4f}" for x in norms))
    gap = (finals["adam"] - finals["adamw"]).abs().max().item()
    assert gap > 1e-3, f"adam and adamw final w coincide (max diff {gap:.3e})"
    print(f"adam vs adamw final w max diff {gap:.4f}")

    for k, v in out.items():
        assert v.dtype == torch.float32, k
    meta = {"cases": json.dumps(CASES)}
    write_fixture(args.out, out, meta)
    print(f"wrote {args.out}: {len(out)} tensors, {os.path.getsize(args.out)} bytes")


if __name__ == "__main__":
    main()
