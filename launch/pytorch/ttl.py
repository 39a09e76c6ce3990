"""Time-to-validation-loss benchmark, PyTorch side, following the TTL protocol (README, "Checked against PyTorch").

    torchrun --standalone --nproc_per_node=W launch/pytorch/ttl.py [--corpus PATH]
        [--max-steps N] [--budget-s S] [--eval-interval 100] [--init WEIGHTS] [--json OUT]

DDP over gloo, W ranks with 2 // W threads each. Rank 0 prints one line per evaluation and a
summary (steady and overall tok/s, time to each val-loss threshold, peak RSS).
"""
import argparse
import json
import math
import os
import resource
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nanogpt import GPT, GPTConfig, lr_at, make_adamw, splitmix64_out  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EMBEDDED_CORPUS = os.path.join(ROOT, "Sources", "Training", "Resources", "tinyshakespeare.txt")

SEED = 1337
T = 128
GLOBAL_BATCH, MICRO_BATCH = 32, 16
LR, MIN_LR, WARMUP, DECAY_STEPS = 1e-3, 1e-4, 100, 3000
BETAS, EPS, WEIGHT_DECAY, CLIP = (0.9, 0.99), 1e-8, 0.1, 1.0
EVAL_WINDOWS, EVAL_BATCH = 512, 32
STEADY_FROM = 10
THRESHOLDS = (2.0, 1.9, 1.8, 1.7, 1.6, 1.5)


def window_start(it, j, modulus):
    """Start of global sequence j of iteration it: splitmix64(SEED) output it*32+j mod (n_train - T)."""
    return splitmix64_out(SEED, it * GLOBAL_BATCH + j) % modulus


