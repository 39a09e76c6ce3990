"""Writes Tests/ModelsTests/Fixtures/mlm_reference.safetensors: a tiny BERT-style masked-LM encoder
(the GPT of nanogpt.py with bidirectional attention and a [MASK] token), its weights, a masked batch
and one forward/backward (logits, loss over the chosen positions, gradients), computed by PyTorch,
for Lockstep's tests to match.

    python launch/pytorch/make_mlm_reference.py [--out PATH]
"""
import argparse
import dataclasses
import json
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_reference import init_nontrivial, write_fixture  # noqa: E402
from nanogpt import GPT, GPTConfig  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_OUT = os.path.join(ROOT, "Tests", "ModelsTests", "Fixtures", "mlm_reference.safetensors")

MASK_TOKEN = 61  # ordinary tokens are [0, 61)
CONFIG = GPTConfig(vocab_size=MASK_TOKEN + 1, block_size=16, n_layer=2, n_head=2, n_embd=24, dropout=0.0,
                   bias=True, gelu="erf", causal=False)
BATCH = 3
# Chosen positions: 8 of the 48 (1/6); 6 become [MASK], 1 a different random token, 1 stays unchanged.
N_MASK, N_RANDOM, N_KEEP = 6, 1, 1
IGNORE = -1


def make_batch(gen):
    """Random tokens with BERT-style corruption at fixed chosen positions; targets are the original
    tokens there and IGNORE elsewhere."""
    V, T = MASK_TOKEN, CONFIG.block_size
    tokens = torch.randint(0, V, (BATCH, T), generator=gen, dtype=torch.int64)
    chosen = torch.randperm(BATCH * T, generator=gen)[:N_MASK + N_RANDOM + N_KEEP]
    masked, randomised = chosen[:N_MASK], chosen[N_MASK:N_MASK + N_RANDOM]
    inputs, targets = tokens.clone().view(-1), torch.full((BATCH * T,), IGNORE, dtype=torch.int64)
    targets[chosen] = tokens.view(-1)[chosen]
    inputs[masked] = MASK_TOKEN
    shift = torch.randint(1, V, (N_RANDOM,), generator=gen, dtype=torch.int64)  # never the original token
    inputs[randomised] = (tokens.view(-1)[randomised] + shift) % V
    return inputs.view(BATCH, T), targets.view(BATCH, T)


def mlm_loss(logits, targets):
    return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=IGNORE)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=DEFAULT_OUT)
    args = ap.parse_args()

    torch.manual_seed(1234)
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    cfg, V = CONFIG, CONFIG.vocab_size

    model = GPT(cfg)
    init_nontrivial(model)
    out = {f"param.{k}": v.detach().clone() for k, v in model.state_dict().items()}

    inputs, targets = make_batch(torch.Generator().manual_seed(4321))
    chosen = targets != IGNORE
    assert chosen.sum().item() >= 6 and (inputs[chosen] == MASK_TOKEN).sum().item() == N_MASK
    assert (inputs[chosen] == targets[chosen]).sum().item() == N_KEEP
    assert inputs.min().item() >= 0 and inputs.max().item() <= MASK_TOKEN and targets.max().item() < MASK_TOKEN

    logits, _ = model(inputs)
    loss = mlm_loss(logits, targets)
    loss.backward()
    out["inputs"] = inputs
    out["targets"] = targets
    out["logits"] = logits.detach().clone()
    out["loss"] = loss.detach().reshape(1).clone()
    for k, p in model.named_parameters():
        out[f"grad.{k}"] = p.grad.detach().clone()
    grad_norm = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in model.parameters())).item()

    # Self-checks: the stored logits give the stored loss, and bidirectionality matters.
    recomputed = mlm_loss(out["logits"], targets)
    assert torch.allclose(recomputed, out["loss"][0], rtol=0, atol=1e-6), (recomputed.item(), loss.item())
    causal = GPT(dataclasses.replace(cfg, causal=True))
    causal.load_state_dict({k[len("param."):]: v for k, v in out.items() if k.startswith("param.")}, strict=True)
    with torch.no_grad():
        causal_loss = mlm_loss(causal(inputs)[0], targets).item()
    assert abs(causal_loss - loss.item()) > 1e-3, (causal_loss, loss.item())

    for k, v in out.items():
        assert v.dtype in (torch.float32, torch.int64), k
    config = {"vocab_size": V, "mask_token": MASK_TOKEN, "block_size": cfg.block_size, "n_layer": cfg.n_layer,
              "n_head": cfg.n_head, "n_embd": cfg.n_embd, "dropout": cfg.dropout, "bias": cfg.bias,
              "gelu": cfg.gelu, "causal": cfg.causal}
    meta = {"config": json.dumps(config)}
    write_fixture(args.out, out, meta)

    print(f"loss {loss.item():.6f} (causal attention would give {causal_loss:.6f})")
    print(f"chosen positions {chosen.sum().item()}/{chosen.numel()}: "
          f"{N_MASK} [MASK], {N_RANDOM} random, {N_KEEP} unchanged")
    print(f"gradient norm {grad_norm:.6f}")
    print(f"wrote {args.out}: {len(out)} tensors, {os.path.getsize(args.out)} bytes")


if __name__ == "__main__":
    main()
