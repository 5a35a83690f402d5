using System.Collections.Concurrent;
using TorchSharp;

namespace TaH.Kernels;

/// <summary>
/// Scalars that live as long as the process. TorchSharp 0.107 hands a Scalar's native handle to
/// libtorch without keeping the Scalar object alive, and dispose scopes do not hold Scalars, so a
/// garbage collection on another thread during the call can finalize a temporary Scalar
/// (<c>x.add(y)</c>'s implicit alpha, <c>square()</c>'s exponent) while libtorch still reads it;
/// seen here as "INTERNAL ASSERT FAILED at Scalar.h" from <c>pow</c>. Hot paths pass these instead.
/// </summary>
public static class PinnedScalars
{
    private static readonly ConcurrentDictionary<double, Scalar> Values = new();

    public static Scalar One { get; } = Of(1);

    /// <summary>A process-lifetime Scalar holding <paramref name="value"/> (few distinct values are ever asked for).</summary>
    public static Scalar Of(double value) => Values.GetOrAdd(value, v => v.ToScalar());
}
