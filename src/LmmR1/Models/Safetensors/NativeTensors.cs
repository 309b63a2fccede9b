// Raw-memory access TorchSharp 0.107 does not expose publicly: a CPU tensor viewing foreign memory (torch::from_blob
// via LibTorchSharp's exported THSTensor_new) and a tensor's data pointer (THSTensor_data). Used to read
// memory-mapped safetensors without an intermediate managed copy and to write tensors larger than 2 GiB.
using System.Runtime.InteropServices;
using TorchSharp;

namespace LmmR1.Models.Safetensors;

internal static unsafe class NativeTensors
{
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    delegate void Deleter(IntPtr data);

    // from_blob never frees our memory: the mapping's owner does, after the view is disposed.
    static readonly Deleter NoOp = _ => { };

    [DllImport("LibTorchSharp")]
    static extern IntPtr THSTensor_new(IntPtr data, Deleter deleter, long* sizes, int ndim, sbyte type, sbyte dtype,
                                       int deviceType, int deviceIndex, [MarshalAs(UnmanagedType.U1)] bool requiresGrad);

    [DllImport("LibTorchSharp")]
    static extern IntPtr THSTensor_data(IntPtr handle);

    /// <summary>A CPU tensor that views <paramref name="data"/> without copying; dispose it before the memory goes.</summary>
    public static torch.Tensor View(IntPtr data, ReadOnlySpan<long> shape, torch.ScalarType dtype)
    {
        _ = torch.CPU; // make sure libtorch is loaded before the first P/Invoke
        fixed (long* s = shape)
        {
            IntPtr h = THSTensor_new(data, NoOp, s, shape.Length, (sbyte)dtype, (sbyte)dtype, 0, 0, false);
            if (h == IntPtr.Zero) throw new InvalidOperationException("libtorch could not create a tensor over mapped memory");
            return torch.Tensor.UnsafeCreateTensor(h);
        }
    }

    /// <summary>Pointer to the first element of a contiguous CPU tensor.</summary>
    public static IntPtr DataPointer(torch.Tensor t)
    {
        if (t.device_type != DeviceType.CPU || !t.is_contiguous())
            throw new InvalidOperationException("DataPointer needs a contiguous CPU tensor");
        return THSTensor_data(t.Handle);
    }
}
