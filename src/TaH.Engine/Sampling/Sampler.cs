using System.Buffers.Binary;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using TaH.Engine.Constraints;

namespace TaH.Engine.Sampling;

/// <summary>
/// Picks the next token of one sequence from the model's final logits. Holds the sequence's random
/// stream and the counts of generated tokens, and reuses its buffers across calls. Not thread-safe.
/// </summary>
/// <remarks>
/// Per call: <see cref="Sample"/> the logits, then <see cref="Accept"/> the token the sequence
/// actually continues with, so that presence/frequency/repetition penalties see it. Sample does not
/// record its choice itself: the engine may reject it (stop sequences, length) or force a token.
/// Processing order: the constraint's mask (tokens it does not allow become impossible, and stay so:
/// penalties leave them alone), penalties (repetition, frequency, presence, as vLLM v1), temperature,
/// top-k, top-p, min-p, then a draw. (vLLM v1 applies min-p before top-k/top-p; here min-p filters the
/// top-p set, as vLLM v0 and HF do.) Top-k keeps exactly k tokens, ties to the lower id. Only
/// temperature 0 is greedy: the argmax after penalties, ties to the lowest id.
/// </remarks>
public sealed class Sampler
{
    private readonly Xoshiro256StarStar _rng;
    private readonly HashSet<int> _promptTokens;
    private readonly Dictionary<int, int> _outputCounts = [];
    // Vocabulary-sized work buffers, the calling thread's (see Scratch), taken at the start of each call.
    private float[] _logits = [];
    private float[] _weights = [];
    private int[] _candidates = [];
    private int[] _identity = [];
    // What Filter left for Draw: the kept ids (_candidates, or every id in order).
    private int[] _kept = [];
    // exp(l - max) of the unmodified logits, from LogSumExp, and its sum: the weights at temperature 1.
    private bool _rawWeights;
    private double _rawTotal;

    /// <param name="parameters">In range (the engine's AdmissionGate validates them once, per request).</param>
    /// <param name="promptTokenIds">The prompt, for the repetition penalty.</param>
    public Sampler(SamplingParams parameters, ReadOnlySpan<int> promptTokenIds)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        Parameters = parameters;
        Seed = parameters.Seed ?? RandomSeed();
        _rng = new Xoshiro256StarStar(unchecked((ulong)Seed));

