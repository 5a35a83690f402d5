using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using System.Text;

namespace TaH.Kernels.Cuda;

/// <summary>
/// One GPU through the driver API, in its primary context: the context the CUDA runtime (and so
/// libtorch) uses, so device pointers of TorchSharp tensors are valid here. Kernels go to the
/// legacy default stream, which is the stream TorchSharp's ops run on: no extra synchronisation.
/// </summary>
public sealed class CudaDevice
{
    private static readonly ConcurrentDictionary<int, CudaDevice> Devices = new();
    private readonly ConcurrentDictionary<string, CudaModule> _modules = new();
    private readonly IntPtr _context;

    private CudaDevice(int ordinal)
    {
        CudaNative.Check(CudaNative.cuInit(0), "cuInit");
        CudaNative.Check(CudaNative.cuDeviceGet(out int device, ordinal), "cuDeviceGet");
        CudaNative.Check(CudaNative.cuDevicePrimaryCtxRetain(out _context, device), "cuDevicePrimaryCtxRetain");
        Ordinal = ordinal;
        Major = Attribute(device, 75);
        Minor = Attribute(device, 76);
        Multiprocessors = Attribute(device, 16);
        unsafe
        {
            var name = stackalloc byte[256];
            CudaNative.Check(CudaNative.cuDeviceGetName(name, 256, device), "cuDeviceGetName");
            Name = Marshal.PtrToStringUTF8((IntPtr)name) ?? "";
        }
    }

    public int Ordinal { get; }

    public string Name { get; }

    public int Major { get; }

    public int Minor { get; }

    public int Multiprocessors { get; }

    /// <summary>The device, its context made current on this thread.</summary>
    public static CudaDevice Get(int ordinal = 0)
    {
        var device = Devices.GetOrAdd(ordinal, o => new CudaDevice(o));
        device.MakeCurrent();
        return device;
    }

    /// <summary>Whether a CUDA driver and at least one device are present; the reason when not.</summary>
    public static bool IsAvailable(out string reason)
    {
        try
        {
            int result = CudaNative.cuInit(0);
            if (result != 0)
            {
                reason = $"cuInit returned CUDA error {result} (no usable NVIDIA driver or device)";
                return false;
            }

            CudaNative.Check(CudaNative.cuDeviceGetCount(out int count), "cuDeviceGetCount");
            reason = count > 0 ? "" : "the CUDA driver reports no device";
            return count > 0;
        }
        catch (DllNotFoundException)
        {
            reason = "libcuda.so.1 (the NVIDIA driver) is not installed";
            return false;
        }
    }

    public void MakeCurrent()
    {
        CudaNative.Check(CudaNative.cuCtxGetCurrent(out var current), "cuCtxGetCurrent");
        if (current != _context)
        {
            CudaNative.Check(CudaNative.cuCtxSetCurrent(_context), "cuCtxSetCurrent");
        }
    }

    public static void Synchronize() => CudaNative.Check(CudaNative.cuCtxSynchronize(), "cuCtxSynchronize");

    /// <summary>A module of <paramref name="file"/> built for this device with <paramref name="defines"/>, compiled once.</summary>
    public CudaModule Module(string file, params string[] defines)
    {
        string key = file + "|" + string.Join(";", defines);
        return _modules.GetOrAdd(key, _ =>
        {
            var compiled = KernelCompiler.CompileCached(file, $"sm_{Major}{Minor}", defines);
            return CudaModule.Load(compiled);
        });
    }

    private static int Attribute(int device, int attribute)
    {
        CudaNative.Check(CudaNative.cuDeviceGetAttribute(out int value, attribute, device), "cuDeviceGetAttribute");
        return value;
    }
}

/// <summary>A loaded module and its kernels.</summary>
public sealed class CudaModule
{
    private readonly IntPtr _module;
    private readonly ConcurrentDictionary<string, CudaKernel> _kernels = new();

    private CudaModule(IntPtr module, string name)
    {
        _module = module;
        Name = name;
    }

    public string Name { get; }

    internal static unsafe CudaModule Load(CompiledModule compiled)
    {
        var image = compiled.IsCubin ? compiled.Image : [.. compiled.Image, 0];
        IntPtr module;
        fixed (byte* p = image)
        {
            CudaNative.Check(CudaNative.cuModuleLoadData(out module, p), $"cuModuleLoadData({compiled.Name})");
        }

        return new CudaModule(module, compiled.Name);
    }

    public CudaKernel this[string name] => _kernels.GetOrAdd(name, n =>
    {
        CudaNative.Check(CudaNative.cuModuleGetFunction(out var f, _module, n), $"cuModuleGetFunction({Name}:{n})");
        return new CudaKernel(f, n);
    });
}

/// <summary>A kernel argument: the bits of one scalar or pointer.</summary>
public readonly struct KernelArg
{
    private KernelArg(ulong bits) => Bits = bits;

    internal ulong Bits { get; }

    public static implicit operator KernelArg(int value) => new((uint)value);

    public static implicit operator KernelArg(long value) => new((ulong)value);

    public static implicit operator KernelArg(float value) => new(BitConverter.SingleToUInt32Bits(value));

    public static implicit operator KernelArg(IntPtr value) => new((ulong)value);
}

/// <summary>A kernel function; launched on the legacy default stream.</summary>
public sealed class CudaKernel(IntPtr function, string name)
{
    private int _sharedLimit = 48 * 1024;

