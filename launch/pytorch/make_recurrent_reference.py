"""Writes Tests/ModelsTests/Fixtures/recurrent_reference.safetensors: for each of a small two-layer
Elman RNN (tanh), LSTM and GRU language model (embedding -> recurrent stack -> linear head), the
weights, one forward pass (logits, loss with an ignored target) and the gradients of every
parameter, computed by PyTorch, for Lockstep's tests to match. The logits are checked against an
independent float64 NumPy implementation of the three cells.

    python launch/pytorch/make_recurrent_reference.py [--out PATH]
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_reference import write_fixture  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_OUT = os.path.join(ROOT, "Tests", "ModelsTests", "Fixtures", "recurrent_reference.safetensors")

CONFIG = {"vocab_size": 13, "block_size": 6, "n_layer": 2, "n_embd": 5, "hidden": 7, "batch": 3,
          "ignored_target": [1, 2]}
KINDS = ["rnn", "lstm", "gru"]
PARAM_STD = 0.3
ATOL = 1e-5


class RecurrentLM(nn.Module):
    def __init__(self, kind, cfg):
        super().__init__()
        V, E, H, L = cfg["vocab_size"], cfg["n_embd"], cfg["hidden"], cfg["n_layer"]
        self.encoder = nn.Embedding(V, E)
        if kind == "rnn":
            self.rnn = nn.RNN(E, H, num_layers=L, batch_first=True, nonlinearity="tanh")
        elif kind == "lstm":
            self.rnn = nn.LSTM(E, H, num_layers=L, batch_first=True)
        elif kind == "gru":
            self.rnn = nn.GRU(E, H, num_layers=L, batch_first=True)
        else:
            raise ValueError(f"unknown cell kind {kind!r}")
        self.decoder = nn.Linear(H, V)

    def forward(self, idx):
        x = self.encoder(idx)
        out, _ = self.rnn(x)  # zero initial state
        return self.decoder(out)


@torch.no_grad()
def init_normal(model, gen):
    """Every parameter N(0, PARAM_STD) from `gen`, so the fixture does not depend on PyTorch's init."""
    for _, p in model.named_parameters():
        p.copy_(torch.normal(0.0, PARAM_STD, p.shape, generator=gen, dtype=p.dtype))


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def numpy_logits(kind, params, idx, n_layer):
    """Float64 forward pass using PyTorch's documented cell equations and gate orders
    (LSTM: i, f, g, o; GRU: r, z, n)."""
    P = {k: v.numpy().astype(np.float64) for k, v in params.items()}
    x = P["encoder.weight"][idx.numpy()]  # (B, T, E)
    B, T, _ = x.shape
    for l in range(n_layer):
        Wih, Whh = P[f"rnn.weight_ih_l{l}"], P[f"rnn.weight_hh_l{l}"]
        bih, bhh = P[f"rnn.bias_ih_l{l}"], P[f"rnn.bias_hh_l{l}"]
        H = Whh.shape[1]
        h, c = np.zeros((B, H)), np.zeros((B, H))
        outs = []
        for t in range(T):
            gi = x[:, t] @ Wih.T + bih
            gh = h @ Whh.T + bhh
            if kind == "rnn":
                h = np.tanh(gi + gh)
            elif kind == "lstm":
                i, f, g, o = np.split(gi + gh, 4, axis=1)
                i, f, g, o = _sigmoid(i), _sigmoid(f), np.tanh(g), _sigmoid(o)
                c = f * c + i * g
                h = o * np.tanh(c)
            else:
                i_r, i_z, i_n = np.split(gi, 3, axis=1)
                h_r, h_z, h_n = np.split(gh, 3, axis=1)
                r, z = _sigmoid(i_r + h_r), _sigmoid(i_z + h_z)
                n = np.tanh(i_n + r * h_n)
                h = (1.0 - z) * n + z * h
            outs.append(h)
        x = np.stack(outs, axis=1)
    return x @ P["decoder.weight"].T + P["decoder.bias"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=DEFAULT_OUT)
    args = ap.parse_args()

    torch.manual_seed(2024)
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    cfg = CONFIG
    V, T, B = cfg["vocab_size"], cfg["block_size"], cfg["batch"]

    tokens = torch.randint(0, V, (B, T + 1), dtype=torch.int64)
    inputs, targets = tokens[:, :T], tokens[:, 1:].clone()
    targets[tuple(cfg["ignored_target"])] = -1
    out = {"tokens": tokens}
    gen = torch.Generator().manual_seed(7)

    for kind in KINDS:
        model = RecurrentLM(kind, cfg)
        init_normal(model, gen)
        params = {k: v.detach().clone() for k, v in model.state_dict().items()}
        for k, v in params.items():
            out[f"{kind}.param.{k}"] = v

        logits = model(inputs)
        loss = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index=-1)
        loss.backward()
        out[f"{kind}.logits"] = logits.detach().clone()
        out[f"{kind}.loss"] = loss.detach().reshape(1).clone()
        grads = {k: p.grad.detach().clone() for k, p in model.named_parameters()}
        assert grads.keys() == params.keys(), kind
        for k, g in grads.items():
            out[f"{kind}.grad.{k}"] = g

        ref = numpy_logits(kind, params, inputs, cfg["n_layer"])
        dev = float(np.abs(logits.detach().numpy().astype(np.float64) - ref).max())
        assert dev <= ATOL, f"{kind}: torch and numpy logits differ by {dev:.3e}"
        gnorm = float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads.values())))
        print(f"{kind:5s} max logits deviation from numpy {dev:.3e}  loss {loss.item():.6f}  "
              f"grad norm {gnorm:.6f}")

    for k, v in out.items():
        assert v.dtype in (torch.float32, torch.int64), k
    meta = {"config": json.dumps(cfg)}
    write_fixture(args.out, out, meta)
    print(f"wrote {args.out}: {len(out)} tensors, {os.path.getsize(args.out)} bytes")


if __name__ == "__main__":
    main()
