using System.Reflection;
using System.Runtime.InteropServices;

namespace TaH.Kernels.Cuda;

/// <summary>A CUDA driver or NVRTC call that failed, with the library's own words.</summary>
public sealed class CudaException(string message) : Exception(message);

/// <summary>
/// P/Invoke to the CUDA driver (libcuda), NVRTC and TorchSharp's bridge (for a tensor's data
/// pointer). The libraries are found at first use: NVRTC under whichever soname the machine
/// has (13, 12 or Debian's 11.2), or the file named by <c>TAH_NVRTC</c>.
/// </summary>
internal static unsafe partial class CudaNative
{
    private const string Driver = "tah-cuda";
    private const string Rtc = "tah-nvrtc";
    private const string Bridge = "tah-torchsharp";

    static CudaNative() => NativeLibrary.SetDllImportResolver(typeof(CudaNative).Assembly, Resolve);

    private static IntPtr Resolve(string name, Assembly assembly, DllImportSearchPath? path)
    {
        string[] candidates = name switch
        {
            Driver => ["libcuda.so.1", "libcuda.so"],
            Rtc => [.. NvrtcCandidates()],
            Bridge => [],
            _ => [],
        };
        if (name == Bridge)
        {
            return NativeLibrary.Load("LibTorchSharp", typeof(TorchSharp.torch).Assembly, null);
        }

        foreach (string candidate in candidates)
        {
            if (NativeLibrary.TryLoad(candidate, out var handle))
            {
                return handle;
            }
        }

        return IntPtr.Zero;
    }

    private static IEnumerable<string> NvrtcCandidates()
    {
        if (Environment.GetEnvironmentVariable("TAH_NVRTC") is { Length: > 0 } file)
        {
            yield return file;
        }

        yield return "libnvrtc.so.13";
        yield return "libnvrtc.so.12";
        yield return "libnvrtc.so.11.2";
        yield return "libnvrtc.so";
    }

    /// <summary>Whether NVRTC can be loaded on this machine.</summary>
    public static bool TryLoadNvrtc(out string? problem)
    {
        foreach (string candidate in NvrtcCandidates())
        {
            if (NativeLibrary.TryLoad(candidate, out var handle))
            {
                NativeLibrary.Free(handle);
                problem = null;
                return true;
            }
        }

        problem = "libnvrtc was not found (install Debian's libnvrtc11.2 from non-free, or set TAH_NVRTC)";
        return false;
    }

