using System.Numerics;
using System.Numerics.Tensors;

namespace TaH.Engine.Constraints;

/// <summary>
/// The tokens a constraint allows at one step, one bit per logit. Read-only once the matcher has
/// handed it out (samples of one step may share it).
/// </summary>
public sealed class TokenMask
{
    internal TokenMask(int size)
    {
        Size = size;
        Bits = new ulong[Words(size)];
    }

    /// <summary>Logits covered; ids at or above are never allowed.</summary>
    public int Size { get; }

    internal ulong[] Bits { get; }

    internal static int Words(int size) => (size + 63) >> 6;

    public bool IsAllowed(int id) => (uint)id < (uint)Size && (Bits[id >> 6] & (1UL << id)) != 0;

    /// <summary>Allowed tokens.</summary>
    public int Count
    {
        get
        {
            long n = 0;
            foreach (ulong w in Bits)
            {
                n += BitOperations.PopCount(w);
            }

            return (int)n;
        }
    }

    /// <summary>The allowed ids, ascending.</summary>
    public IEnumerable<int> Allowed()
    {
        for (int w = 0; w < Bits.Length; w++)
        {
            ulong word = Bits[w];
            while (word != 0)
            {
                int bit = BitOperations.TrailingZeroCount(word);
                yield return (w << 6) + bit;
                word &= word - 1;
            }
        }
    }

    internal void Set(int id) => Bits[id >> 6] |= 1UL << id;

    internal void Clear(int id) => Bits[id >> 6] &= ~(1UL << id);

    /// <summary>
    /// Sets every logit this mask does not allow to negative infinity (and those past
    /// <see cref="Size"/>), so that no later step (penalties, temperature, top-k/p) can revive it.
    /// </summary>
    public void Apply(Span<float> logits)
    {
        int n = Math.Min(logits.Length, Size);
        int words = n >> 6;
        for (int w = 0; w < words; w++)
        {
            ulong word = Bits[w];
            if (word == ulong.MaxValue)
            {
                continue;
            }

            var block = logits.Slice(w << 6, 64);
            if (word == 0)
            {
                block.Fill(float.NegativeInfinity);
                continue;
            }

            ulong off = ~word;
            while (off != 0)
            {
                block[BitOperations.TrailingZeroCount(off)] = float.NegativeInfinity;
                off &= off - 1;
            }
        }

        for (int i = words << 6; i < n; i++)
        {
            if ((Bits[i >> 6] & (1UL << i)) == 0)
            {
                logits[i] = float.NegativeInfinity;
            }
        }

        if (logits.Length > n)
        {
            logits[n..].Fill(float.NegativeInfinity);
        }
    }

    internal static void Or(Span<ulong> into, ReadOnlySpan<ulong> bits) => TensorPrimitives.BitwiseOr<ulong>(into, bits, into);
}
