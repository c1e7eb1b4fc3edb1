# PyTorch's side of CudaGemm.DISABLED_GptShapes (tests/runtime_cuda/test_gemm.cpp): GPT-1.3B's GEMMs
# in bf16 at the same shapes and layouts (weights [in, out], the tied lm_head wte [vocab, hidden]),
# with torch's fused bias (addmm) and bias + gelu (_addmm_activation) where they apply. TFLOP/s over
# 10 calls after 2 warm-up calls, timed with CUDA events.
import torch

T, H, F, V = 8 * 1024, 2048, 8192, 51200


def tflops(flops, fn):
    for _ in range(2):
        fn()
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(10):
        fn()
    stop.record()
    torch.cuda.synchronize()
    return flops / (start.elapsed_time(stop) / 10 * 1e-3) / 1e12


def r(*shape):
    return torch.randn(*shape, device="cuda", dtype=torch.bfloat16)


def main():
    print("| GEMM | M x N x K | torch call | torch TFLOP/s |\n|---|---|---|---|")
    rows = []
    for name, fin, fout in [("qkv", H, 3 * H), ("proj", H, H), ("fc1", H, F), ("fc2", F, H)]:
        x, w, b, dy = r(T, fin), r(fin, fout), r(fout), r(T, fout)
        flops = 2 * T * fin * fout
        if name == "fc1":
            rows.append((f"{name} fwd +gelu_aux_bias", (T, fout, fin), "_addmm_activation(gelu)",
                         tflops(flops, lambda: torch._addmm_activation(b, x, w, use_gelu=True))))
            rows.append((f"{name} fwd +gelu_aux_bias", (T, fout, fin), "addmm + gelu(tanh)",
                         tflops(flops, lambda: torch.nn.functional.gelu(torch.addmm(b, x, w), approximate="tanh"))))
        else:
            rows.append((f"{name} fwd +bias", (T, fout, fin), "addmm", tflops(flops, lambda: torch.addmm(b, x, w))))
        wt = w.t().contiguous()  # nn.Linear's [out, in]
        rows.append((f"{name} fwd (nn.Linear layout)", (T, fout, fin), "F.linear",
                     tflops(flops, lambda: torch.nn.functional.linear(x, wt, b))))
        rows.append((f"{name} dx", (T, fin, fout), "dy @ w.t()", tflops(flops, lambda: dy @ w.t())))
        rows.append((f"{name} dW +bgrada", (fin, fout, T), "x.t() @ dy", tflops(flops, lambda: x.t() @ dy)))
        rows.append((f"{name} dW +bgrada", (fin, fout, T), "x.t() @ dy, dy.sum(0)",
                     tflops(flops, lambda: (x.t() @ dy, dy.sum(0)))))
    x, wte, dl = r(T, H), r(V, H), r(T, V)
    flops = 2 * T * H * V
    rows.append(("lm_head fwd", (T, V, H), "x @ wte.t()", tflops(flops, lambda: x @ wte.t())))
    rows.append(("lm_head dx", (T, H, V), "dlogits @ wte", tflops(flops, lambda: dl @ wte)))
    rows.append(("lm_head dW [H,V]", (H, V, T), "x.t() @ dlogits", tflops(flops, lambda: x.t() @ dl)))
    rows.append(("lm_head dW [V,H]", (V, H, T), "dlogits.t() @ x", tflops(flops, lambda: dl.t() @ x)))
    for name, (m, n, k), call, t in rows:
        print(f"| {name} | {m} x {n} x {k} | {call} | {t:.0f} |")
    print("torch", torch.__version__, torch.cuda.get_device_name())


if __name__ == "__main__":
    main()
