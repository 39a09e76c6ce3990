"""Writes Tests/ModelsTests/Fixtures/gpt_reference.safetensors: a small GPT's weights, one
forward/backward (logits, loss, gradients) and a 10-step AdamW run with warmup, cosine decay and
clipping, computed by PyTorch, for Lockstep's tests to match.

    python launch/pytorch/make_reference.py [--out PATH]
"""
import argparse
import dataclasses
import json
import os
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nanogpt import GPT, GPTConfig, lr_at, make_adamw  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_OUT = os.path.join(ROOT, "Tests", "ModelsTests", "Fixtures", "gpt_reference.safetensors")

CONFIG = GPTConfig(vocab_size=61, block_size=16, n_layer=2, n_head=2, n_embd=24, dropout=0.0, bias=True, gelu="erf")
OPT = {"lr": 1e-2, "betas": [0.9, 0.99], "eps": 1e-8, "weight_decay": 0.1, "clip": 1.0,
       "warmup": 3, "decay_steps": 8, "min_lr": 1e-3}
STEPS, TRAIN_BATCH = 10, 4


@torch.no_grad()
def init_nontrivial(model):
    """Weights far from the GPT-2 init so every term of the gradients matters: matrices and
    embeddings N(0, 0.1), biases N(0, 0.05), LayerNorm weights 1 + N(0, 0.1)."""
    for name, p in model.named_parameters():
        if ".ln_" in name and name.endswith(".weight"):
            p.normal_(0.0, 0.1).add_(1.0)
        elif name.endswith(".bias"):
            p.normal_(0.0, 0.05)
        else:
            p.normal_(0.0, 0.1)


def sort_metadata(path):
    """safetensors writes the metadata in hash order; sort it in place so reruns are byte-identical."""
    with open(path, "r+b") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
        text = json.dumps(header, separators=(",", ":")).encode()
        assert len(text) <= n
        f.seek(8)
        f.write(text.ljust(n))


def write_fixture(path, tensors, meta):
    """Writes tensors and string metadata as a safetensors file, byte-for-byte reproducibly."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, path, metadata=meta)
    sort_metadata(path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=DEFAULT_OUT)
    args = ap.parse_args()

    torch.manual_seed(1234)
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    cfg, V, T = CONFIG, CONFIG.vocab_size, CONFIG.block_size

    model = GPT(cfg)
    init_nontrivial(model)
    out = {f"param.{k}": v.detach().clone() for k, v in model.state_dict().items()}

    # One forward/backward.
    tokens = torch.randint(0, V, (3, T + 1), dtype=torch.int64)
    logits, loss = model(tokens[:, :T], tokens[:, 1:])
    loss.backward()
    out["tokens"] = tokens
    out["logits"] = logits.detach().clone()
    out["loss"] = loss.detach().reshape(1).clone()
    for k, p in model.named_parameters():
        out[f"grad.{k}"] = p.grad.detach().clone()

    # Training run from the same initial weights.
    model.load_state_dict({k[len("param."):]: v for k, v in out.items() if k.startswith("param.")}, strict=True)
    train_tokens = torch.randint(0, V, (STEPS, TRAIN_BATCH, T + 1), dtype=torch.int64)
    opt = make_adamw(model, OPT["lr"], OPT["betas"], OPT["eps"], OPT["weight_decay"], foreach=False)
    params = list(model.parameters())
    losses, norms, lrs = [], [], []
    for it in range(STEPS):
        opt.zero_grad(set_to_none=True)
        batch = train_tokens[it]
        _, loss = model(batch[:, :T], batch[:, 1:])
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, OPT["clip"])
        lr = lr_at(it, OPT["lr"], OPT["warmup"], OPT["decay_steps"], OPT["min_lr"])
        for g in opt.param_groups:
            g["lr"] = lr
        opt.step()
        losses.append(loss.item())
        norms.append(norm.item())
        lrs.append(lr)
    out["train_tokens"] = train_tokens
    out["losses"] = torch.tensor(losses, dtype=torch.float32)
    out["grad_norms"] = torch.tensor(norms, dtype=torch.float32)
    out["lrs"] = torch.tensor(lrs, dtype=torch.float32)
    for k, v in model.state_dict().items():
        out[f"final.{k}"] = v.detach().clone()

    for k, v in out.items():
        assert v.dtype in (torch.float32, torch.int64), k
    meta = {"config": json.dumps(dataclasses.asdict(cfg)), "optimizer": json.dumps(OPT)}
    write_fixture(args.out, out, meta)

    print(f"forward loss {out['loss'].item():.6f}")
    print("losses     " + " ".join(f"{x:.4f}" for x in losses))
    print("grad norms " + " ".join(f"{x:.4f}" for x in norms))
    print("lrs        " + " ".join(f"{x:.5f}" for x in lrs))
    print(f"clipped steps: {sum(n > OPT['clip'] for n in norms)}/{STEPS}")
    print(f"wrote {args.out}: {len(out)} tensors, {os.path.getsize(args.out)} bytes")


if __name__ == "__main__":
    main()
