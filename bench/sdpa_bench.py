# PyTorch's scaled_dot_product_attention (is_causal, bf16) at GPT-1.3B's shapes, the bar for
# bench/attention_bench.cu: CUDA events, median of 20 after 3 warm-ups; q, k, v [B, N, S, D] as
# transposed views of [B, S, N, D] (as pytorch_gpt.py makes them) and contiguous.
import sys

import torch
import torch.nn.functional as F

b, n, s, d = (int(x) for x in sys.argv[1:5]) if len(sys.argv) > 4 else (8, 32, 1024, 64)


def median_ms(fn):
    for _ in range(3):
        fn()
    times = []
    for _ in range(20):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    return sorted(times)[len(times) // 2]


flop = 4.0 * b * n * s * s * d / 2
print(f"torch {torch.__version__} {torch.cuda.get_device_name()} B={b} N={n} S={s} D={d} causal bf16")
for layout in ("bsnd-view", "contiguous"):
    def make():
        x = torch.randn(b, s, n, d, device="cuda", dtype=torch.bfloat16)
        x = x.transpose(1, 2) if layout == "bsnd-view" else x.transpose(1, 2).contiguous()
        return x.requires_grad_()
    q, k, v = make(), make(), make()
    dout = torch.randn_like(q)
    with torch.no_grad():
        f = median_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))
    def both():
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        torch.autograd.grad(o, (q, k, v), dout)
    fb = median_ms(both)
    print(f"  {layout:10s} forward {f * 1e3:8.1f} us {flop / (f * 1e-3) / 1e12:6.1f} TFLOP/s | "
          f"forward+backward {fb * 1e3:8.1f} us {3.5 * flop / (fb * 1e-3) / 1e12:6.1f} TFLOP/s | "
          f"backward (difference) {(fb - f) * 1e3:8.1f} us")
    if layout == "bsnd-view":  # which kernels SDPA chose (FlashAttention 2, cuDNN, ...)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            both()
            torch.cuda.synchronize()
        for e in prof.key_averages():
            if e.device_type == torch.autograd.DeviceType.CUDA:
                print(f"    kernel {e.key[:110]} {e.device_time_total:.1f} us")
