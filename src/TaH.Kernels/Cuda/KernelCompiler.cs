using System.Reflection;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;

namespace TaH.Kernels.Cuda;

/// <summary>One compiled module: PTX (for a virtual architecture) or a cubin (for a real one).</summary>
public sealed record CompiledModule(string Name, byte[] Image, bool IsCubin, string Log);

/// <summary>
/// The kernel sources (embedded <c>.cu</c> files) and their compilation with NVRTC. A module is
/// <c>common.cuh</c> followed by one <c>.cu</c> file, built with the given defines; no CUDA header
/// is needed, so Debian's libnvrtc11.2 alone can build every kernel.
/// </summary>
public static class KernelCompiler
{
    /// <summary>The kernel files in the assembly, by name (e.g. <c>paged_attention.cu</c>).</summary>
    public static IReadOnlyList<string> Modules { get; } =
        [.. typeof(KernelCompiler).Assembly.GetManifestResourceNames()
            .Where(n => n.StartsWith("tah-kernels/", StringComparison.Ordinal) && n.EndsWith(".cu", StringComparison.Ordinal))
            .Select(n => n["tah-kernels/".Length..])
            .Order(StringComparer.Ordinal)];

    public static string Source(string file)
    {
        using var stream = typeof(KernelCompiler).Assembly.GetManifestResourceStream("tah-kernels/" + file)
            ?? throw new ArgumentException($"no kernel source '{file}'", nameof(file));
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }

    /// <summary>The NVRTC version, e.g. (11, 8).</summary>
    public static (int Major, int Minor) NvrtcVersion()
    {
        CudaNative.CheckRtc(CudaNative.nvrtcVersion(out int major, out int minor), "nvrtcVersion");
        return (major, minor);
    }

    /// <summary>
    /// Compiles <paramref name="file"/> for <paramref name="arch"/>: <c>compute_90</c> gives PTX,
    /// <c>sm_90</c> a cubin. Fails with NVRTC's log.
    /// </summary>
    public static unsafe CompiledModule Compile(string file, string arch, IEnumerable<string> defines)
    {
        string text = Source("common.cuh") + "\n#line 1 \"" + file + "\"\n" + Source(file);
        var options = new List<string> { $"--gpu-architecture={arch}", "-std=c++17", "-lineinfo" };
        options.AddRange(defines.Select(d => "-D" + d));

        var sourceBytes = Encoding.UTF8.GetBytes(text + "\0");
        var nameBytes = Encoding.UTF8.GetBytes(file + "\0");
        var optionBytes = options.Select(o => Encoding.UTF8.GetBytes(o + "\0")).ToArray();
        var handles = optionBytes.Select(b => GCHandle.Alloc(b, GCHandleType.Pinned)).ToArray();
        try
        {
            var pointers = stackalloc byte*[optionBytes.Length];
            for (int i = 0; i < handles.Length; i++)
            {
                pointers[i] = (byte*)handles[i].AddrOfPinnedObject();
            }

            IntPtr program;
            fixed (byte* src = sourceBytes, name = nameBytes)
            {
                CudaNative.CheckRtc(CudaNative.nvrtcCreateProgram(out program, src, name, 0, null, null), "nvrtcCreateProgram");
            }

            try
            {
                int result = CudaNative.nvrtcCompileProgram(program, optionBytes.Length, pointers);
                CudaNative.CheckRtc(CudaNative.nvrtcGetProgramLogSize(program, out nuint logSize), "nvrtcGetProgramLogSize");
                var logBytes = new byte[(int)logSize + 1];
                fixed (byte* log = logBytes)
                {
                    CudaNative.CheckRtc(CudaNative.nvrtcGetProgramLog(program, log), "nvrtcGetProgramLog");
                }

                string logText = Encoding.UTF8.GetString(logBytes).TrimEnd('\0').Trim();
                if (result != 0)
                {
                    throw new CudaException($"NVRTC could not compile {file} ({string.Join(' ', options)}):\n{logText}");
                }

                bool cubin = arch.StartsWith("sm_", StringComparison.Ordinal);
                nuint size;
                CudaNative.CheckRtc(cubin ? CudaNative.nvrtcGetCUBINSize(program, out size) : CudaNative.nvrtcGetPTXSize(program, out size), "nvrtcGet*Size");
                var image = new byte[(int)size];
                fixed (byte* p = image)
                {
                    CudaNative.CheckRtc(cubin ? CudaNative.nvrtcGetCUBIN(program, p) : CudaNative.nvrtcGetPTX(program, p), "nvrtcGet*");
                }

                return new CompiledModule(file, image, cubin, logText);
            }
            finally
            {
                CudaNative.nvrtcDestroyProgram(ref program);
            }
        }
        finally
        {
            foreach (var h in handles)
            {
                h.Free();
            }
        }
    }

    /// <summary>
    /// <see cref="Compile"/> through a disk cache (<c>TAH_KERNEL_CACHE</c>, else
    /// <c>~/.cache/tah-kernels</c>) keyed by the source, options and NVRTC version, so a second
    /// process on the same device skips NVRTC.
    /// </summary>
    public static CompiledModule CompileCached(string file, string arch, IReadOnlyList<string> defines)
    {
        var (major, minor) = NvrtcVersion();
        string key = Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(
            $"{Source("common.cuh")}\n{Source(file)}\n{arch}\n{string.Join(";", defines)}\n{major}.{minor}\n{Assembly.GetExecutingAssembly().GetName().Version}")))[..24];
        string dir = Environment.GetEnvironmentVariable("TAH_KERNEL_CACHE") is { Length: > 0 } configured
            ? configured
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "tah-kernels");
        bool cubin = arch.StartsWith("sm_", StringComparison.Ordinal);
        string path = Path.Combine(dir, $"{Path.GetFileNameWithoutExtension(file)}-{arch}-{key}.{(cubin ? "cubin" : "ptx")}");
        try
        {
            if (File.Exists(path))
            {
                return new CompiledModule(file, File.ReadAllBytes(path), cubin, "");
            }
        }
        catch (IOException)
        {
            // An unreadable cache entry is rebuilt below.
        }

        var compiled = Compile(file, arch, defines);
        try
        {
            Directory.CreateDirectory(dir);
            string temp = path + "." + Environment.ProcessId + ".tmp";
            File.WriteAllBytes(temp, compiled.Image);
            File.Move(temp, path, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // A read-only home is no reason to fail: the module is simply compiled again next time.
        }

        return compiled;
    }
}
