using System.Numerics;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using TaH.Engine.Config;
using TaH.Kernels.Cpu;
using TorchSharp;
using static TorchSharp.torch;

namespace TaH.Engine.Model;

/// <summary>
/// The decider's forward for the CPU kernel formats in one pass over native scratch: the same
/// sequence as <see cref="IterationDecider.ContinueProbability"/>, with the linear layers called on
/// raw buffers and the LayerNorms, GELUs and residual adds as plain loops: torch's per-op cost
/// (a tensor per result, a dispatch per op, about 40 of them) took the batch-1 decider from
/// 1.5 ms to 1.9 ms, and its 16 layers' weights alone take about 0.8 ms to read.
/// </summary>
internal sealed unsafe class CpuDeciderMlp
{
    private const double LayerNormEps = 1e-5;

    private readonly DeciderLayout _layout;
    private readonly int _widest;
    private readonly Norm? _hiddenNorm;
    private readonly Layer _logits, _combined, _input, _output;
    private readonly Norm _outputNorm;
    private readonly (Norm Norm, Layer Up, Layer Down, Layer? DimChange)[] _blocks;

    /// <summary>Resolves every layer once: the tensors live as long as the decider, so their pointers do too.</summary>
    public CpuDeciderMlp(DeciderLayout layout, Func<string, KernelWeight> linear, Func<string, Tensor> parameter)
    {
        _layout = layout;
        var c = layout.Config;
        int features = c.HiddenStatesSize * Math.Max(1, c.HiddenStatesLayerNums.Length);
        _widest = new[] { features + c.HiddenStatesSize, c.TopK, layout.BlockDims.Max() * c.ExpansionFactor }.Max();
        Layer L(string name) => new(linear($"{name}.weight"), TensorMemory.Pointer<float>(parameter($"{name}.bias")));
        Norm N(string name) => new(TensorMemory.Pointer<float>(parameter($"{name}.weight")), TensorMemory.Pointer<float>(parameter($"{name}.bias")));
        _hiddenNorm = c.NormalizeInput ? N(DeciderLayout.LayerNormHiddenStates) : null;
        _logits = L(DeciderLayout.LogitsProjection);
        _combined = L(DeciderLayout.CombinedProjection);
        _input = L(DeciderLayout.InputProjection);
        _blocks = [.. Enumerable.Range(0, layout.BlockCount).Select(j => (
            N(DeciderLayout.BlockNorm(j)), L(DeciderLayout.BlockUp(j)), L(DeciderLayout.BlockDown(j)),
            layout.HasDimChange(j) ? L(DeciderLayout.BlockDimChange(j)) : (Layer?)null))];
        _outputNorm = N(DeciderLayout.OutputNorm);
        _output = L(DeciderLayout.OutputLinear);
    }

