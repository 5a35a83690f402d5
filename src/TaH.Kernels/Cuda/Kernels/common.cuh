// Shared by every kernel module. Compiled with NVRTC (no CUDA headers: the 16-bit types are raw
// bits and conversions are single PTX instructions), so the same text builds on a machine that
// has only libnvrtc. The host defines TAH_BF16 (bf16) or not (fp16) when it compiles a module.

typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

#ifndef TAH_MAX_DEPTH
#define TAH_MAX_DEPTH 4
#endif

#define TAH_NEG_INF (__int_as_float(0xff800000))
// A finite "minus infinity" for running maxima: exp2(m_old - m_new) stays defined when a row has
// seen no visible key yet.
#define TAH_M_INIT (-1.0e30f)
#define TAH_LOG2E 1.4426950408889634f

__device__ __forceinline__ float to_float(u16 h)
{
#ifdef TAH_BF16
    return __uint_as_float(((u32)h) << 16);
#else
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
#endif
}

__device__ __forceinline__ u16 from_float(float f)
{
    u16 h;
#ifdef TAH_BF16
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(f));
#else
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
#endif
    return h;
}

// Rounds through the storage type: what a TorchSharp op on bf16/fp16 tensors returns.
__device__ __forceinline__ float round_t(float f) { return to_float(from_float(f)); }

// Two floats into one 32-bit register, lo in the low half (the layout of mma fragments).
__device__ __forceinline__ u32 pack2(float lo, float hi)
{
    u32 r;
#ifdef TAH_BF16
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
#else
    asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
#endif
    return r;
}

__device__ __forceinline__ float lo_of(u32 v) { return to_float((u16)(v & 0xffffu)); }
__device__ __forceinline__ float hi_of(u32 v) { return to_float((u16)(v >> 16)); }

// 8 elements of a 16-byte vector to floats.
__device__ __forceinline__ void unpack8(const uint4& v, float* f)
{
    f[0] = lo_of(v.x); f[1] = hi_of(v.x);
    f[2] = lo_of(v.y); f[3] = hi_of(v.y);
    f[4] = lo_of(v.z); f[5] = hi_of(v.z);
    f[6] = lo_of(v.w); f[7] = hi_of(v.w);
}

__device__ __forceinline__ float warp_sum(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

__device__ __forceinline__ float fast_exp2(float x)
{
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

__device__ __forceinline__ u32 smem_addr(const void* p)
{
    return (u32)__cvta_generic_to_shared(p);
}

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(smem_addr(smem)), "l"(gmem));
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;"); }

template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;" ::"n"(N)); }
