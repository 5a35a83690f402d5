"""Independent checks and baselines on the GPU machine, with PyTorch.

  symbols FILE TORCHLIB   which of TorchSharp's bridge symbols this libtorch lacks
  check CASES OUT.json    kernel outputs dumped by `TaH.Kernels.Tests attention` against
                          torch's scaled_dot_product_attention with an explicit boolean mask
                          built here from the duo-causal rule (p' <= p and d' <= d)
  bench KERNELS.json OUT.json
                          torch's flash attention on the causal shape and masked SDPA on the
                          duo-causal shape the .NET benchmark used; copy bandwidth
  report DIR              report.md from the JSON files in DIR
"""
import ctypes
import json
import os
import statistics
import sys


def symbols(listing, torchlib):
    names = sorted({l.strip().split("@")[0] for l in open(listing) if l.strip()})
    for lib in ["libc10.so", "libtorch_cpu.so", "libtorch.so", "libc10_cuda.so", "libtorch_cuda.so"]:
        path = os.path.join(torchlib, lib)
        if os.path.exists(path):
            ctypes.CDLL(path, mode=os.RTLD_NOW | os.RTLD_GLOBAL)
    everything = ctypes.CDLL(None)
    missing = []
    for n in names:
        try:
            everything[n]
        except AttributeError:
            missing.append(n)
    print(f"bridge needs {len(names)} C++ symbols; {len(missing)} missing from {torchlib}")
    for n in missing[:40]:
        print("  missing", n)
    return 0


def load_case(d):
    import numpy as np
    m = json.load(open(os.path.join(d, "case.json")))
    h, kvh, dim = m["heads"], m["kv_heads"], m["head_dim"]
    rows = len(m["row_sequence"])
    q = np.fromfile(os.path.join(d, "q.f32"), dtype=np.float32).reshape(rows, h, dim)
    kp = np.fromfile(os.path.join(d, "kpool.f32"), dtype=np.float32).reshape(-1, kvh, dim)
    vp = np.fromfile(os.path.join(d, "vpool.f32"), dtype=np.float32).reshape(-1, kvh, dim)
    out = np.fromfile(os.path.join(d, "out.f32"), dtype=np.float32).reshape(rows, h, dim)
    return m, q, kp, vp, out


