// Issue 11 item 3: one error path. Bad input (InputException) and operating-system I/O failures anywhere in a command
// end in `error: …` naming the path, exit 1, no .NET stack trace; command-line syntax errors exit 2.
using LmmR1.Cli;
using LmmR1.Tests.Support;
using LmmR1.Tests.Training;
using static LmmR1.Tests.Probe.ModelInputProbeTests;

namespace LmmR1.Tests.Probe;

[Collection("Console")]
public class ErrorPathTests
{
    [Fact]
    public void AnIoFailureOutsideTheKnownPointsStillEndsInErrorNamingThePath()
    {
        // tokenizer.json as a symlink loop: no dedicated check reads it, the one error path reports it.
        string dir = TestPaths.NewTempDir("probe-tok-loop");
        string tok = Path.Combine(dir, "tokenizer.json");
        File.CreateSymbolicLink(tok, tok);
        var (code, _, err) = TrainCommandTests.Run("debug", "tokenize", "--tokenizer", dir);
        AssertError(code, err, "tokenizer.json");
    }

    [Fact]
    public void SyntaxErrorsExitTwoAndBadValuesExitOne()
    {
        var (code, _, err) = TrainCommandTests.Run("train", "--no_such_flag");
        Assert.Equal(CliErrors.Usage, code);
        Assert.StartsWith("error:", err.Trim());
        Assert.Contains("--no_such_flag", err);
        Assert.Contains("lmmr1 train --help", err);
        (code, _, err) = TrainCommandTests.Run(LmmR1.Tests.Runs.RunSupport.Set(DryRun(TinyRl.Model), "--n_samples_per_prompt", "0"));
        AssertError(code, err, "--n_samples_per_prompt");
    }

    [Fact]
    public void DiskFullAndPermissionFailuresAreUserFacing()
    {
        Assert.StartsWith("no space left on the device", CliErrors.MessageOf(new IOException("No space left on device : '/x/y'", 28)));
        Assert.Contains("/x/y", CliErrors.MessageOf(new UnauthorizedAccessException("Access to the path '/x/y' is denied.")));
        Assert.Null(CliErrors.MessageOf(new InvalidOperationException("a bug")));              // bugs keep their stack trace
        // libtorch's CUDA OOM (the text TorchSharp's CheckForErrors carries): one line, what to shrink, no C++ frames.
        var oom = CliErrors.MessageOf(new System.Runtime.InteropServices.ExternalException(
            "CUDA out of memory. Tried to allocate 32.00 MiB. GPU 0 has a total capacity of 79.18 GiB of which 2.19 MiB is free. " +
            "Including non-PyTorch memory, this process has 79.17 GiB memory in use. Of the allocated memory 73.8 GiB is allocated\n" +
            "Exception raised from malloc at /pytorch/c10/cuda/CUDACachingAllocator.cpp:1574 (most recent call first):\nframe #0: c10::Error::Error"));
        Assert.NotNull(oom);
        Assert.StartsWith("CUDA out of memory. Tried to allocate 32.00 MiB.", oom);
        Assert.Contains("--micro_train_batch_size", oom);
        Assert.DoesNotContain("frame #", oom);
        Assert.DoesNotContain("\n", oom);
        Assert.Null(CliErrors.MessageOf(new System.Runtime.InteropServices.ExternalException("some other libtorch error")));
        Assert.Equal("wrapped", CliErrors.MessageOf(new AggregateException(new LmmR1.Infrastructure.InputException("wrapped"))));
    }
}
