using TaH.Engine.Checkpoints;
using TorchSharp;

namespace TaH.Checkpoints.Writing;

/// <summary>Writes files in the format of PyTorch's torch.save, which TorchCheckpoint.Load reads back.</summary>
public static class TorchCheckpointWriter
{
    /// <summary>
    /// Writes <paramref name="payload"/> as torch.save does (protocol-2 pickle, storages under
    /// &lt;archive&gt;/data/N, uncompressed, 64-byte aligned), loadable by torch.load. Tensors are
    /// written contiguous, in their dtype, as CPU storages. The file is replaced atomically.
    /// </summary>
    public static void Save(string path, object? payload)
    {
        string archive = Path.GetFileNameWithoutExtension(path);
        if (archive.Length == 0)
        {
            archive = "archive";
        }

        var storages = new List<(string Key, torch.Tensor Data, bool Owned)>();
        try
        {
            byte[] pickle = PickleWriter.Write(payload, tensor =>
            {
                var data = TensorBytesWriter.ContiguousCpu(tensor, out bool owned);
                string key = storages.Count.ToString(System.Globalization.CultureInfo.InvariantCulture);
                storages.Add((key, data, owned));
                return new PickledStorage(key, TorchStorageTypes.ClassFor(tensor.dtype), tensor.NumberOfElements);
            });

            SafeTensorsWriter.WriteAtomically(path, stream =>
            {
                var zip = new ZipStoreWriter(stream, path);
                zip.Add($"{archive}/data.pkl", pickle);
                zip.Add($"{archive}/byteorder", "little"u8);
                // torch.save orders the storage records by key as strings.
                foreach (var (key, data, _) in storages.OrderBy(s => s.Key, StringComparer.Ordinal))
                {
                    zip.Add($"{archive}/data/{key}", data);
                }

                zip.Add($"{archive}/version", "3\n"u8);
                zip.Finish();
            });
        }
        finally
        {
            foreach (var (_, data, owned) in storages)
            {
                if (owned)
                {
                    data.Dispose();
                }
            }
        }
    }
}
