"""Cross-checks Lockstep weights with PyTorch, in both directions.

    python launch/pytorch/check_weights.py WEIGHTS [--corpus PATH] [--windows N]
        Loads a Lockstep weights file (strictly, by name) into the nanoGPT model and prints the
        validation loss over Lockstep's fixed validation windows, to compare with `lockstep eval`.
        WEIGHTS may be a checkpoint directory: its model.safetensors and optimizer.safetensors are
        then also read with safetensors.numpy.load_file and the moments checked against the model.

    python launch/pytorch/check_weights.py --export-init OUT.safetensors [--seed S] [--config CONFIG.json]
        Writes a GPT-2-initialised PyTorch model (the TTL model, or the "model" of a Lockstep
        config) as a safetensors state dict that Lockstep can start from.
"""
import argparse
import dataclasses
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nanogpt import GPT, GPTConfig  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EMBEDDED_CORPUS = os.path.join(ROOT, "Sources", "Training", "Resources", "tinyshakespeare.txt")
TOKEN_FILE_MAGIC, TOKEN_FILE_VERSION = 20240520, 1


def model_config(model):
    """GPTConfig from the "model" object of a Lockstep config (missing keys take Lockstep's defaults)."""
    fields = {f.name for f in dataclasses.fields(GPTConfig)}
    return GPTConfig(**{k: v for k, v in model.items() if k in fields})


def read_tokens(path, fmt=None):
    """Byte tokens of a text file, or the tokens of an llm.c token file (`tokens` format / `.bin`)."""
    fmt = fmt or ("tokens" if path.endswith(".bin") else "text")
    raw = open(path, "rb").read()
    if fmt == "text":
        return np.frombuffer(raw, dtype=np.uint8).astype(np.int64)
    header = np.frombuffer(raw[:1024], dtype="<i4")
    if len(header) < 256 or header[0] != TOKEN_FILE_MAGIC or header[1] != TOKEN_FILE_VERSION:
        sys.exit(f"{path}: not an llm.c token file")
    count = int(header[2])
    if len(raw) != 1024 + 2 * count:
        sys.exit(f"{path}: header says {count} tokens but the file holds {(len(raw) - 1024) // 2}")
    return np.frombuffer(raw[1024:], dtype="<u2").astype(np.int64)


def train_count(n, val_fraction):
    """Lockstep's split: floor(n * (1 - f)), in integer arithmetic when f is a multiple of 0.1."""
    tenths = round(val_fraction * 10)
    if abs(val_fraction * 10 - tenths) < 1e-12:
        return n * (10 - tenths) // 10
    return math.floor(n * (1 - val_fraction))