    // ---- driver ----
    [LibraryImport(Driver)] public static partial int cuInit(uint flags);
    [LibraryImport(Driver)] public static partial int cuDeviceGetCount(out int count);
    [LibraryImport(Driver)] public static partial int cuDeviceGet(out int device, int ordinal);
    [LibraryImport(Driver)] public static partial int cuDeviceGetAttribute(out int value, int attribute, int device);
    [LibraryImport(Driver)] public static partial int cuDeviceGetName(byte* name, int length, int device);
    [LibraryImport(Driver)] public static partial int cuDevicePrimaryCtxRetain(out IntPtr context, int device);
    [LibraryImport(Driver)] public static partial int cuCtxSetCurrent(IntPtr context);
    [LibraryImport(Driver)] public static partial int cuCtxGetCurrent(out IntPtr context);
    [LibraryImport(Driver)] public static partial int cuCtxSynchronize();
    [LibraryImport(Driver)] public static partial int cuModuleLoadData(out IntPtr module, byte* image);
    [LibraryImport(Driver)] public static partial int cuModuleGetFunction(out IntPtr function, IntPtr module, [MarshalAs(UnmanagedType.LPUTF8Str)] string name);
    [LibraryImport(Driver)] public static partial int cuFuncSetAttribute(IntPtr function, int attribute, int value);
    [LibraryImport(Driver)] public static partial int cuFuncGetAttribute(out int value, int attribute, IntPtr function);
    [LibraryImport(Driver)] public static partial int cuLaunchKernel(IntPtr function, uint gridX, uint gridY, uint gridZ, uint blockX, uint blockY, uint blockZ, uint sharedBytes, IntPtr stream, void** args, void** extra);
    [LibraryImport(Driver, EntryPoint = "cuMemAlloc_v2")] public static partial int cuMemAlloc(out IntPtr pointer, nuint bytes);
    [LibraryImport(Driver, EntryPoint = "cuMemFree_v2")] public static partial int cuMemFree(IntPtr pointer);
    [LibraryImport(Driver, EntryPoint = "cuMemcpyHtoD_v2")] public static partial int cuMemcpyHtoD(IntPtr destination, void* source, nuint bytes);
    [LibraryImport(Driver, EntryPoint = "cuMemcpyDtoH_v2")] public static partial int cuMemcpyDtoH(void* destination, IntPtr source, nuint bytes);
    [LibraryImport(Driver, EntryPoint = "cuMemcpyDtoD_v2")] public static partial int cuMemcpyDtoD(IntPtr destination, IntPtr source, nuint bytes);
    [LibraryImport(Driver, EntryPoint = "cuMemsetD8_v2")] public static partial int cuMemsetD8(IntPtr pointer, byte value, nuint count);
    [LibraryImport(Driver)] public static partial int cuEventCreate(out IntPtr evt, uint flags);
    [LibraryImport(Driver)] public static partial int cuEventRecord(IntPtr evt, IntPtr stream);
    [LibraryImport(Driver)] public static partial int cuEventSynchronize(IntPtr evt);
    [LibraryImport(Driver)] public static partial int cuEventElapsedTime(out float milliseconds, IntPtr start, IntPtr end);
    [LibraryImport(Driver)] public static partial int cuEventDestroy(IntPtr evt);
    [LibraryImport(Driver)] public static partial int cuGetErrorString(int error, out IntPtr text);
    [LibraryImport(Driver)] public static partial int cuDriverGetVersion(out int version);

    // ---- NVRTC ----
    [LibraryImport(Rtc)] public static partial int nvrtcVersion(out int major, out int minor);
    [LibraryImport(Rtc)] public static partial int nvrtcCreateProgram(out IntPtr program, byte* source, byte* name, int headers, byte** headerSources, byte** headerNames);
    [LibraryImport(Rtc)] public static partial int nvrtcCompileProgram(IntPtr program, int options, byte** optionValues);
    [LibraryImport(Rtc)] public static partial int nvrtcGetProgramLogSize(IntPtr program, out nuint size);
    [LibraryImport(Rtc)] public static partial int nvrtcGetProgramLog(IntPtr program, byte* log);
    [LibraryImport(Rtc)] public static partial int nvrtcGetPTXSize(IntPtr program, out nuint size);
    [LibraryImport(Rtc)] public static partial int nvrtcGetPTX(IntPtr program, byte* ptx);
    [LibraryImport(Rtc)] public static partial int nvrtcGetCUBINSize(IntPtr program, out nuint size);
    [LibraryImport(Rtc)] public static partial int nvrtcGetCUBIN(IntPtr program, byte* cubin);
    [LibraryImport(Rtc)] public static partial int nvrtcDestroyProgram(ref IntPtr program);
    [LibraryImport(Rtc)] public static partial IntPtr nvrtcGetErrorString(int result);

    // ---- TorchSharp's bridge: at::Tensor::data_ptr() of a tensor handle ----
    [LibraryImport(Bridge)] public static partial IntPtr THSTensor_data(IntPtr tensor);

    /// <summary>Throws with the driver's message when <paramref name="result"/> is not CUDA_SUCCESS.</summary>
    public static void Check(int result, string what)
    {
        if (result == 0)
        {
            return;
        }

        string text = cuGetErrorString(result, out var p) == 0 && p != IntPtr.Zero ? Marshal.PtrToStringUTF8(p) ?? "" : "";
        throw new CudaException($"{what} failed: CUDA error {result} {text}");
    }

    public static void CheckRtc(int result, string what)
    {
        if (result != 0)
        {
            throw new CudaException($"{what} failed: NVRTC error {result} {Marshal.PtrToStringUTF8(nvrtcGetErrorString(result))}");
        }
    }
}
