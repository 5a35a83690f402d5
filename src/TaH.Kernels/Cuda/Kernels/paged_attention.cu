// Duo-causal attention over the paged per-depth KV cache (see AttentionBatch.cs): a row at
// (p, d) sees the entries (p', d') of its sequence with p' <= p and d' <= d. Per (sequence, depth)
// the entries are ascending in position, so a row's visible set is a prefix of each table at
// depth <= d: the host turns that into per-depth counts, and no mask is ever materialised.
//
// Compile-time constants from the host: HEAD_DIM (64 or 128), GROUPS (query heads per KV head),
// TAH_BF16 (else fp16), TAH_MAX_DEPTH.
//
// Layouts: q, out [rows, heads, HEAD_DIM]; k/v pool [slots, kv_heads, HEAD_DIM];
// slot of entry i of a table = block_tables[table + i / block_size] * block_size + i % block_size.

#define DECODE_META (1 + 2 * TAH_MAX_DEPTH)  // row, then (block table offset, visible count) per depth
#define TILE_META (2 + 3 * TAH_MAX_DEPTH)    // first, count, then (block off, position off, count) per depth

// Writes the step's new keys and values into their pool slots. One thread per 16 bytes.
extern "C" __global__ void kv_write(const u16* __restrict__ k, const u16* __restrict__ v,
    u16* __restrict__ kpool, u16* __restrict__ vpool, const long long* __restrict__ slots,
    int rows, int kv_heads)
{
    const int per_row = kv_heads * HEAD_DIM / 8;
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)rows * per_row) return;
    const int row = (int)(i / per_row), c = (int)(i % per_row);
    const long long dst = slots[row] * per_row + c;
    reinterpret_cast<uint4*>(kpool)[dst] = reinterpret_cast<const uint4*>(k)[i];
    reinterpret_cast<uint4*>(vpool)[dst] = reinterpret_cast<const uint4*>(v)[i];
}

// ---------------------------------------------------------------------------------------------
// Decode: one work item per (row, kv head, split). The block reads each visible key and value of
// its KV head once and serves all GROUPS query heads that share it. Lanes of 16 bytes cover a
// head; TILE keys are loaded before any is used so many loads are in flight.

#define DEC_THREADS 128
#define DEC_TPK (HEAD_DIM / 8)              // threads per key
#define DEC_KPI (DEC_THREADS / DEC_TPK)     // keys per iteration
#define DEC_TILE 64
#define DEC_ITERS (DEC_TILE / DEC_KPI)

__device__ __forceinline__ long long slot_of_entry(const int* __restrict__ meta, const int* __restrict__ block_tables,
    int j, int block_size)
{
    // Entry j of the row's concatenated visible prefixes (depth 1 first).
#pragma unroll
    for (int d = 0; d < TAH_MAX_DEPTH; d++)
    {
        const int n = meta[2 + 2 * d];
        if (j < n)
        {
            const int blk = block_tables[meta[1 + 2 * d] + j / block_size];
            return (long long)blk * block_size + j % block_size;
        }
        j -= n;
    }
    return 0;
}