        _promptTokens = [];
        foreach (var id in promptTokenIds)
        {
            if (id < 0)
            {
                throw new ArgumentOutOfRangeException(nameof(promptTokenIds), id, "Token ids must be >= 0.");
            }

            // Only the repetition penalty looks at the prompt.
            if (parameters.RepetitionPenalty != 1f)
            {
                _promptTokens.Add(id);
            }
        }
    }

    public SamplingParams Parameters { get; }

    /// <summary>The seed in use: the requested one, or the one drawn for an unseeded request.</summary>
    public long Seed { get; }

    /// <summary>
    /// Where the random stream stands. Setting it back undoes the draws of samples the engine did
    /// not use (one taken ahead for a position that then went deeper), so a seed gives the same
    /// tokens either way.
    /// </summary>
    internal (ulong, ulong, ulong, ulong) RandomState
    {
        get => _rng.State;
        set => _rng.State = value;
    }

    /// <summary>Number of tokens passed to <see cref="Accept"/>.</summary>
    public int GeneratedCount { get; private set; }

    /// <summary>Records a token the sequence continues with, for the penalties of later calls.</summary>
    public void Accept(int tokenId)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(tokenId);
        CollectionsMarshal.GetValueRefOrAddDefault(_outputCounts, tokenId, out _)++;
        GeneratedCount++;
    }

    /// <summary>
    /// Chooses a token from the logits of the next position (one value per vocabulary entry),
    /// among those <paramref name="mask"/> allows when one is given.
    /// </summary>
    /// <exception cref="InvalidOperationException">A logit is NaN or infinite, or the mask allows nothing.</exception>
    public SampledToken Sample(ReadOnlySpan<float> logits, TokenMask? mask = null)
    {
        var logNormalizer = PrepareLogits(logits, mask);
        var processed = _logits.AsSpan(0, logits.Length);

        int token;
        if (Parameters.IsGreedy)
        {
            token = ArgMax(processed);
        }
        else
        {
            var n = Filter(logits.Length);
            token = Draw(n);
        }

        var topLogprobs = Parameters.Logprobs is { } count ? TopLogprobs(logits, count, logNormalizer) : null;
        return new SampledToken(token, ToLogprob(logits[token], logNormalizer), topLogprobs);
    }

    /// <summary>
    /// The distribution <see cref="Sample"/> draws from for these logits, as (token, probability)
    /// sorted by token id. Does not advance the random stream. For tests.
    /// </summary>
    internal (int TokenId, double Probability)[] FilteredDistribution(ReadOnlySpan<float> logits, TokenMask? mask = null)
    {
        PrepareLogits(logits, mask);
        if (Parameters.IsGreedy)
        {
            return [(ArgMax(_logits.AsSpan(0, logits.Length)), 1.0)];
        }

        var n = Filter(logits.Length);
        double total = 0;
        foreach (var id in _kept.AsSpan(0, n))
        {
            total += _weights[id];
        }

        var result = new (int TokenId, double Probability)[n];
        for (var i = 0; i < n; i++)
        {
            var id = _kept[i];
            result[i] = (id, _weights[id] / total);
        }

        Array.Sort(result);
        return result;
    }

    /// <summary>
    /// Checks the logits, copies them into the work buffer with the mask and penalties applied, and
    /// returns the log of the raw softmax normalizer (for raw logprobs).
    /// </summary>
    private double PrepareLogits(ReadOnlySpan<float> logits, TokenMask? mask)
    {
        if (logits.IsEmpty)
        {
            throw new ArgumentException("The logits are empty.", nameof(logits));
        }

        (_logits, _weights, _candidates, _identity) = Scratch.For(logits.Length);

        var logNormalizer = LogSumExp(logits, _weights, out _rawTotal);
        _rawWeights = mask is null && !PenalisesAnything;

        logits.CopyTo(_logits);
        if (mask is not null)
        {
            if (mask.Count == 0)
            {
                throw new InvalidOperationException("The constraint allows no token here; refusing to sample.");
            }

            mask.Apply(_logits);
        }

        ApplyPenalties(_logits);
        return logNormalizer;
    }

    private bool PenalisesAnything => Parameters.RepetitionPenalty != 1f || Parameters.FrequencyPenalty != 0f || Parameters.PresencePenalty != 0f;

    private void ApplyPenalties(float[] logits)
    {
        var repetition = Parameters.RepetitionPenalty;
        var frequency = Parameters.FrequencyPenalty;
        var presence = Parameters.PresencePenalty;

        if (repetition != 1f)
        {
            foreach (var id in _promptTokens)
            {
                Repeat(logits, id, repetition, "prompt");
            }

            foreach (var id in _outputCounts.Keys)
            {
                if (!_promptTokens.Contains(id))
                {
                    Repeat(logits, id, repetition, "generated");
                }
            }
        }

        if (frequency == 0f && presence == 0f)
        {
            return;
        }

        foreach (var (id, count) in _outputCounts)
        {
            CheckInVocabulary(logits, id, "generated");
            if (float.IsNegativeInfinity(logits[id]))
            {
                continue; // masked out
            }

            // Two steps, as vLLM does: frequency times count, then presence once.
            var value = logits[id] - (frequency * count);
            value -= presence;
            logits[id] = Math.Clamp(value, -float.MaxValue, float.MaxValue);
        }
    }

    private static void Repeat(float[] logits, int id, float penalty, string source)
    {
        CheckInVocabulary(logits, id, source);
        var value = logits[id];
        if (float.IsNegativeInfinity(value))
        {
            return; // masked out: the clamp below would make it possible again
        }

        value = value > 0f ? value / penalty : value * penalty;
        // A tiny penalty can overflow; keep the logit finite so the softmax stays defined.
        logits[id] = Math.Clamp(value, -float.MaxValue, float.MaxValue);
    }

    private static void CheckInVocabulary(float[] logits, int id, string source)
    {
        if (id >= logits.Length)
        {
            throw new ArgumentException(
                $"The {source} token id {id} is outside the vocabulary of {logits.Length} logits.", "logits");
        }
    }

    /// <summary>
    /// Applies temperature, top-k, top-p and min-p to the penalised logits. Leaves the kept token ids
    /// in _kept[..n] (returns n, at least 1) with their unnormalised probabilities in _weights.
    /// </summary>
    private int Filter(int vocab)
    {
        // Every id in order until a filter picks some; only a filter needs them in _candidates.
        var ids = _candidates.AsSpan(0, vocab);
        bool filtering = (Parameters.TopK > 0 && Parameters.TopK < vocab) || Parameters.TopP < 1f || Parameters.MinP > 0f;
        _kept = filtering ? _candidates : _identity;
        if (filtering)
        {
            _identity.AsSpan(0, vocab).CopyTo(ids);
        }

        var n = vocab;
        var topK = Parameters.TopK;
        if (topK > 0 && topK < vocab)
        {
            CandidateSelection.SelectTop(ids, n, topK, _logits);
            n = topK;
        }

        // Weights relative to the most probable token (whose weight is exactly 1): exp((l - max) / T).
        var temperature = Parameters.Temperature;
        double total;
        if (n == vocab && temperature == 1f && _rawWeights)
        {
            // Exactly what the branch below computes (x / 1 is x): LogSumExp left it there.
            total = _rawTotal;
        }
        else if (n == vocab)
        {
            // The whole vocabulary, in id order: vectorised over the buffers.
            var weights = _weights.AsSpan(0, vocab);
            TensorPrimitives.Subtract(_logits.AsSpan(0, vocab), TensorPrimitives.Max(_logits.AsSpan(0, vocab)), weights);
            TensorPrimitives.Divide(weights, temperature, weights);
            TensorPrimitives.Exp(weights, weights);
            total = SumInDouble(weights);
        }
        else
        {
            var max = float.NegativeInfinity;
            foreach (var id in ids[..n])
            {
                max = Math.Max(max, _logits[id]);
            }

            total = 0;
            foreach (var id in ids[..n])
            {
                var weight = MathF.Exp((_logits[id] - max) / temperature);
                _weights[id] = weight;
                total += weight;
            }
        }

        if (Parameters.TopP < 1f)
        {
            n = CandidateSelection.SelectTopMass(ids, n, _logits, _weights, Parameters.TopP * total);
        }

        // p >= min_p * p_max is weight >= min_p, since the weight of the top token is 1.
        var minP = Parameters.MinP;
        if (minP > 0f)
        {
            var kept = 0;
            foreach (var id in ids[..n])
            {
                if (_weights[id] >= minP)
                {
                    ids[kept++] = id;
                }
            }

            n = kept;
        }

        return n;
    }

    private int Draw(int n)
    {
        var ids = _kept.AsSpan(0, n);
        double total = 0;
        foreach (var id in ids)
        {
            total += _weights[id];
        }

        var u = _rng.NextDouble() * total;
        double cumulative = 0;
        var last = ids[0];
        foreach (var id in ids)
        {
            var weight = _weights[id];
            if (weight == 0f)
            {
                continue;
            }

            cumulative += weight;
            last = id;
            if (cumulative > u)
            {
                return id;
            }
        }

        // Only reached when u rounds up to the total.
        return last;
    }

    private static int ArgMax(ReadOnlySpan<float> values)
    {
        var best = 0;
        for (var i = 1; i < values.Length; i++)
        {
            if (values[i] > values[best])
            {
                best = i;
            }
        }

        return best;
    }

    /// <summary>
    /// log(sum(exp(logits))), summed in double; rejects NaN and infinite logits. Leaves
    /// exp(logit - max) in <paramref name="scratch"/> and their sum in <paramref name="total"/>.
    /// </summary>
    private static double LogSumExp(ReadOnlySpan<float> logits, Span<float> scratch, out double total)
    {
        // Max propagates NaN, so finite max and min mean every value is finite.
        float max = TensorPrimitives.Max(logits), min = TensorPrimitives.Min(logits);
        if (!float.IsFinite(max) || !float.IsFinite(min))
        {
            int i = 0;
            while (float.IsFinite(logits[i]))
            {
                i++;
            }

            throw new InvalidOperationException(
                $"The model produced a non-finite logit ({logits[i]}) for token {i}; refusing to sample.");
        }

        scratch = scratch[..logits.Length];
        TensorPrimitives.Subtract(logits, max, scratch);
        TensorPrimitives.Exp(scratch, scratch);
        total = SumInDouble(scratch);
        return max + Math.Log(total);
    }

    // Float partial sums over short runs, accumulated in double: vector speed, no drift over 150k terms.
    private static double SumInDouble(ReadOnlySpan<float> values)
    {
        const int Run = 1024;
        double sum = 0;
        for (int start = 0; start < values.Length; start += Run)
        {
            sum += TensorPrimitives.Sum(values.Slice(start, Math.Min(Run, values.Length - start)));
        }

        return sum;
    }

    /// <summary>The count most probable tokens by raw logit, best first, ties to the lower id.</summary>
    private static TokenLogprob[] TopLogprobs(ReadOnlySpan<float> logits, int count, double logNormalizer)
    {
        count = Math.Min(count, logits.Length);
        if (count == 0)
        {
            return [];
        }

        Span<int> best = stackalloc int[count];
        var filled = 0;
        for (var i = 0; i < logits.Length; i++)
        {
            var value = logits[i];
            int pos;
            if (filled < count)
            {
                pos = filled++;
            }
            else if (value > logits[best[count - 1]])
            {
                pos = count - 1;
            }
            else
            {
                continue;
            }

            // Shift past strictly smaller values only, so equal values keep the lower id first.
            for (; pos > 0 && logits[best[pos - 1]] < value; pos--)
            {
                best[pos] = best[pos - 1];
            }

            best[pos] = i;
        }

        var result = new TokenLogprob[count];
        for (var i = 0; i < count; i++)
        {
            result[i] = new TokenLogprob(best[i], ToLogprob(logits[best[i]], logNormalizer));
        }

        return result;
    }

    // Finite logits spanning more than the float range give a log-probability below float's; report
    // the lowest finite float rather than -inf, which JSON cannot carry.
    private static float ToLogprob(float logit, double logNormalizer) =>
        (float)Math.Max(logit - logNormalizer, -float.MaxValue);

    private static long RandomSeed()
    {
        Span<byte> bytes = stackalloc byte[8];
        RandomNumberGenerator.Fill(bytes);
        return BinaryPrimitives.ReadInt64LittleEndian(bytes);
    }

    /// <summary>
    /// Work buffers per thread, reused by every sampler that runs on it: one sampler each would
    /// allocate three vocabulary-sized arrays per request, large objects that only a full
    /// collection frees. A sampler runs on one thread at a time and uses them within one call.
    /// </summary>
    private static class Scratch
    {
        [ThreadStatic]
        private static (float[] Logits, float[] Weights, int[] Candidates, int[] Identity) _buffers;

        /// <summary>The buffers, and the ids 0 .. vocab - 1 in order.</summary>
        public static (float[] Logits, float[] Weights, int[] Candidates, int[] Identity) For(int vocab)
        {
            if (_buffers.Logits is null || _buffers.Logits.Length != vocab)
            {
                _buffers = (new float[vocab], new float[vocab], new int[vocab], [.. Enumerable.Range(0, vocab)]);
            }

            return _buffers;
        }
    }
}