def check(cases, out_path):
    import torch
    import torch.nn.functional as F
    results = []
    for name in sorted(os.listdir(cases)):
        m, q, kp, vp, out = load_case(os.path.join(cases, name))
        bs, h, kvh = m["block_size"], m["heads"], m["kv_heads"]
        dev = "cuda"
        q, kp, vp, out = (torch.from_numpy(x).to(dev, torch.float64) for x in (q, kp, vp, out))
        expected = torch.empty_like(out)
        rs, rp, rd = m["row_sequence"], m["row_position"], m["row_depth"]
        for s, depths in enumerate(m["sequences"]):
            slots, pos, dep = [], [], []
            for di, t in enumerate(depths):
                for i, p in enumerate(t["positions"]):
                    slots.append(t["blocks"][i // bs] * bs + i % bs)
                    pos.append(p)
                    dep.append(di + 1)
            rows = [r for r in range(len(rs)) if rs[r] == s]
            if not rows:
                continue
            idx = torch.tensor(slots, device=dev)
            k = kp[idx].repeat_interleave(h // kvh, dim=1).transpose(0, 1)  # [H, n, D]
            v = vp[idx].repeat_interleave(h // kvh, dim=1).transpose(0, 1)
            qs = q[rows].transpose(0, 1)  # [H, R, D]
            ep = torch.tensor(pos, device=dev)
            ed = torch.tensor(dep, device=dev)
            qp = torch.tensor([rp[r] for r in rows], device=dev)
            qd = torch.tensor([rd[r] for r in rows], device=dev)
            mask = (ep[None, :] <= qp[:, None]) & (ed[None, :] <= qd[:, None])
            o = F.scaled_dot_product_attention(qs, k, v, attn_mask=mask)
            expected[rows] = o.transpose(0, 1)
        diff = (out - expected)
        rel = (diff.norm() / expected.norm()).item()
        mx = diff.abs().max().item()
        ok = rel < 1.5e-2 and mx < 5e-2
        results.append({"case": name, "dtype": m["dtype"], "head_dim": m["head_dim"], "heads": h, "kv_heads": kvh,
                        "block_size": bs, "rows": len(rs), "rel_l2": rel, "max_abs": mx, "ok": ok})
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {m['dtype']} D={m['head_dim']} H={h}/{kvh} bs={bs} rows={len(rs)} rel L2 {rel:.2e} max abs {mx:.2e}")
    json.dump(results, open(out_path, "w"), indent=1)
    bad = sum(not r["ok"] for r in results)
    print(f"torch check: {len(results) - bad} passed, {bad} failed")
    return 1 if bad else 0


def timed(fn, warmup=3, runs=15):
    import torch
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def bench(kernels_json, out_path):
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel
    ours = json.load(open(kernels_json))
    res = {"torch": torch.__version__}
    n = 1 << 30
    a = torch.empty(n, dtype=torch.uint8, device="cuda").random_()
    b = torch.empty_like(a)
    ms = timed(lambda: b.copy_(a), 2, 10)
    res["copy_gbps"] = 2 * n / ms / 1e6
    del a, b
    h, dim = 16, 128
    for p in ours.get("prefill", []):
        B, N = p["sequences"], p["length"]
        if p["name"] == "causal":
            q = torch.randn(B, h, N, dim, device="cuda", dtype=torch.bfloat16)
            k, v = torch.randn_like(q), torch.randn_like(q)
            with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                ms = timed(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))
            res["flash_causal_ms"] = ms
            res["flash_causal_tflops"] = p["causal_formula_flops"] / ms / 1e9
            res["ours_causal_ms"] = p["ms"]
            res["ours_vs_flash"] = ms / p["ms"]
            del q, k, v
        else:
            deep = p["depth2_rows_per_sequence"]
            L = N + max(deep)
            g = torch.Generator(device="cpu").manual_seed(1)
            masks = []
            for s in range(B):
                d2 = torch.sort(torch.randperm(N, generator=g)[: deep[s]]).values
                pos = torch.cat([torch.arange(N), d2, torch.full((L - N - deep[s],), 1 << 30)])
                dep = torch.cat([torch.ones(N, dtype=torch.long), torch.full((L - N,), 2)])
                m = (pos[None, :] <= pos[:, None]) & (dep[None, :] <= dep[:, None])
                m[:, N + deep[s]:] = False
                m[N + deep[s]:, 0] = True  # padded query rows: anything, never NaN
                masks.append(m)
            mask = torch.stack(masks)[:, None].to("cuda")
            q = torch.randn(B, h, L, dim, device="cuda", dtype=torch.bfloat16)
            k, v = torch.randn_like(q), torch.randn_like(q)
            ms = timed(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
            res["masked_sdpa_duo_ms"] = ms
            res["ours_duo_ms"] = p["ms"]
            res["ours_vs_masked_sdpa"] = ms / p["ms"]
            res["masked_sdpa_duo_shape"] = [B, h, L, dim]
            del q, k, v, mask
    json.dump(res, open(out_path, "w"), indent=1)
    print(json.dumps(res, indent=1))
    return 0


def report(d):
    def load(name):
        p = os.path.join(d, name)
        return json.load(open(p)) if os.path.exists(p) else None
    lines = ["# GPU run", ""]
    if os.path.exists(os.path.join(d, "steps.md")):
        lines += [open(os.path.join(d, "steps.md")).read(), ""]
    k, t, e, c = load("bench_kernels.json"), load("bench_torch.json"), load("bench_engine.json"), load("torch_check.json")
    if c is not None:
        lines.append(f"Kernel vs torch masked SDPA (fp64): {sum(r['ok'] for r in c)}/{len(c)} cases within tolerance, worst rel L2 {max(r['rel_l2'] for r in c):.2e}")
    if k:
        lines.append(f"\nDevice: {k['device']}; copy bandwidth {k['copy_gbps']:.0f} GB/s (driver memcpy, read + write)")
        for r in k.get("decode", []):
            lines.append(f"- decode batch {r['batch']} x {r['context']}: {r['ms']*1000:.1f} us, {r['gbps']:.0f} GB/s = {r['share_of_copy']:.0%} of copy bandwidth")
        for r in k.get("prefill", []):
            lines.append(f"- prefill {r['name']} {r['sequences']} x {r['length']} (+{r['depth2_rows']} depth-2 rows): {r['ms']:.3f} ms, {r['tflops_useful']:.0f} TFLOP/s useful")
    if t:
        lines.append(f"\ntorch {t['torch']}: copy {t['copy_gbps']:.0f} GB/s")
        if "flash_causal_ms" in t:
            lines.append(f"- causal: flash {t['flash_causal_ms']:.3f} ms ({t['flash_causal_tflops']:.0f} TFLOP/s), ours {t['ours_causal_ms']:.3f} ms: ours = {t['ours_vs_flash']:.2f}x flash")
        if "masked_sdpa_duo_ms" in t:
            lines.append(f"- duo-causal: masked SDPA {t['masked_sdpa_duo_ms']:.3f} ms, ours {t['ours_duo_ms']:.3f} ms: ours = {t['ours_vs_masked_sdpa']:.2f}x faster")
    if e:
        lines.append("\nEngine (tah bench --device cuda, Qwen3-1.7B shape, random bf16):")
        for r in e:
            lines.append(f"- {r['policy']}: {r['decode_tokens_per_second']:.1f} tok/s, {r['ms_per_token']:.2f} ms/token, depth-2 share {r['depth2_share']:.1%}")
        model = "/tmp/tah-gpu/qwen3-1.7b"
        total = 0
        for f in os.listdir(model) if os.path.isdir(model) else []:
            if f.startswith("model") and f.endswith(".safetensors"):
                with open(os.path.join(model, f), "rb") as fh:
                    n = int.from_bytes(fh.read(8), "little")
                    hdr = json.loads(fh.read(n))
                total += sum(v["data_offsets"][1] - v["data_offsets"][0] for kk, v in hdr.items() if kk != "__metadata__")
        bw = (t or {}).get("copy_gbps") or (k or {}).get("copy_gbps")
        if total and bw:
            bound = bw * 1e9 / total
            never = next((r for r in e if r["policy"].startswith("never")), e[0])
            lines.append(f"- weights read per token {total/1e9:.2f} GB; bound at {bw:.0f} GB/s = {bound:.0f} tok/s; never = {never['decode_tokens_per_second']/bound:.1%} of the bound")
    return "\n".join(lines)


if __name__ == "__main__":
    verb = sys.argv[1]
    if verb == "symbols":
        sys.exit(symbols(sys.argv[2], sys.argv[3]))
    if verb == "check":
        sys.exit(check(sys.argv[2], sys.argv[3]))
    if verb == "bench":
        sys.exit(bench(sys.argv[2], sys.argv[3]))
    if verb == "report":
        print(report(sys.argv[2]))
