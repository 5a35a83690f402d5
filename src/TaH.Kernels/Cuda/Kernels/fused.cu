// The small ops that dominate a decode step when each is several TorchSharp launches. Each
// rounds through the storage type where the TorchSharp composition does, so bf16 results match
// the CPU-path formula to within an ulp or two rather than only "closely".

// Qwen3RMSNorm: y = w * to_t(x * rsqrt(mean(x^2) + eps)), statistics in fp32. One block per row.
extern "C" __global__ void rms_norm(const u16* __restrict__ x, const u16* __restrict__ w, u16* __restrict__ y,
    int n, float eps)
{
    const long long row = blockIdx.x;
    const u16* xr = x + row * n;
    __shared__ float s_part[32];
    float ss = 0.f;
    for (int i = threadIdx.x; i < n; i += blockDim.x)
    {
        const float v = to_float(xr[i]);
        ss += v * v;
    }
    ss = warp_sum(ss);
    if ((threadIdx.x & 31) == 0) s_part[threadIdx.x >> 5] = ss;
    __syncthreads();
    if (threadIdx.x < 32)
    {
        float v = threadIdx.x < (blockDim.x + 31) / 32 ? s_part[threadIdx.x] : 0.f;
        v = warp_sum(v);
        if (threadIdx.x == 0) s_part[0] = v;
    }
    __syncthreads();
    const float r = rsqrtf(s_part[0] / n + eps);
    for (int i = threadIdx.x; i < n; i += blockDim.x)
    {
        y[row * n + i] = from_float(to_float(w[i]) * round_t(to_float(xr[i]) * r));
    }
}

// Splits a fused qkv projection [rows, (H + 2 KVH) * D] into contiguous q [rows, H, D],
// k [rows, KVH, D] (both RMS-normed per head and rotated, rotate-half RoPE with the step's
// cos/sin tables [rows, D]) and v [rows, KVH, D]. One warp per (row, head); heads H..H+KVH-1 are
// keys, then values. Products are rounded as the TorchSharp composition rounds them.
extern "C" __global__ void qk_norm_rope(const u16* __restrict__ qkv, const u16* __restrict__ qw,
    const u16* __restrict__ kw, const u16* __restrict__ cos_t, const u16* __restrict__ sin_t,
    u16* __restrict__ q, u16* __restrict__ k, u16* __restrict__ v, int rows, int heads, int kv_heads, float eps)
{
    constexpr int PER = HEAD_DIM / 32;  // elements per lane
    const int warps = blockDim.x >> 5;
    const long long item = (long long)blockIdx.x * warps + (threadIdx.x >> 5);
    const int all = heads + 2 * kv_heads;
    if (item >= (long long)rows * all) return;
    const int row = (int)(item / all), head = (int)(item % all), lane = threadIdx.x & 31;
    const u16* src = qkv + ((long long)row * all + head) * HEAD_DIM;

    if (head >= heads + kv_heads)
    {
        u16* dst = v + ((long long)row * kv_heads + head - heads - kv_heads) * HEAD_DIM;
#pragma unroll
        for (int e = 0; e < PER; e++) dst[lane + 32 * e] = src[lane + 32 * e];
        return;
    }

    const bool is_q = head < heads;
    const u16* w = is_q ? qw : kw;
    float x[PER];
    float ss = 0.f;
#pragma unroll
    for (int e = 0; e < PER; e++)
    {
        x[e] = to_float(src[lane + 32 * e]);
        ss += x[e] * x[e];
    }
    ss = warp_sum(ss);
    const float r = rsqrtf(ss / HEAD_DIM + eps);
#pragma unroll
    for (int e = 0; e < PER; e++)
    {
        x[e] = round_t(to_float(w[lane + 32 * e]) * round_t(x[e] * r));
    }

    // Element i = lane + 32 e pairs with i +- HEAD_DIM/2, which this lane holds as e +- PER/2.
    u16* dst = is_q ? q + ((long long)row * heads + head) * HEAD_DIM
                    : k + ((long long)row * kv_heads + head - heads) * HEAD_DIM;
#pragma unroll
    for (int e = 0; e < PER; e++)
    {
        const int i = lane + 32 * e;
        const float c = to_float(cos_t[(long long)row * HEAD_DIM + i]), s = to_float(sin_t[(long long)row * HEAD_DIM + i]);
        const float rot = e < PER / 2 ? -x[e + PER / 2] : x[e - PER / 2];
        dst[i] = from_float(round_t(x[e] * c) + round_t(rot * s));
    }
}

