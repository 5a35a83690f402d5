using TaH.Kernels.Cpu;
using TorchSharp;
using static TorchSharp.torch;

namespace TaH.Kernels.Tests.Cpu;

public class CpuTopKTests
{
    [Theory]
    [InlineData(1, 151936, 100)]
    [InlineData(3, 1000, 7)]
    [InlineData(2, 13, 13)]
    public void DistinctValuesComeOutAsTorchTopkReturnsThem(int rows, int n, int k)
    {
        using var scope = NewDisposeScope();
        manual_seed(n + k);
        var x = randn(rows, n);
        var (ev, ei) = x.topk(k);
        var (av, ai) = CpuTopK.Select(x, k);
        Assert.Equal(ev.data<float>().ToArray(), av.data<float>().ToArray());
        Assert.Equal(ei.data<long>().ToArray(), ai.data<long>().ToArray());
    }

    [Fact]
    public void NamedRowsComeOutInTheirOrder()
    {
        using var scope = NewDisposeScope();
        manual_seed(7);
        var x = randn(5, 3000);
        int[] only = [3, 0, 4];
        var (ev, ei) = x.index_select(0, tensor(new long[] { 3, 0, 4 })).topk(20);
        var (av, ai) = CpuTopK.Select(x, 20, only);
        Assert.Equal(ev.data<float>().ToArray(), av.data<float>().ToArray());
        Assert.Equal(ei.data<long>().ToArray(), ai.data<long>().ToArray());
        Assert.Throws<ArgumentOutOfRangeException>(() => CpuTopK.Select(x, 20, [5]));
    }

    [Fact]
    public void AmongEqualValuesTheLowerIndexComesFirst()
    {
        using var scope = NewDisposeScope();
        // 3 at 5, 9 and 20; 2 everywhere else: the top 4 are the three 3s, then the 2 at index 0.
        var values = Enumerable.Repeat(2f, 40).ToArray();
        values[20] = values[9] = values[5] = 3f;
        var (v, i) = CpuTopK.Select(tensor(values).view(1, 40), 4);
        Assert.Equal(new[] { 3f, 3f, 3f, 2f }, v.data<float>().ToArray());
        Assert.Equal(new long[] { 5, 9, 20, 0 }, i.data<long>().ToArray());
    }

    [Theory]
    [InlineData(1, "ties")]
    [InlineData(5, "ties")]
    [InlineData(2, "clustered")]
    [InlineData(1, "constant")]
    public void TiesAndClustersComeOutInTheEnginesOrder(int rows, string shape)
    {
        using var scope = NewDisposeScope();
        manual_seed(rows);
        var x = shape switch
        {
            // Values in steps of 1/8 repeat hundreds of times, so many entries sit at the bar.
            "ties" => randn(rows, 151936).mul(4).round().div(8),
            // The whole top 100 inside one chunk, far from the others: the bar is far below it.
            "clustered" => randn(rows, 151936).index_put_(randn(rows, 100).add(10), TensorIndex.Colon, TensorIndex.Slice(70_000, 70_100)),
            // Every entry a candidate.
            _ => ones(rows, 151936),
        };
        using var pool = new CpuWorkerPool(3);
        var (ev, ei) = x.topk(100);
        var (av, ai) = CpuTopK.Select(x, 100, pool: pool);
        Assert.Equal(ev.data<float>().ToArray(), av.data<float>().ToArray());
        // torch's topk does not promise an order among ties; the engine's rule does: lower index first.
        var expected = Enumerable.Range(0, rows).SelectMany(r =>
        {
            var row = x[r].data<float>().ToArray();
            return Enumerable.Range(0, row.Length).OrderByDescending(i => row[i]).ThenBy(i => i).Take(100).Select(i => (long)i);
        }).ToArray();
        Assert.Equal(expected, ai.data<long>().ToArray());
    }
}
