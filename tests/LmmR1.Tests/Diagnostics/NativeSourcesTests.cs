// The native extension's sources ship inside the assembly (it is compiled from them on the GPU machine, never in CI):
// here only what can be checked without a compiler or CUDA. The ABI version the C++ reports equals the one the managed
// side demands (a mismatch would refuse every freshly built library), and every entry point the managed side binds is
// defined in the source it is compiled from (NativeExtension's GetExport / TryGetExport names).
using System.Text.RegularExpressions;
using LmmR1.Infrastructure;

namespace LmmR1.Tests.Diagnostics;

public class NativeSourcesTests
{
    [Fact]
    public void TheCppReportsTheAbiVersionTheManagedSideExpects()
    {
        var m = Regex.Match(NativeExtension.Source(), @"int lmmr1_abi_version\(\) \{ return (\d+); \}");
        Assert.True(m.Success, "lmmr1_abi_version() not found in lmmr1_native.cpp");
        Assert.Equal(NativeExtension.AbiVersion, int.Parse(m.Groups[1].Value));
    }

    [Theory]
    [InlineData("native", "lmmr1_graph_capture_begin", "lmmr1_graph_replay_n", "lmmr1_varlen_attention", "lmmr1_memory_stats", "lmmr1_fused_rope_decode",
                "lmmr1_fused_head_logsoftmax", "lmmr1_fused_head_dlogits", "lmmr1_fused_decode_attention")]
    [InlineData("kernels", "lmmr1_k_add_square", "lmmr1_k_rms_apply", "lmmr1_k_silu_mul", "lmmr1_k_rope_decode", "lmmr1_k_head_logsoftmax",
                "lmmr1_k_head_dlogits", "lmmr1_k_decode_attention", "lmmr1_k_decode_attention_split_keys")]
    [InlineData("profiler", "lmmr1_profiler_start", "lmmr1_profiler_stop", "lmmr1_profiler_error")]
    public void EveryBoundEntryPointIsDefined(string source, params string[] names)
    {
        string text = source switch
        {
            "native" => NativeExtension.Source(),
            "kernels" => NativeExtension.KernelSource(),
            _ => NativeExtension.ProfilerSource(),
        };
        foreach (var name in names) Assert.Matches(new Regex(@"\b" + name + @"\([^;]*\)\s*\{"), text);
    }
}