// The soft input of a row that goes deeper: softmax over its top-k logits (fp32), then the
// matching embedding rows mixed with those weights. One block per row; embedding rows are read
// 16 bytes per thread.
extern "C" __global__ void soft_topk_mix(const float* __restrict__ values, const long long* __restrict__ ids,
    const u16* __restrict__ embed, u16* __restrict__ out, int topk, int stride, int hidden)
{
    extern __shared__ float s_w[];  // [topk]
    __shared__ float s_red[2];
    const long long row = blockIdx.x;
    const float* val = values + row * stride;
    if (threadIdx.x < 32)
    {
        float m = TAH_NEG_INF;
        for (int j = threadIdx.x; j < topk; j += 32) m = fmaxf(m, val[j]);
        m = warp_max(m);
        float s = 0.f;
        for (int j = threadIdx.x; j < topk; j += 32) s += __expf(val[j] - m);
        s = warp_sum(s);
        if (threadIdx.x == 0) { s_red[0] = m; s_red[1] = s; }
    }
    __syncthreads();
    for (int j = threadIdx.x; j < topk; j += blockDim.x) s_w[j] = __expf(val[j] - s_red[0]) / s_red[1];
    __syncthreads();

    const long long* id = ids + row * stride;
    for (int c = threadIdx.x; c < hidden / 8; c += blockDim.x)
    {
        float acc[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
        for (int j = 0; j < topk; j++)
        {
            float f[8];
            unpack8(reinterpret_cast<const uint4*>(embed + id[j] * hidden)[c], f);
            const float wj = s_w[j];
#pragma unroll
            for (int e = 0; e < 8; e++) acc[e] += wj * f[e];
        }
        uint4 o;
        o.x = pack2(acc[0], acc[1]); o.y = pack2(acc[2], acc[3]);
        o.z = pack2(acc[4], acc[5]); o.w = pack2(acc[6], acc[7]);
        reinterpret_cast<uint4*>(out + row * hidden)[c] = o;
    }
}

// ---------------------------------------------------------------------------------------------
// Sampling on the GPU: temperature, top-k, then top-p over the renormalised top-k, then one draw
// with the caller's uniform number, scanning tokens in index order. Thresholds are found by
// bisection over the order-preserving integer image of the scaled logits (exact in 32 steps), so
// no sort is needed; tokens tied at a threshold are all kept. temperature <= 0 means argmax (the
// lowest index among ties). One block of SAMPLE_THREADS per row; logits are fp32.

#define SAMPLE_THREADS 1024

__device__ __forceinline__ u32 order_key(float f)
{
    const u32 b = __float_as_uint(f);
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

template <typename T>
__device__ __forceinline__ T block_sum(T v, T* scratch)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    T total = 0;
    for (int i = 0; i < SAMPLE_THREADS / 32; i++) total += scratch[i];
    return total;
}

extern "C" __global__ void __launch_bounds__(SAMPLE_THREADS) sample_top_k_top_p(
    const float* __restrict__ logits, int vocab, const float* __restrict__ temperature,
    const int* __restrict__ top_k, const float* __restrict__ top_p, const float* __restrict__ uniform,
    long long* __restrict__ out)
{
    __shared__ float s_f[SAMPLE_THREADS / 32];
    __shared__ u32 s_u[SAMPLE_THREADS / 32];
    __shared__ u32 s_best[SAMPLE_THREADS / 32];
    __shared__ int s_bidx[SAMPLE_THREADS / 32];
    __shared__ float s_scan[SAMPLE_THREADS];
    const long long row = blockIdx.x;
    const float* x = logits + row * vocab;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const float temp = temperature[row];

    // Maximum (key and lowest index): the greedy answer, and the softmax shift.
    u32 best = 0; int bidx = 0x7fffffff;
    for (int i = tid; i < vocab; i += SAMPLE_THREADS)
    {
        const u32 k = order_key(x[i]);
        if (k > best || (k == best && i < bidx)) { best = k; bidx = i; }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
    {
        const u32 ob = __shfl_xor_sync(0xffffffffu, best, o);
        const int oi = __shfl_xor_sync(0xffffffffu, bidx, o);
        if (ob > best || (ob == best && oi < bidx)) { best = ob; bidx = oi; }
    }
    if (lane == 0) { s_best[warp] = best; s_bidx[warp] = bidx; }
    __syncthreads();
    best = s_best[0]; bidx = s_bidx[0];
    for (int i = 1; i < SAMPLE_THREADS / 32; i++)
        if (s_best[i] > best || (s_best[i] == best && s_bidx[i] < bidx)) { best = s_best[i]; bidx = s_bidx[i]; }
    if (temp <= 0.f)
    {
        if (tid == 0) out[row] = bidx;
        return;
    }
    const float mx = x[bidx];
    const float inv_t = 1.f / temp;

    // Top-k threshold: the largest key t with count(key >= t) >= k.
    u32 kth = 0;
    const int k = top_k[row];
    if (k > 0 && k < vocab)
    {
        u32 lo = 0, hi = best;  // count(>= lo) >= k holds; find the largest such
        while (lo < hi)
        {
            const u32 mid = lo + (hi - lo + 1) / 2;
            u32 c = 0;
            for (int i = tid; i < vocab; i += SAMPLE_THREADS) c += order_key(x[i]) >= mid ? 1u : 0u;
            if (block_sum<u32>(c, s_u) >= (u32)k) lo = mid; else hi = mid - 1;
        }
        kth = lo;
    }

    // Mass of the top-k set; top-p keeps the smallest top set holding p of it.
    float z = 0.f;
    for (int i = tid; i < vocab; i += SAMPLE_THREADS)
    {
        const float v = x[i];
        if (order_key(v) >= kth) z += __expf((v - mx) * inv_t);
    }
    z = block_sum<float>(z, s_f);
    u32 cut = kth;
    const float p = top_p[row];
    if (p < 1.f)
    {
        u32 lo = kth, hi = best;  // mass(>= lo) >= p z holds; find the largest such
        while (lo < hi)
        {
            const u32 mid = lo + (hi - lo + 1) / 2;
            float m = 0.f;
            for (int i = tid; i < vocab; i += SAMPLE_THREADS)
            {
                const float v = x[i];
                if (order_key(v) >= mid) m += __expf((v - mx) * inv_t);
            }
            if (block_sum<float>(m, s_f) >= p * z) lo = mid; else hi = mid - 1;
        }
        cut = lo;
    }

    // Draw: each thread owns a contiguous range of tokens; scan the ranges' masses.
    const int per = (vocab + SAMPLE_THREADS - 1) / SAMPLE_THREADS;
    const int b0 = min(vocab, tid * per), b1 = min(vocab, b0 + per);
    float mine = 0.f;
    for (int i = b0; i < b1; i++)
    {
        const float v = x[i];
        if (order_key(v) >= cut) mine += __expf((v - mx) * inv_t);
    }
    s_scan[tid] = mine;
    __syncthreads();
    for (int o = 1; o < SAMPLE_THREADS; o <<= 1)
    {
        const float add = tid >= o ? s_scan[tid - o] : 0.f;
        __syncthreads();
        s_scan[tid] += add;
        __syncthreads();
    }
    const float total = s_scan[SAMPLE_THREADS - 1];
    const float target = uniform[row] * total;
    const float before = tid > 0 ? s_scan[tid - 1] : 0.f;
    if (target >= before && target < s_scan[tid] && mine > 0.f)
    {
        float run = before;
        int pick = -1;
        for (int i = b0; i < b1; i++)
        {
            const float v = x[i];
            if (order_key(v) >= cut)
            {
                pick = i;
                run += __expf((v - mx) * inv_t);
                if (target < run) break;
            }
        }
        out[row] = pick;
    }
    // Rounding can leave the target at the very end: the last kept token then.
    if (tid == SAMPLE_THREADS - 1 && !(target < total))
    {
        for (int i = vocab - 1; i >= 0; i--)
            if (order_key(x[i]) >= cut) { out[row] = i; break; }
    }
}