# Protocol check values (n_train = 1,003,854, modulus 1,003,726).
assert [window_start(0, j, 1003726) for j in range(4)] == [158235, 277285, 677826, 882570]
assert window_start(0, 31, 1003726) == 942425 and window_start(1, 0, 1003726) == 205748


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=EMBEDDED_CORPUS)
    ap.add_argument("--max-steps", type=int, default=DECAY_STEPS, help="stop after this many updates (default 3000)")
    ap.add_argument("--budget-s", type=float, default=540.0, help="wall budget in seconds (default 540)")
    ap.add_argument("--eval-interval", type=int, default=100)
    ap.add_argument("--init", help="initial weights (safetensors state dict); default: GPT-2 init, seed 0")
    ap.add_argument("--json", help="write the summary as JSON here")
    args = ap.parse_args()

    dist.init_process_group("gloo")
    rank, W = dist.get_rank(), dist.get_world_size()
    if GLOBAL_BATCH % (MICRO_BATCH * W):
        sys.exit(f"world size {W} does not divide the global batch of {GLOBAL_BATCH} into micro-batches of {MICRO_BATCH}")
    A = GLOBAL_BATCH // (MICRO_BATCH * W)
    threads = max(1, 2 // W)
    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
    log = print if rank == 0 else (lambda *a, **k: None)

    # Data.
    tokens = np.frombuffer(open(args.corpus, "rb").read(), dtype=np.uint8).astype(np.int64)
    n = len(tokens)
    n_train = n * 9 // 10
    train, val = tokens[:n_train], tokens[n_train:]
    modulus = n_train - T
    span = np.arange(T + 1)
    windows = min(EVAL_WINDOWS, (len(val) - 1) // T)
    val_windows = torch.from_numpy(np.stack([val[k * T: k * T + T + 1] for k in range(windows)]))
    eval_batches = (windows + EVAL_BATCH - 1) // EVAL_BATCH

    def micro_batch(it, m):
        first = (rank * A + m) * MICRO_BATCH
        starts = np.array([window_start(it, j, modulus) for j in range(first, first + MICRO_BATCH)])
        w = torch.from_numpy(train[starts[:, None] + span])
        return w[:, :T], w[:, 1:]

    # Model and optimizer.
    torch.manual_seed(0)
    raw = GPT(GPTConfig(vocab_size=256, block_size=T, n_layer=4, n_head=4, n_embd=128, dropout=0.0, bias=True, gelu="erf"))
    if args.init:
        from safetensors.torch import load_file
        state = load_file(args.init)
        state.pop("lm_head.weight", None)
        raw.load_state_dict(state, strict=True)
    model = DDP(raw)
    opt = make_adamw(raw, LR, BETAS, EPS, WEIGHT_DECAY)
    params = list(raw.parameters())

    @torch.no_grad()
    def evaluate():
        sums = torch.zeros(2, dtype=torch.float64)
        for b in range(rank, eval_batches, W):
            w = val_windows[b * EVAL_BATCH: (b + 1) * EVAL_BATCH]
            logits, _ = raw(w[:, :T])
            ce = F.cross_entropy(logits.reshape(-1, logits.size(-1)), w[:, 1:].reshape(-1), reduction="none")
            sums[0] += ce.double().sum()
            sums[1] += ce.numel()
        dist.all_reduce(sums)
        return (sums[0] / sums[1]).item()

    def train_step(it, t0):
        lr = lr_at(it, LR, WARMUP, DECAY_STEPS, MIN_LR)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        micro_losses = 0.0
        for m in range(A):
            x, y = micro_batch(it, m)
            if m < A - 1:
                with model.no_sync():
                    _, loss = model(x, y)
                    (loss / A).backward()
            else:
                _, loss = model(x, y)
                (loss / A).backward()
            micro_losses += loss.item()
        norm = torch.nn.utils.clip_grad_norm_(params, CLIP).item()
        opt.step()
        stats = torch.tensor([micro_losses / A, float(time.perf_counter() - t0 >= args.budget_s)], dtype=torch.float64)
        dist.all_reduce(stats)
        return stats[0].item() / W, norm, lr, stats[1].item() > 0

    log(f"ttl: {W} rank(s) x {threads} thread(s), accumulation {A}, {sum(p.numel() for p in params):,} parameters, "
        f"corpus {args.corpus} ({n:,} bytes, {n_train:,} train), {windows} val windows")
    dist.barrier()
    t0 = time.perf_counter()
    evals, steady_s, eval_s = [], 0.0, 0.0
    it, stop, train_loss = 0, False, float("nan")
    while True:
        stopping = stop or it >= args.max_steps
        if (args.eval_interval > 0 and it % args.eval_interval == 0) or stopping:
            e0 = time.perf_counter()
            loss = evaluate()
            now = time.perf_counter()
            eval_s += now - e0
            evals.append({"step": it, "val_loss": loss, "wall_s": now - t0, "train_loss": train_loss})
            log(f"step {it:5d} | val loss {loss:.4f} | train loss {train_loss:.4f} | wall {now - t0:7.1f}s")
        if stopping:
            break
        s0 = time.perf_counter()
        train_loss, _, _, stop = train_step(it, t0)
        if it >= STEADY_FROM:
            steady_s += time.perf_counter() - s0
        it += 1
    total = time.perf_counter() - t0
    steps = it

    time_to = {}
    for L in THRESHOLDS:
        hit = next((e for e in evals if e["val_loss"] <= L), None)
        time_to[f"{L:.1f}"] = {"wall_s": hit["wall_s"], "step": hit["step"]} if hit else None
    summary = {
        "world_size": W,
        "threads_per_rank": threads,
        "steps": steps,
        "final_val_loss": evals[-1]["val_loss"],
        "total_wall_s": total,
        "eval_wall_s": eval_s,
        "steady_tok_s": GLOBAL_BATCH * T * (steps - STEADY_FROM) / steady_s if steps > STEADY_FROM else None,
        "overall_tok_s_incl_eval": GLOBAL_BATCH * T * steps / total,
        "time_to_loss": time_to,
        "peak_rss_mb_rank0": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "evals": evals,
    }
    if rank == 0:
        steady = summary["steady_tok_s"]
        print(f"steps {steps} | final val loss {summary['final_val_loss']:.4f} | wall {total:.1f}s (eval {eval_s:.1f}s)")
        print(f"steady tok/s {steady:.0f}" if steady else "steady tok/s n/a (fewer than 11 steps)",
              f"| overall tok/s incl. eval {summary['overall_tok_s_incl_eval']:.0f}")
        print("time to val loss: " + "  ".join(
            f"<={k}: {v['wall_s']:.1f}s (step {v['step']})" if v else f"<={k}: -" for k, v in time_to.items()))
        print(f"peak RSS rank 0: {summary['peak_rss_mb_rank0']:.0f} MB")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(summary, f, indent=2)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
