"""PyTorch reference for bench/gpt_gpu_bench: the same GPT (pre-LayerNorm blocks, learned
positions, tied embedding / LM head, tanh GELU, biases) trained with bf16 autocast, SDPA causal
attention (flash), fused AdamW; optionally torch.compile. Prints one RESULT line in the format of
gpt_gpu_bench, with the same model-FLOP formula (6N + 12LHS per token).

    python3 bench/pytorch_gpt.py --hidden 2048 --layers 24 --heads 32 --seq 1024 --vocab 51200 \
        --micro-batch 8 [--compile]

Under torchrun (WORLD_SIZE > 1) it trains data parallel with DDP over NCCL, --micro-batch
sequences per GPU (global batch = micro-batch x GPUs); rank 0 prints the RESULT line with the
per-GPU TFLOP/s, MFU and the step time (the slowest rank's median).
"""
import argparse
import math
import os
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, h, heads):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(h)
        self.qkv = nn.Linear(h, 3 * h)
        self.out = nn.Linear(h, h)
        self.ln2 = nn.LayerNorm(h)
        self.fc1 = nn.Linear(h, 4 * h)
        self.fc2 = nn.Linear(4 * h, h)

    def forward(self, x):
        b, s, h = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, s, 3, self.heads, h // self.heads).unbind(2)
        y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
        x = x + self.out(y.transpose(1, 2).reshape(b, s, h))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, vocab, seq, h, layers, heads):
        super().__init__()
        self.wte = nn.Embedding(vocab, h)
        self.wpe = nn.Embedding(seq, h)
        self.blocks = nn.ModuleList(Block(h, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(h)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.normal_(p, std=0.02)

    def forward(self, tokens, labels):
        pos = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.wte(tokens) + self.wpe(pos)
        for block in self.blocks:
            x = block(x)
        logits = self.ln_f(x) @ self.wte.weight.t()
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), labels.view(-1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--layers", type=int, default=24)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--vocab", type=int, default=51200)
    ap.add_argument("--micro-batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--peak-tflops", type=float, default=989.0)
    a = ap.parse_args()

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        torch.distributed.init_process_group("nccl")
    torch.manual_seed(0)
    dev = "cuda"
    model = GPT(a.vocab, a.seq, a.hidden, a.layers, a.heads).to(dev)
    params = sum(p.numel() for p in model.parameters())
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, gradient_as_bucket_view=True)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    torch.manual_seed(1 + rank)  # each rank its own tokens
    tokens = torch.randint(0, a.vocab, (a.micro_batch, a.seq), device=dev)
    labels = torch.randint(0, a.vocab, (a.micro_batch, a.seq), device=dev)
    fwd = torch.compile(model) if a.compile else model

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = fwd(tokens, labels)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    for i in range(a.warmup):
        t0 = time.perf_counter()
        loss = step()
        torch.cuda.synchronize()
        if rank == 0:
            print(f"warm-up step {i + 1}: {1e3 * (time.perf_counter() - t0):.1f} ms, loss {loss.item():.5f}", flush=True)
    times = []
    for i in range(a.steps):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        loss = step()
        stop.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(stop) / 1e3)
    t = statistics.median(times)
    if world > 1:
        slowest = torch.tensor([t], device=dev)
        torch.distributed.all_reduce(slowest, op=torch.distributed.ReduceOp.MAX)
        t = slowest.item()
    ntok = a.micro_batch * a.seq  # per GPU
    model_flops = 6.0 * params * ntok + 12.0 * a.layers * a.hidden * a.seq * ntok
    name = ("pytorch-compile" if a.compile else "pytorch-eager") + ("-ddp" if world > 1 else "")
    if rank == 0:
        print(f"RESULT {name} gpus={world} params={params / 1e9:.3f}B micro_batch={a.micro_batch} "
              f"step_ms={1e3 * t:.1f} tokens_per_s={world * ntok / t:.0f} model_tflops={model_flops / t / 1e12:.1f} "
              f"mfu={model_flops / t / 1e12 / a.peak_tflops:.3f} loss={loss.item():.4f}", flush=True)
    if world > 1:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