    /// <summary>
    /// Continue probabilities, as <see cref="IterationDecider.ContinueProbabilities"/> takes and
    /// returns them: the entries are copied side by side straight into the first layer's input
    /// (fp32 contiguous ones read in place: torch's cat, casts and result tensor had cost a tenth of
    /// the decider's time at batch 1).
    /// </summary>
    public double[] Run(IReadOnlyList<Tensor> hiddenEntries, Tensor topLogits)
    {
        var c = _layout.Config;
        int m = (int)topLogits.shape[0], h = c.HiddenStatesSize, k = c.TopK;
        int features = (int)hiddenEntries.Sum(e => e.shape[1]);
        var scratch = Scratch.ForThread;
        scratch.Reserve((long)m * _widest);
        float* x = scratch[0], t = scratch[1], u = scratch[2], r = scratch[3], v = scratch[4];

        // [hidden entries | logits_projection(v)] in x, rows of features + h.
        int combined = features + h, offset = 0;
        foreach (var entry in hiddenEntries)
        {
            int width = (int)entry.shape[1];
            CopyRows(entry, m, width, x + offset, combined);
            offset += width;
        }

        using (var top = topLogits.narrow(1, 0, k))
        {
            CopyRows(top, m, k, v, k);
        }

        if (_hiddenNorm is { } hiddenNorm)
        {
            LayerNorm(x, m, features, combined, hiddenNorm, x);
            for (int i = 0; i < m; i++)
            {
                SoftMax(new Span<float>(v + ((long)i * k), k));
            }
        }

        _logits.Run(v, m, t);
        for (int i = 0; i < m; i++)
        {
            new ReadOnlySpan<float>(t + ((long)i * h), h).CopyTo(new Span<float>(x + ((long)i * combined) + features, h));
        }

        _combined.Run(x, m, t);
        _input.Run(t, m, x);
        for (int j = 0; j < _blocks.Length; j++)
        {
            var (norm, up, down, dimChange) = _blocks[j];
            int din = _layout.BlockDims[j], dout = _layout.BlockDims[j + 1];
            LayerNorm(x, m, din, din, norm, t);
            up.Run(t, m, u);
            Gelu(u, (long)m * din * c.ExpansionFactor);
            down.Run(u, m, t);
            float* residual = x;
            if (dimChange is { } change)
            {
                change.Run(x, m, r);
                residual = r;
            }

            for (long e = 0; e < (long)m * dout; e++)
            {
                x[e] = residual[e] + t[e];
            }
        }

        int last = _layout.BlockDims[^1];
        LayerNorm(x, m, last, last, _outputNorm, t);
        _output.Run(t, m, u);
        var probabilities = new double[m];
        for (int i = 0; i < m; i++)
        {
            // Rounded to fp32 as torch's sigmoid of an fp32 logit is.
            probabilities[i] = (float)(1 / (1 + Math.Exp(-u[i])));
        }

        return probabilities;
    }

    /// <summary><paramref name="rows"/> rows of <paramref name="width"/> from a 2-D tensor into rows <paramref name="stride"/> apart.</summary>
    private static void CopyRows(Tensor source, int rows, int width, float* target, int stride)
    {
        bool direct = source.dtype == ScalarType.Float32 && source.device_type == DeviceType.CPU && source.is_contiguous();
        using var values = direct ? null : source.to(ScalarType.Float32, CPU).contiguous();
        float* p = TensorMemory.Pointer<float>(values ?? source);
        for (int i = 0; i < rows; i++)
        {
            new ReadOnlySpan<float>(p + ((long)i * width), width).CopyTo(new Span<float>(target + ((long)i * stride), width));
        }
    }

    /// <summary>torch.nn.LayerNorm over <paramref name="width"/> entries of rows <paramref name="stride"/> apart, into rows of <paramref name="width"/> (in place when output is input and the strides agree).</summary>
    private static void LayerNorm(float* input, int rows, int width, int stride, Norm norm, float* output)
    {
        float* weight = norm.Weight, bias = norm.Bias;
        int outStride = output == input ? stride : width;
        var gamma = new ReadOnlySpan<float>(weight, width);
        var beta = new ReadOnlySpan<float>(bias, width);
        for (int i = 0; i < rows; i++)
        {
            var row = new ReadOnlySpan<float>(input + ((long)i * stride), width);
            var target = new Span<float>(output + ((long)i * outStride), width);
            float mean = TensorPrimitives.Sum(row) / width;
            TensorPrimitives.Subtract(row, mean, target);
            float scale = 1 / MathF.Sqrt((TensorPrimitives.SumOfSquares(target) / width) + (float)LayerNormEps);
            TensorPrimitives.Multiply(target, scale, target);
            TensorPrimitives.FusedMultiplyAdd(target, gamma, beta, target);
        }
    }

    private static void SoftMax(Span<float> values)
    {
        float max = float.NegativeInfinity;
        foreach (float value in values)
        {
            max = Math.Max(max, value);
        }

        double total = 0;
        for (int e = 0; e < values.Length; e++)
        {
            double w = Math.Exp(values[e] - max);
            values[e] = (float)w;
            total += w;
        }

        for (int e = 0; e < values.Length; e++)
        {
            values[e] = (float)(values[e] / total);
        }
    }