extern "C" __global__ void __launch_bounds__(DEC_THREADS) decode_attention(
    const u16* __restrict__ q, const u16* __restrict__ kpool, const u16* __restrict__ vpool,
    u16* __restrict__ out, float* __restrict__ ws_acc, float* __restrict__ ws_ml,
    const int* __restrict__ row_meta, const int* __restrict__ block_tables,
    int heads, int kv_heads, int block_size, int split_size, int max_splits, float scale_log2)
{
    const int split = blockIdx.x, kvh = blockIdx.y, item = blockIdx.z;
    const int* meta = row_meta + item * DECODE_META;
    int total = 0;
#pragma unroll
    for (int d = 0; d < TAH_MAX_DEPTH; d++) total += meta[2 + 2 * d];
    const int begin = split * split_size;
    if (begin >= total) return;
    const int end = min(total, begin + split_size);
    const int nsplits = (total + split_size - 1) / split_size;
    const int row = meta[0];

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int kl = tid / DEC_TPK, cl = tid % DEC_TPK;

    __shared__ long long s_slot[DEC_TILE];
    __shared__ float s_score[GROUPS][DEC_TILE];
    __shared__ float s_m[GROUPS], s_l[GROUPS], s_corr[GROUPS];
    __shared__ float s_out[DEC_KPI][GROUPS][HEAD_DIM];

    float qf[GROUPS][8];
#pragma unroll
    for (int g = 0; g < GROUPS; g++)
    {
        const uint4 v = reinterpret_cast<const uint4*>(q + ((long long)row * heads + kvh * GROUPS + g) * HEAD_DIM)[cl];
        unpack8(v, qf[g]);
#pragma unroll
        for (int e = 0; e < 8; e++) qf[g][e] *= scale_log2;
    }
    if (tid < GROUPS) { s_m[tid] = TAH_M_INIT; s_l[tid] = 0.f; }

    float acc[GROUPS][8];
#pragma unroll
    for (int g = 0; g < GROUPS; g++)
#pragma unroll
        for (int e = 0; e < 8; e++) acc[g][e] = 0.f;

    const long long head_stride = (long long)kv_heads * HEAD_DIM;
    for (int tile = begin; tile < end; tile += DEC_TILE)
    {
        __syncthreads();  // s_slot of the previous tile is no longer read
        if (tid < DEC_TILE)
        {
            const int j = tile + tid;
            s_slot[tid] = j < end ? slot_of_entry(meta, block_tables, j, block_size) : -1;
        }
        __syncthreads();

        uint4 kr[DEC_ITERS], vr[DEC_ITERS];
#pragma unroll
        for (int it = 0; it < DEC_ITERS; it++)
        {
            const long long slot = s_slot[it * DEC_KPI + kl];
            if (slot >= 0)
            {
                const long long base = slot * head_stride + (long long)kvh * HEAD_DIM;
                kr[it] = reinterpret_cast<const uint4*>(kpool + base)[cl];
                vr[it] = reinterpret_cast<const uint4*>(vpool + base)[cl];
            }
            else
            {
                kr[it] = make_uint4(0, 0, 0, 0);
                vr[it] = make_uint4(0, 0, 0, 0);
            }
        }

#pragma unroll
        for (int it = 0; it < DEC_ITERS; it++)
        {
            float kf[8];
            unpack8(kr[it], kf);
#pragma unroll
            for (int g = 0; g < GROUPS; g++)
            {
                float s = 0.f;
#pragma unroll
                for (int e = 0; e < 8; e++) s += qf[g][e] * kf[e];
#pragma unroll
                for (int o = DEC_TPK / 2; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
                if (cl == 0) s_score[g][it * DEC_KPI + kl] = s_slot[it * DEC_KPI + kl] >= 0 ? s : TAH_NEG_INF;
            }
        }
        __syncthreads();

        // Online softmax per query head: one warp per head, two scores per lane.
        for (int g = warp; g < GROUPS; g += DEC_THREADS / 32)
        {
            const float a = s_score[g][lane], b = s_score[g][lane + 32];
            const float m_old = s_m[g];
            const float m_new = fmaxf(m_old, warp_max(fmaxf(a, b)));
            const float pa = fast_exp2(a - m_new), pb = fast_exp2(b - m_new);
            s_score[g][lane] = pa;
            s_score[g][lane + 32] = pb;
            const float sum = warp_sum(pa + pb);
            __syncwarp();  // every lane has read s_m[g] before lane 0 replaces it
            if (lane == 0)
            {
                const float corr = fast_exp2(m_old - m_new);
                s_corr[g] = corr;
                s_m[g] = m_new;
                s_l[g] = s_l[g] * corr + sum;
            }
        }
        __syncthreads();

#pragma unroll
        for (int g = 0; g < GROUPS; g++)
        {
            const float corr = s_corr[g];
#pragma unroll
            for (int e = 0; e < 8; e++) acc[g][e] *= corr;
        }
#pragma unroll
        for (int it = 0; it < DEC_ITERS; it++)
        {
            float vf[8];
            unpack8(vr[it], vf);
#pragma unroll
            for (int g = 0; g < GROUPS; g++)
            {
                const float p = s_score[g][it * DEC_KPI + kl];
#pragma unroll
                for (int e = 0; e < 8; e++) acc[g][e] += p * vf[e];
            }
        }
    }

    // Sum the key lanes' partial outputs.
#pragma unroll
    for (int g = 0; g < GROUPS; g++)
#pragma unroll
        for (int e = 0; e < 8; e++) s_out[kl][g][cl * 8 + e] = acc[g][e];
    __syncthreads();

    for (int i = tid; i < GROUPS * HEAD_DIM; i += DEC_THREADS)
    {
        const int g = i / HEAD_DIM, dim = i % HEAD_DIM;
        float o = 0.f;
#pragma unroll
        for (int k = 0; k < DEC_KPI; k++) o += s_out[k][g][dim];
        const int h = kvh * GROUPS + g;
        if (nsplits == 1)
        {
            out[((long long)row * heads + h) * HEAD_DIM + dim] = from_float(o / s_l[g]);
        }
        else
        {
            const long long w = ((long long)item * heads + h) * max_splits + split;
            ws_acc[w * HEAD_DIM + dim] = o;
            if (dim == 0) { ws_ml[2 * w] = s_m[g]; ws_ml[2 * w + 1] = s_l[g]; }
        }
    }
}

// Combines the splits of rows whose context was cut into several work items.
extern "C" __global__ void decode_reduce(const float* __restrict__ ws_acc, const float* __restrict__ ws_ml,
    u16* __restrict__ out, const int* __restrict__ row_meta, int heads, int split_size, int max_splits)
{
    const int h = blockIdx.x, item = blockIdx.y, dim = threadIdx.x;
    const int* meta = row_meta + item * DECODE_META;
    int total = 0;
#pragma unroll
    for (int d = 0; d < TAH_MAX_DEPTH; d++) total += meta[2 + 2 * d];
    const int nsplits = (total + split_size - 1) / split_size;
    if (nsplits <= 1) return;
    const long long w0 = ((long long)item * heads + h) * max_splits;
    float m = TAH_M_INIT;
    for (int s = 0; s < nsplits; s++) m = fmaxf(m, ws_ml[2 * (w0 + s)]);
    float l = 0.f, o = 0.f;
    for (int s = 0; s < nsplits; s++)
    {
        const float c = fast_exp2(ws_ml[2 * (w0 + s)] - m);
        l += ws_ml[2 * (w0 + s) + 1] * c;
        o += ws_acc[(w0 + s) * HEAD_DIM + dim] * c;
    }
    out[((long long)meta[0] * heads + h) * HEAD_DIM + dim] = from_float(o / l);
}

// ---------------------------------------------------------------------------------------------
// Prefill: a tile of up to PF_BM rows of one sequence (any mix of positions and depths) against
// the visible key tiles of each depth, FlashAttention-2 style on mma.sync tensor cores. 4 warps
// per query head, each owning PF_MT m16 row tiles (so every K/V fragment loaded from shared
// memory feeds PF_MT matrix ops), PF_BN keys per tile, K/V tiles gathered from the pool by
// cp.async into a double buffer. PF_HPB query heads of one GQA group share a block, so each K/V
// tile is read once for all of them. The duo-causal rule is applied per element from the key's
// position and depth, except on tiles a warp sees whole.

#ifndef PF_MT
#define PF_MT 1
#endif
#ifndef PF_BN
#define PF_BN 64
#endif
#ifndef PF_HPB
#define PF_HPB 1
#endif
#define PF_BM (64 * PF_MT)
#define PF_THREADS (128 * PF_HPB)
#define PF_LD (HEAD_DIM + 8)  // padded row: ldmatrix rows fall in different banks

__device__ __forceinline__ void ldsm_x4(u32* r, const u16* p)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
        : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(smem_addr(p)));
}

