using System.Runtime.Intrinsics;
using TorchSharp;
using static TorchSharp.torch;

namespace TaH.Kernels.Cpu;

/// <summary>
/// The k largest entries of each row, as <c>torch.topk(k)</c> returns them (descending; among
/// equal values the lower index first), in one pass: a k-entry min-heap whose root is the bar a
/// value must clear, the row scanned 8 at a time against it. For k = 100 of a 151,936-entry
/// vocabulary the heap changes a few hundred times, so the pass runs at memory speed, where
/// torch's CPU topk takes about a millisecond per row.
/// </summary>
public static unsafe class CpuTopK
{
    public static (Tensor Values, Tensor Indices) Select(Tensor rows, int k)
    {
        if (rows.dtype != ScalarType.Float32 || rows.device_type != DeviceType.CPU || rows.dim() != 2 || k < 1 || k > rows.shape[1])
        {
            return rows.topk(k);
        }

        using var input = rows.contiguous();
        long count = rows.shape[0];
        int n = (int)rows.shape[1];
        var values = empty(count, k, dtype: ScalarType.Float32);
        var indices = empty(count, k, dtype: ScalarType.Int64);
        float* source = TensorMemory.Pointer<float>(input), topValues = TensorMemory.Pointer<float>(values);
        long* topIndices = TensorMemory.Pointer<long>(indices);
        var heap = new (float Value, int Index)[k];
        for (long r = 0; r < count; r++)
        {
            SelectRow(source + (r * n), n, heap);
            // Descending by value, ascending by index among equals.
            Array.Sort(heap, static (a, b) => a.Value != b.Value ? b.Value.CompareTo(a.Value) : a.Index.CompareTo(b.Index));
            for (int j = 0; j < k; j++)
            {
                topValues[(r * k) + j] = heap[j].Value;
                topIndices[(r * k) + j] = heap[j].Index;
            }
        }

        return (values, indices);
    }

    private static void SelectRow(float* row, int n, (float Value, int Index)[] heap)
    {
        int k = heap.Length;
        for (int i = 0; i < k; i++)
        {
            heap[i] = (row[i], i);
        }

        for (int i = (k / 2) - 1; i >= 0; i--)
        {
            SiftDown(heap, i);
        }

        int next = k;
        for (; next + 8 <= n; next += 8)
        {
            if (Vector256.GreaterThanAny(Vector256.Load(row + next), Vector256.Create(heap[0].Value)))
            {
                for (int i = next; i < next + 8; i++)
                {
                    Offer(heap, row[i], i);
                }
            }
        }

        for (; next < n; next++)
        {
            Offer(heap, row[next], next);
        }
    }

    /// <summary>A later index displaces the root only with a strictly larger value (lower index first among equals).</summary>
    private static void Offer((float Value, int Index)[] heap, float value, int index)
    {
        if (value > heap[0].Value)
        {
            heap[0] = (value, index);
            SiftDown(heap, 0);
        }
    }

    /// <summary>Min-heap on value; among equal values the higher index is "smaller" (leaves first).</summary>
    private static void SiftDown((float Value, int Index)[] heap, int i)
    {
        int n = heap.Length;
        while (true)
        {
            int smallest = i, left = (2 * i) + 1, right = left + 1;
            if (left < n && Below(heap[left], heap[smallest]))
            {
                smallest = left;
            }

            if (right < n && Below(heap[right], heap[smallest]))
            {
                smallest = right;
            }

            if (smallest == i)
            {
                return;
            }

            (heap[i], heap[smallest]) = (heap[smallest], heap[i]);
            i = smallest;
        }
    }

    private static bool Below((float Value, int Index) a, (float Value, int Index) b) =>
        a.Value < b.Value || (a.Value == b.Value && a.Index > b.Index);
}
