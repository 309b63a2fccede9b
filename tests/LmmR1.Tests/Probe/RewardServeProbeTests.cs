// Issue 11 item 3 (i) at the command line: `lmmr1 reward serve` bound to a non-loopback address without a token
// warns on standard error before it listens; with a token, or on loopback, it does not.
using LmmR1.Tests.Runs;

namespace LmmR1.Tests.Probe;

public class RewardServeProbeTests
{
    static string StartAndReadStderr(params string[] args)
    {
        // The token may also come from the environment: make sure this test's does not.
        using var child = new RunSupport.Child(["reward", "serve", "--port", "0", "--threads", "1", .. args],
            new Dictionary<string, string> { [LmmR1.Cli.Commands.RewardCommands.ApiKeyEnvironmentVariable] = "" });
        child.WaitUntil(() => child.Err.Contains("reward server listening on"), "the server to listen");
        string err = child.Err;
        child.Kill();
        return err;
    }

    [Fact]
    public void ANonLoopbackBindWithoutATokenWarnsAtStart()
    {
        string err = StartAndReadStderr("--host", "0.0.0.0");
        Assert.Contains("warning: listening on 0.0.0.0", err);
        Assert.Contains("without a bearer token", err);
        Assert.DoesNotContain("warning:", StartAndReadStderr("--host", "0.0.0.0", "--api_key", "k"));
        Assert.DoesNotContain("warning:", StartAndReadStderr("--host", "127.0.0.1"));
    }
}