    /// <summary>
    /// GELU with the exact erf (torch's default), in place: in fp64 vectors (12,288 values a token
    /// at the 0.6B shape; one at a time they took a third of a millisecond), the tail scalar.
    /// </summary>
    internal static void Gelu(Span<float> span)
    {
        fixed (float* values = span)
        {
            Gelu(values, span.Length);
        }
    }

    private static void Gelu(float* values, long count)
    {
        long e = 0;
        if (Vector.IsHardwareAccelerated)
        {
            for (; e + Vector<float>.Count <= count; e += Vector<float>.Count)
            {
                Vector.Widen(Vector.Load(values + e), out var low, out var high);
                Vector.Narrow(Gelu(low), Gelu(high)).Store(values + e);
            }
        }

        for (; e < count; e++)
        {
            double x = values[e];
            values[e] = (float)(0.5 * x * (1 + Erf(x * 0.70710678118654752)));
        }
    }

    /// <summary><see cref="Erf(double)"/>'s formula, lane by lane.</summary>
    private static Vector<double> Gelu(Vector<double> x)
    {
        var one = Vector<double>.One;
        var z = Vector.Abs(x * 0.70710678118654752);
        var t = one / (one + (z * 0.5));
        var poly = Vector<double>.Zero;
        for (int i = ErfCoefficients.Length - 1; i >= 0; i--)
        {
            poly = (poly * t) + new Vector<double>(ErfCoefficients[i]);
        }

        var erfc = t * Vector.Exp(poly - (z * z));
        var erf = Vector.ConditionalSelect(Vector.GreaterThanOrEqual(x, Vector<double>.Zero), one - erfc, erfc - one);
        return x * 0.5 * (one + erf);
    }

    /// <summary>
    /// erf to within 1.2e-7 relative (Numerical Recipes' erfc: a Chebyshev fit of
    /// <c>erfc(z) = t exp(-z^2 + P(t))</c>, <c>t = 1 / (1 + z/2)</c>), below fp32's own rounding of
    /// the GELU it feeds.
    /// </summary>
    internal static double Erf(double x)
    {
        double z = Math.Abs(x), t = 1 / (1 + (0.5 * z)), poly = 0;
        for (int i = ErfCoefficients.Length - 1; i >= 0; i--)
        {
            poly = (poly * t) + ErfCoefficients[i];
        }

        double erfc = t * Math.Exp(-(z * z) + poly);
        return x >= 0 ? 1 - erfc : erfc - 1;
    }

    private static readonly double[] ErfCoefficients =
        [-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807, -1.13520398, 1.48851587, -0.82215223, 0.17087277];

    /// <summary>A linear layer and its bias.</summary>
    private readonly struct Layer(KernelWeight weight, float* bias)
    {
        private readonly float* _bias = bias;

        public void Run(float* input, int rows, float* output) => weight.Multiply(input, rows, output, _bias);
    }

    /// <summary>A LayerNorm's scale and shift.</summary>
    private readonly struct Norm(float* weight, float* bias)
    {
        public float* Weight { get; } = weight;

        public float* Bias { get; } = bias;
    }

    /// <summary>Five buffers of a thread's rows, kept between calls (engines on other threads get their own).</summary>
    private sealed class Scratch
    {
        [ThreadStatic]
        private static Scratch? _forThread;

        private readonly NativeScratch[] _buffers = [new(), new(), new(), new(), new()];
        private readonly float*[] _pointers = new float*[5];

        public static Scratch ForThread => _forThread ??= new Scratch();

        public float* this[int i] => _pointers[i];

        public void Reserve(long floats)
        {
            for (int i = 0; i < _buffers.Length; i++)
            {
                _pointers[i] = _buffers[i].Reserve(floats);
            }
        }
    }
}