@torch.no_grad()
def val_loss(model, tokens, n_train, T, max_windows, batch=16):
    """Summed CE over the fixed windows (window k = tokens[n_train + kT : n_train + kT + T + 1])
    divided by the target count, accumulated in float64."""
    windows = min(max_windows, (len(tokens) - n_train - 1) // T)
    if windows <= 0:
        sys.exit(f"the validation split ({len(tokens) - n_train} tokens) holds no window of {T + 1} tokens")
    total, count = 0.0, 0
    for first in range(0, windows, batch):
        rows = [tokens[n_train + k * T: n_train + k * T + T + 1] for k in range(first, min(first + batch, windows))]
        w = torch.from_numpy(np.stack(rows))
        logits, _ = model(w[:, :T])
        ce = F.cross_entropy(logits.reshape(-1, logits.size(-1)), w[:, 1:].reshape(-1), reduction="none")
        total += ce.double().sum().item()
        count += ce.numel()
    return total / count, windows


def check_checkpoint(path):
    """Reads a checkpoint directory with plain numpy; returns its model file."""
    import safetensors.numpy
    model = safetensors.numpy.load_file(os.path.join(path, "model.safetensors"))
    moments = safetensors.numpy.load_file(os.path.join(path, "optimizer.safetensors"))
    state = json.load(open(os.path.join(path, "state.json")))
    for name, value in model.items():
        for prefix in ("exp_avg", "exp_avg_sq"):
            m = moments.get(f"{prefix}.{name}")
            if m is None or m.shape != value.shape or m.dtype != np.float32 or not np.isfinite(m).all():
                sys.exit(f"{path}/optimizer.safetensors: {prefix}.{name} missing, misshapen or not finite")
        if (moments[f"exp_avg_sq.{name}"] < 0).any():
            sys.exit(f"{path}/optimizer.safetensors: exp_avg_sq.{name} has negative entries")
    if len(moments) != 2 * len(model):
        sys.exit(f"{path}/optimizer.safetensors: {len(moments)} tensors for {len(model)} parameters")
    print(f"checkpoint step {state['step']}, saved by {state['world_size']} ranks: {len(model)} tensors and "
          f"{len(moments)} moments read with safetensors.numpy")
    return os.path.join(path, "model.safetensors")


def check(args):
    if os.path.isdir(args.weights):
        args.weights = check_checkpoint(args.weights)
    with safe_open(args.weights, "pt") as f:
        meta = f.metadata() or {}
    if "config" not in meta:
        sys.exit(f"{args.weights}: no Lockstep config in the metadata")
    config = json.loads(meta["config"])
    cfg = model_config(config.get("model", {}))
    data = config.get("data", {})

    state = load_file(args.weights)
    head = state.pop("lm_head.weight", None)  # nanoGPT's tied head, if present, must equal wte
    if head is not None and not torch.equal(head, state.get("transformer.wte.weight")):
        sys.exit(f"{args.weights}: lm_head.weight differs from transformer.wte.weight (untied head)")
    model = GPT(cfg)
    model.load_state_dict(state, strict=True)
    model.eval()

    corpus = args.corpus or data.get("path") or EMBEDDED_CORPUS
    tokens = read_tokens(corpus, None if args.corpus else data.get("format"))
    if tokens.size and (tokens.min() < 0 or tokens.max() >= cfg.vocab_size):
        sys.exit(f"{corpus}: tokens fall outside vocab_size {cfg.vocab_size}")
    n_train = train_count(len(tokens), data.get("val_fraction", 0.1))
    max_windows = args.windows or config.get("training", {}).get("eval_windows", 512)
    loss, windows = val_loss(model, tokens, n_train, cfg.block_size, max_windows)
    print(f"model {json.dumps(dataclasses.asdict(cfg))}, step {meta.get('step', '?')}, corpus {corpus}")
    print(f"val loss {loss:.6f} over {windows} windows")


def export_init(args):
    cfg = GPTConfig()
    if args.config:
        cfg = model_config(json.load(open(args.config)).get("model", {}))
    torch.manual_seed(args.seed)
    model = GPT(cfg)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, args.export_init, metadata={"format": "pytorch"})
    n = sum(v.numel() for v in state.values())
    print(f"wrote {args.export_init}: {len(state)} tensors, {n:,} parameters, seed {args.seed}, "
          f"model {json.dumps(dataclasses.asdict(cfg))}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights", nargs="?", help="Lockstep weights file (.safetensors)")
    ap.add_argument("--corpus", help="data file (default: data.path of the run, else the embedded corpus)")
    ap.add_argument("--windows", type=int, help="validation windows (default: training.eval_windows, else 512)")
    ap.add_argument("--export-init", metavar="OUT", help="write a GPT-2-initialised model to OUT and exit")
    ap.add_argument("--seed", type=int, default=0, help="seed of --export-init (default 0)")
    ap.add_argument("--config", help="Lockstep config whose model --export-init builds (default: the TTL model)")
    args = ap.parse_args()
    if args.export_init:
        export_init(args)
    elif args.weights:
        check(args)
    else:
        ap.error("give WEIGHTS or --export-init OUT")


if __name__ == "__main__":
    main()