    public string Name { get; } = name;

    /// <summary>Registers per thread and local (spill) bytes per thread, from the driver.</summary>
    public (int Registers, int LocalBytes, int StaticShared) Resources()
    {
        CudaNative.Check(CudaNative.cuFuncGetAttribute(out int regs, 4, function), "cuFuncGetAttribute");
        CudaNative.Check(CudaNative.cuFuncGetAttribute(out int local, 3, function), "cuFuncGetAttribute");
        CudaNative.Check(CudaNative.cuFuncGetAttribute(out int shared, 1, function), "cuFuncGetAttribute");
        return (regs, local, shared);
    }

    public unsafe void Launch((uint X, uint Y, uint Z) grid, uint block, uint sharedBytes, params ReadOnlySpan<KernelArg> args)
    {
        if (grid.X == 0 || grid.Y == 0 || grid.Z == 0)
        {
            return;
        }

        if (sharedBytes > _sharedLimit)
        {
            // More than 48 KB of dynamic shared memory must be asked for per kernel.
            CudaNative.Check(CudaNative.cuFuncSetAttribute(function, 8, (int)sharedBytes), $"cuFuncSetAttribute({Name})");
            _sharedLimit = (int)sharedBytes;
        }

        var values = stackalloc ulong[args.Length];
        var pointers = stackalloc void*[args.Length];
        for (int i = 0; i < args.Length; i++)
        {
            values[i] = args[i].Bits;
            pointers[i] = &values[i];
        }

        CudaNative.Check(
            CudaNative.cuLaunchKernel(function, grid.X, grid.Y, grid.Z, block, 1, 1, sharedBytes, IntPtr.Zero, pointers, null),
            $"cuLaunchKernel({Name})");
    }
}

/// <summary>Device memory owned outside any framework (tests and benchmarks).</summary>
public sealed class DeviceBuffer : IDisposable
{
    private DeviceBuffer(IntPtr pointer, long bytes)
    {
        Pointer = pointer;
        Bytes = bytes;
    }

    public IntPtr Pointer { get; private set; }

    public long Bytes { get; }

    public static DeviceBuffer Allocate(long bytes)
    {
        CudaNative.Check(CudaNative.cuMemAlloc(out var p, (nuint)Math.Max(bytes, 16)), "cuMemAlloc");
        return new DeviceBuffer(p, bytes);
    }

    public static unsafe DeviceBuffer From<T>(ReadOnlySpan<T> data)
        where T : unmanaged
    {
        var buffer = Allocate((long)data.Length * sizeof(T));
        buffer.Upload(data);
        return buffer;
    }

    public unsafe void Upload<T>(ReadOnlySpan<T> data)
        where T : unmanaged
    {
        fixed (T* p = data)
        {
            CudaNative.Check(CudaNative.cuMemcpyHtoD(Pointer, p, (nuint)(data.Length * sizeof(T))), "cuMemcpyHtoD");
        }
    }

    public unsafe T[] Download<T>(long count)
        where T : unmanaged
    {
        var result = new T[count];
        fixed (T* p = result)
        {
            CudaNative.Check(CudaNative.cuMemcpyDtoH(p, Pointer, (nuint)(count * sizeof(T))), "cuMemcpyDtoH");
        }

        return result;
    }

    public void Fill(byte value) => CudaNative.Check(CudaNative.cuMemsetD8(Pointer, value, (nuint)Bytes), "cuMemsetD8");

    public void Dispose()
    {
        if (Pointer != IntPtr.Zero)
        {
            CudaNative.cuMemFree(Pointer);
            Pointer = IntPtr.Zero;
        }
    }
}

/// <summary>Times device work with events on the default stream.</summary>
public sealed class CudaTimer : IDisposable
{
    private readonly IntPtr _start;
    private readonly IntPtr _end;

    public CudaTimer()
    {
        CudaNative.Check(CudaNative.cuEventCreate(out _start, 0), "cuEventCreate");
        CudaNative.Check(CudaNative.cuEventCreate(out _end, 0), "cuEventCreate");
    }

    public void Start() => CudaNative.Check(CudaNative.cuEventRecord(_start, IntPtr.Zero), "cuEventRecord");

    /// <summary>Milliseconds since <see cref="Start"/>, after the device got there.</summary>
    public float Stop()
    {
        CudaNative.Check(CudaNative.cuEventRecord(_end, IntPtr.Zero), "cuEventRecord");
        CudaNative.Check(CudaNative.cuEventSynchronize(_end), "cuEventSynchronize");
        CudaNative.Check(CudaNative.cuEventElapsedTime(out float ms, _start, _end), "cuEventElapsedTime");
        return ms;
    }

    public void Dispose()
    {
        CudaNative.cuEventDestroy(_start);
        CudaNative.cuEventDestroy(_end);
    }
}

/// <summary>Device properties a report wants.</summary>
public static class CudaInfo
{
    public static string Describe(CudaDevice device)
    {
        CudaNative.Check(CudaNative.cuDriverGetVersion(out int driver), "cuDriverGetVersion");
        var (major, minor) = KernelCompiler.NvrtcVersion();
        var text = new StringBuilder();
        text.Append($"{device.Name}, sm_{device.Major}{device.Minor}, {device.Multiprocessors} SMs, driver API {driver / 1000}.{driver % 1000 / 10}, NVRTC {major}.{minor}");
        return text.ToString();
    }
}
