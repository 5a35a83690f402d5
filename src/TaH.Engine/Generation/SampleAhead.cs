using TaH.Engine.Sampling;
using TaH.Engine.TaH;
using TaH.Kernels.Cpu;
using TorchSharp;

namespace TaH.Engine.Generation;

/// <summary>
/// The next token of a sequence, sampled on a kernel worker while the decider judges the position
/// its logits came from. Most positions stop at depth 1, and then the token stands (<see cref="Take"/>);
/// when the position goes deeper, disposing this sets the sampler's random stream back, so the
/// tokens a seed gives do not depend on whether a sample was taken ahead.
/// </summary>
internal sealed class SampleAhead : IDisposable
{
    private readonly Sampler _sampler;
    private readonly (ulong, ulong, ulong, ulong) _randomBefore;
    private readonly torch.Tensor _logits;
    private readonly SideTask _task;
    private LogitRows? _floats;
    private SampledToken _token;
    private bool _taken;

    private SampleAhead(Sequence sequence, int row, torch.Tensor logits, CpuWorkerPool pool)
    {
        Sequence = sequence;
        Row = row;
        _logits = logits;
        _sampler = sequence.Sampler;
        _randomBefore = _sampler.RandomState;
        _task = pool.Beside(Sample);
    }

    public Sequence Sequence { get; }

    /// <summary>The step row the logits belong to.</summary>
    public int Row { get; }

    /// <summary>The logits as floats, once <see cref="Take"/> has returned; valid until this is disposed.</summary>
    public ReadOnlyMemory<float> Logits => _floats![0];

    /// <summary>Starts the sample when the row's position is the one the sequence samples next (else disposes the logits).</summary>
    public static SampleAhead? Start(Sequence sequence, StepRow row, int index, torch.Tensor logits, CpuWorkerPool pool)
    {
        // n > 1 forks its samples off the prompt's last position: sampled as usual.
        bool next = sequence.Finished is null && sequence.IsLast(row.Position) && !(sequence.Request.N > 1 && sequence.GeneratedCount == 0);
        if (!next)
        {
            logits.Dispose();
            return null;
        }

        return new SampleAhead(sequence, index, logits, pool);
    }

    /// <summary>The token, for the position that stopped where the sample was taken.</summary>
    public SampledToken Take()
    {
        _task.Wait();
        _taken = true;
        return _token;
    }

    private void Sample()
    {
        _floats = new LogitRows([_logits]);
        _token = _sampler.Sample(_floats[0].Span, Sequence.Mask());
    }

    public void Dispose()
    {
        try
        {
            _task.Wait();
        }
        catch (AggregateException)
        {
            // A sample not taken failed (its position went deeper, or Take threw it already).
        }
        finally
        {
            if (!_taken)
            {
                _sampler.RandomState = _randomBefore;
            }

            _logits.Dispose();
            _floats?.Dispose();
        }
    }
}