__device__ __forceinline__ void ldsm_x4_t(u32* r, const u16* p)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
        : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(smem_addr(p)));
}

__device__ __forceinline__ void mma16816(float* c, const u32* a, u32 b0, u32 b1)
{
#ifdef TAH_BF16
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
#else
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
#endif
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

struct PfTileRef
{
    int depth;  // 0-based depth of the keys in this tile
    int start;  // first entry index in that depth's table
    int count;  // entries in this tile (<= PF_BN)
};

__device__ __forceinline__ PfTileRef pf_tile(const int* meta, int t)
{
    PfTileRef r = {-1, 0, 0};
#pragma unroll
    for (int d = 0; d < TAH_MAX_DEPTH; d++)
    {
        const int n = meta[2 + 3 * d + 2];
        const int tiles = (n + PF_BN - 1) / PF_BN;
        if (r.depth < 0)
        {
            if (t < tiles)
            {
                r.depth = d;
                r.start = t * PF_BN;
                r.count = min(PF_BN, n - r.start);
            }
            else
            {
                t -= tiles;
            }
        }
    }
    return r;
}

extern "C" __global__ void __launch_bounds__(PF_THREADS) prefill_attention(
    const u16* __restrict__ q, const u16* __restrict__ kpool, const u16* __restrict__ vpool,
    u16* __restrict__ out, const int* __restrict__ tile_meta, const int* __restrict__ tile_rows,
    const int* __restrict__ row_pos, const int* __restrict__ row_depth,
    const int* __restrict__ block_tables, const int* __restrict__ entry_pos,
    int heads, int kv_heads, int block_size, float scale_log2)
{
    extern __shared__ __align__(16) unsigned char smem_raw[];
    u16* s_q = reinterpret_cast<u16*>(smem_raw);  // [PF_HPB][PF_BM][PF_LD]
    u16* s_k = s_q + PF_HPB * PF_BM * PF_LD;  // [2][PF_BN][PF_LD]
    u16* s_v = s_k + 2 * PF_BN * PF_LD;       // [2][PF_BN][PF_LD]
    int* s_kpos = reinterpret_cast<int*>(s_v + 2 * PF_BN * PF_LD);  // [2][PF_BN]
    int* s_qpos = s_kpos + 2 * PF_BN;         // [PF_BM]
    int* s_qdep = s_qpos + PF_BM;             // [PF_BM]

    // Heads vary fastest and tiles come heaviest first (the host sorts them), so the longest
    // blocks start in the first wave rather than trailing in the last.
    const int tile = blockIdx.y, h0 = blockIdx.x * PF_HPB, kvh = h0 / GROUPS;
    const int* meta = tile_meta + tile * TILE_META;
    const int first = meta[0], nrows = meta[1];
    const int tid = threadIdx.x, lane = tid & 31, warp = (tid >> 5) & 3, hw = tid >> 7, h = h0 + hw;
    const long long head_stride = (long long)kv_heads * HEAD_DIM;
    constexpr int CHUNKS = HEAD_DIM / 8;  // 16-byte chunks per row

    // Query tiles of the block's heads (padding rows repeat the first row; their output is dropped).
    for (int i = tid; i < PF_HPB * PF_BM * CHUNKS; i += PF_THREADS)
    {
        const int hh = i / (PF_BM * CHUNKS), r = (i / CHUNKS) % PF_BM, c = i % CHUNKS;
        const int row = tile_rows[first + (r < nrows ? r : 0)];
        cp_async16(s_q + (hh * PF_BM + r) * PF_LD + c * 8, q + ((long long)row * heads + h0 + hh) * HEAD_DIM + c * 8);
    }
    for (int r = tid; r < PF_BM; r += PF_THREADS)
    {
        const int row = tile_rows[first + (r < nrows ? r : 0)];
        s_qpos[r] = r < nrows ? row_pos[row] : -1;
        s_qdep[r] = r < nrows ? row_depth[row] : 0;
    }

    int ntiles = 0;
#pragma unroll
    for (int d = 0; d < TAH_MAX_DEPTH; d++) ntiles += (meta[2 + 3 * d + 2] + PF_BN - 1) / PF_BN;

    auto load_kv = [&](int t, int buf) {
        const PfTileRef ref = pf_tile(meta, t);
        const int boff = meta[2 + 3 * ref.depth], poff = meta[2 + 3 * ref.depth + 1];
        u16* dk = s_k + buf * PF_BN * PF_LD;
        u16* dv = s_v + buf * PF_BN * PF_LD;
        for (int i = tid; i < PF_BN * CHUNKS; i += PF_THREADS)
        {
            const int r = i / CHUNKS, c = i % CHUNKS;
            const int e = ref.start + (r < ref.count ? r : 0);
            const long long slot = (long long)block_tables[boff + e / block_size] * block_size + e % block_size;
            const long long base = slot * head_stride + (long long)kvh * HEAD_DIM + c * 8;
            cp_async16(dk + r * PF_LD + c * 8, kpool + base);
            cp_async16(dv + r * PF_LD + c * 8, vpool + base);
        }
        if (tid < PF_BN)
        {
            // Out-of-range keys get a position no query reaches.
            s_kpos[buf * PF_BN + tid] = tid < ref.count ? entry_pos[poff + ref.start + tid] : 0x7fffffff;
        }
        return ref.depth + 1;
    };

    int kd0 = 0, kd1 = 0;  // depth of the keys in buffer 0 / 1
    if (ntiles > 0) kd0 = load_kv(0, 0);
    cp_async_commit();

    // Per thread and m tile: rows g and g+8 of the tile's 16.
    const int g = lane >> 2, t4 = lane & 3;
    const int wrow = warp * 16 * PF_MT;  // the warp's first row in the tile
    const u16* sq = s_q + hw * PF_BM * PF_LD;

#if PF_MT == 1
    u32 qa[HEAD_DIM / 16][4];  // one m tile: Q stays in registers
#endif
    float o[PF_MT][HEAD_DIM / 8][4];
    float m[PF_MT][2], l[PF_MT][2];
    int qpos[PF_MT][2], qdep[PF_MT][2];
#pragma unroll
    for (int mt = 0; mt < PF_MT; mt++)
    {
#pragma unroll
        for (int i = 0; i < HEAD_DIM / 8; i++) o[mt][i][0] = o[mt][i][1] = o[mt][i][2] = o[mt][i][3] = 0.f;
        m[mt][0] = m[mt][1] = TAH_M_INIT;
        l[mt][0] = l[mt][1] = 0.f;
        qpos[mt][0] = qpos[mt][1] = 0;
        qdep[mt][0] = qdep[mt][1] = 0;
    }
    int wpos = 0, wdep = 0;

    for (int t = 0; t < ntiles; t++)
    {
        const int buf = t & 1;
        if (t + 1 < ntiles)
        {
            const int next = load_kv(t + 1, buf ^ 1);
            if (buf) kd0 = next; else kd1 = next;
        }
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();

        if (t == 0)
        {
#if PF_MT == 1
#pragma unroll
            for (int ks = 0; ks < HEAD_DIM / 16; ks++)
            {
                const int row = wrow + (lane & 7) + ((lane >> 3) & 1) * 8;
                ldsm_x4(qa[ks], sq + row * PF_LD + ks * 16 + (lane >> 4) * 8);
            }
#endif
            wpos = 0x7fffffff;
            wdep = 0x7fffffff;
#pragma unroll
            for (int mt = 0; mt < PF_MT; mt++)
            {
#pragma unroll
                for (int hlf = 0; hlf < 2; hlf++)
                {
                    const int r = wrow + mt * 16 + g + hlf * 8;
                    qpos[mt][hlf] = s_qpos[r];
                    qdep[mt][hlf] = s_qdep[r];
                    wpos = min(wpos, qpos[mt][hlf]);
                    wdep = min(wdep, qdep[mt][hlf]);
                }
            }
            // The warp's nearest position and shallowest depth: keys up to those are visible to all its rows.
#pragma unroll
            for (int off = 16; off > 0; off >>= 1)
            {
                wpos = min(wpos, __shfl_xor_sync(0xffffffffu, wpos, off));
                wdep = min(wdep, __shfl_xor_sync(0xffffffffu, wdep, off));
            }
        }

        const u16* sk = s_k + buf * PF_BN * PF_LD;
        const u16* sv = s_v + buf * PF_BN * PF_LD;
        const int* kp = s_kpos + buf * PF_BN;
        const int kd = buf ? kd1 : kd0;
        const bool whole = kp[PF_BN - 1] <= wpos && kd <= wdep;  // warp-uniform

        // S = Q K^T for this warp's rows x PF_BN keys; each K fragment feeds PF_MT row tiles.
        float s[PF_MT][PF_BN / 8][4];
#pragma unroll
        for (int mt = 0; mt < PF_MT; mt++)
#pragma unroll
            for (int n = 0; n < PF_BN / 8; n++) s[mt][n][0] = s[mt][n][1] = s[mt][n][2] = s[mt][n][3] = 0.f;
#pragma unroll
        for (int ks = 0; ks < HEAD_DIM / 16; ks++)
        {
#if PF_MT == 1
            const u32* a0 = qa[ks];
#else
            u32 qf[PF_MT][4];
#pragma unroll
            for (int mt = 0; mt < PF_MT; mt++)
            {
                const int row = wrow + mt * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
                ldsm_x4(qf[mt], sq + row * PF_LD + ks * 16 + (lane >> 4) * 8);
            }
#endif
#pragma unroll
            for (int kp2 = 0; kp2 < PF_BN / 16; kp2++)
            {
                u32 b[4];
                const int key = kp2 * 16 + (lane >> 4) * 8 + (lane & 7);
                ldsm_x4(b, sk + key * PF_LD + ks * 16 + ((lane >> 3) & 1) * 8);
#pragma unroll
                for (int mt = 0; mt < PF_MT; mt++)
                {
#if PF_MT == 1
                    const u32* a = a0;
#else
                    const u32* a = qf[mt];
#endif
                    mma16816(s[mt][2 * kp2], a, b[0], b[1]);
                    mma16816(s[mt][2 * kp2 + 1], a, b[2], b[3]);
                }
            }
        }

        u32 pa[PF_MT][PF_BN / 16][4];
#pragma unroll
        for (int mt = 0; mt < PF_MT; mt++)
        {
            // Duo-causal mask, scale, row maxima (two loops: the common whole tile needs no compares).
            float mx0 = TAH_NEG_INF, mx1 = TAH_NEG_INF;
            if (whole)
            {
#pragma unroll
                for (int n = 0; n < PF_BN / 8; n++)
                {
#pragma unroll
                    for (int e = 0; e < 2; e++)
                    {
                        s[mt][n][e] *= scale_log2;
                        s[mt][n][2 + e] *= scale_log2;
                        mx0 = fmaxf(mx0, s[mt][n][e]);
                        mx1 = fmaxf(mx1, s[mt][n][2 + e]);
                    }
                }
            }
            else
            {
#pragma unroll
                for (int n = 0; n < PF_BN / 8; n++)
                {
#pragma unroll
                    for (int e = 0; e < 2; e++)
                    {
                        const int kpos = kp[n * 8 + 2 * t4 + e];
                        const bool v0 = kpos <= qpos[mt][0] && kd <= qdep[mt][0];
                        const bool v1 = kpos <= qpos[mt][1] && kd <= qdep[mt][1];
                        s[mt][n][e] = v0 ? s[mt][n][e] * scale_log2 : TAH_NEG_INF;
                        s[mt][n][2 + e] = v1 ? s[mt][n][2 + e] * scale_log2 : TAH_NEG_INF;
                        mx0 = fmaxf(mx0, s[mt][n][e]);
                        mx1 = fmaxf(mx1, s[mt][n][2 + e]);
                    }
                }
            }
            mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
            mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
            mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
            mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
            const float mn0 = fmaxf(m[mt][0], mx0), mn1 = fmaxf(m[mt][1], mx1);
            const float c0 = fast_exp2(m[mt][0] - mn0), c1 = fast_exp2(m[mt][1] - mn1);
            m[mt][0] = mn0;
            m[mt][1] = mn1;
            float sum0 = 0.f, sum1 = 0.f;
#pragma unroll
            for (int n = 0; n < PF_BN / 8; n++)
            {
                const float p00 = fast_exp2(s[mt][n][0] - mn0), p01 = fast_exp2(s[mt][n][1] - mn0);
                const float p10 = fast_exp2(s[mt][n][2] - mn1), p11 = fast_exp2(s[mt][n][3] - mn1);
                sum0 += p00 + p01;
                sum1 += p10 + p11;
                // The accumulator layout of two n8 tiles is the A layout of one k16 step.
                pa[mt][n / 2][(n & 1) * 2 + 0] = pack2(p00, p01);
                pa[mt][n / 2][(n & 1) * 2 + 1] = pack2(p10, p11);
            }
            l[mt][0] = l[mt][0] * c0 + sum0;
            l[mt][1] = l[mt][1] * c1 + sum1;
#pragma unroll
            for (int i = 0; i < HEAD_DIM / 8; i++)
            {
                o[mt][i][0] *= c0; o[mt][i][1] *= c0;
                o[mt][i][2] *= c1; o[mt][i][3] *= c1;
            }
        }

        // O += P V; each V fragment feeds PF_MT row tiles.
#pragma unroll
        for (int ks = 0; ks < PF_BN / 16; ks++)
        {
#pragma unroll
            for (int np = 0; np < HEAD_DIM / 16; np++)
            {
                u32 b[4];
                const int key = ks * 16 + ((lane >> 3) & 1) * 8 + (lane & 7);
                ldsm_x4_t(b, sv + key * PF_LD + np * 16 + (lane >> 4) * 8);
#pragma unroll
                for (int mt = 0; mt < PF_MT; mt++)
                {
                    mma16816(o[mt][2 * np], pa[mt][ks], b[0], b[1]);
                    mma16816(o[mt][2 * np + 1], pa[mt][ks], b[2], b[3]);
                }
            }
        }
        __syncthreads();  // this buffer is refilled by the next iteration's prefetch
    }
    cp_async_wait<0>();

#pragma unroll
    for (int mt = 0; mt < PF_MT; mt++)
    {
#pragma unroll
        for (int hlf = 0; hlf < 2; hlf++)
        {
            // Row sums are spread over the 4 lanes of a quad.
            float sum = l[mt][hlf];
            sum += __shfl_xor_sync(0xffffffffu, sum, 1);
            sum += __shfl_xor_sync(0xffffffffu, sum, 2);
            const float inv = sum > 0.f ? 1.f / sum : 0.f;
            const int r = wrow + mt * 16 + g + hlf * 8;
            if (r < nrows)
            {
                u16* dst = out + ((long long)tile_rows[first + r] * heads + h) * HEAD_DIM;
#pragma unroll
                for (int i = 0; i < HEAD_DIM / 8; i++)
                    reinterpret_cast<u32*>(dst + i * 8 + 2 * t4)[0] = pack2(o[mt][i][2 * hlf] * inv, o[mt][i][2 * hlf + 1] * inv);
            }
        }
    }
}
