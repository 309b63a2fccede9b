// The remote reward client (issue item 6): retries with backoff until a flaky server answers, a clear error naming
// the URL when every attempt fails, per-attempt timeouts, and OpenRLHF's split of a batch across several URLs.
using System.Collections.Concurrent;
using System.Globalization;
using System.Text.Json;
using LmmR1.Rewards.Client;
using LmmR1.Rewards.Server;
using LmmR1.Rewards.Tests.Support;
using Microsoft.AspNetCore.Http;

namespace LmmR1.Rewards.Tests;

public sealed class RemoteRewardModelTests
{
    private static RemoteRewardOptions Fast(params string[] urls) => new() { Urls = urls, InitialBackoff = TimeSpan.FromMilliseconds(10), Timeout = TimeSpan.FromSeconds(10) };

    /// <summary>Answers with reward = float(label) for each item, recording the labels it saw.</summary>
    private static RequestDelegate Echo(ConcurrentQueue<string[]>? seen = null) => async ctx =>
    {
        using var doc = await JsonDocument.ParseAsync(ctx.Request.Body);
        var labels = doc.RootElement.GetProperty("labels").EnumerateArray().Select(e => e.GetString()!).ToArray();
        seen?.Enqueue(labels);
        var rewards = labels.Select(l => double.Parse(l, CultureInfo.InvariantCulture)).ToArray();
        ctx.Response.ContentType = "application/json";
        await ctx.Response.WriteAsync(JsonSerializer.Serialize(new { rewards }));
    };

    [Fact]
    public async Task RetriesAFlakyServerUntilItAnswers()
    {
        int calls = 0;
        var echo = Echo();
        await using var server = await FakeServer.StartAsync(async ctx =>
        {
            if (Interlocked.Increment(ref calls) <= 2) { ctx.Response.StatusCode = 503; await ctx.Response.WriteAsync("busy"); return; }
            await echo(ctx);
        });
        using var model = new RemoteRewardModel(Fast(server.Url));
        var results = await model.ScoreAsync(["q1", "q2"], ["p1", "p2"], ["1", "0.5"]);
        Assert.Equal(3, calls);
        // A plain OpenRLHF-style server sends only "rewards": format is 0, accuracy the reward.
        Assert.Equal([new RewardResult(1, 0, 1), new RewardResult(0.5, 0, 0.5)], results);
    }

    [Fact]
    public async Task AllAttemptsFailingNamesTheUrlAndTheLastFailure()
    {
        int calls = 0;
        await using var server = await FakeServer.StartAsync(async ctx =>
        {
            Interlocked.Increment(ref calls);
            ctx.Response.StatusCode = 500;
            await ctx.Response.WriteAsync("boom");
        });
        using var model = new RemoteRewardModel(Fast(server.Url) with { MaxAttempts = 3 });
        var e = await Assert.ThrowsAsync<RewardServerException>(() => model.ScoreAsync(["q"], ["p"], ["1"]));
        Assert.Equal(3, calls);
        Assert.Contains(server.Url, e.Message);
        Assert.Contains("after 3 attempt(s)", e.Message);
        Assert.Contains("HTTP 500", e.Message);
        Assert.Contains("boom", e.Message);
    }

    [Fact]
    public async Task ATimeoutCountsAsAFailedAttempt()
    {
        await using var server = await FakeServer.StartAsync(async ctx => await Task.Delay(5000, ctx.RequestAborted));
        using var model = new RemoteRewardModel(Fast(server.Url) with { MaxAttempts = 2, Timeout = TimeSpan.FromMilliseconds(200) });
        var e = await Assert.ThrowsAsync<RewardServerException>(() => model.ScoreAsync(["q"], ["p"], ["1"]));
        Assert.Contains("timed out after 0.2 s", e.Message);
        Assert.Contains("after 2 attempt(s)", e.Message);
    }

    [Fact]
    public async Task ClientErrorsAreNotRetried()
    {
        int calls = 0;
        await using var server = await FakeServer.StartAsync(async ctx =>
        {
            Interlocked.Increment(ref calls);
            ctx.Response.StatusCode = 400;
            await ctx.Response.WriteAsync("{\"error\":\"length mismatch\"}");
        });
        using var model = new RemoteRewardModel(Fast(server.Url));
        var e = await Assert.ThrowsAsync<RewardServerException>(() => model.ScoreAsync(["q"], ["p"], ["1"]));
        Assert.Equal(1, calls);
        Assert.Contains("HTTP 400", e.Message);
    }

    [Fact]
    public async Task AnUnreachableServerIsNamed()
    {
        // Port 9 on loopback (discard) is closed on test machines: connection refused.
        using var model = new RemoteRewardModel(Fast("http://127.0.0.1:9/get_reward") with { MaxAttempts = 2 });
        var e = await Assert.ThrowsAsync<RewardServerException>(() => model.ScoreAsync(["q"], ["p"], ["1"]));
        Assert.Contains("http://127.0.0.1:9/get_reward", e.Message);
    }

    [Fact]
    public async Task BatchIsSplitEvenlyAcrossUrlsAndReassembledInOrder()
    {
        var seenA = new ConcurrentQueue<string[]>();
        var seenB = new ConcurrentQueue<string[]>();
        await using var a = await FakeServer.StartAsync(Echo(seenA));
        await using var b = await FakeServer.StartAsync(Echo(seenB));
        using var model = new RemoteRewardModel(Fast(a.Url, b.Url));
        var labels = new[] { "0", "1", "2", "3", "4" };
        var results = await model.ScoreAsync([.. labels.Select(l => "q" + l)], [.. labels.Select(l => "p" + l)], labels);
        Assert.Equal([0.0, 1, 2, 3, 4], results.Select(r => r.Reward));
        // ceil(5/2) = 3: the first URL gets items 0-2, the second 3-4 (OpenRLHF's split).
        Assert.Equal(["0", "1", "2"], Assert.Single(seenA));
        Assert.Equal(["3", "4"], Assert.Single(seenB));
    }

    [Theory]
    // 10 items over 3 URLs: chunks of 4, 4, 2.
    [InlineData(10, 3, new[] { 4, 4, 2 })]
    // Fewer items than URLs: the last URLs get nothing.
    [InlineData(2, 4, new[] { 1, 1, 0, 0 })]
    // One URL takes everything.
    [InlineData(7, 1, new[] { 7 })]
    public void SplitEvenlyMatchesOpenRlhf(int count, int urls, int[] sizes)
    {
        var ranges = RemoteRewardModel.SplitEvenly(count, urls);
        Assert.Equal(sizes, ranges.Select(r => r.GetOffsetAndLength(count).Length));
    }

    [Fact]
    public async Task TalksToOurOwnServerWithABearerToken()
    {
        await using var server = RewardServer.Create(new RewardServerOptions { Port = 0, ApiKey = "k", Threads = 2, Reward = new() { TimeBudget = TimeSpan.FromSeconds(5) } });
        await server.StartAsync();
        var url = server.Addresses.Single() + "/get_reward";
        using var model = new RemoteRewardModel(Fast(url) with { ApiKey = "k" });
        var q = "<|im_start|>assistant\n<think>t</think><answer>$\\boxed{7}$</answer><|im_end|>";
        var results = await model.ScoreAsync([q, q], ["p", "p"], ["7", "8"]);
        Assert.Equal([new RewardResult(1.5, 0.5, 1.0), new RewardResult(0.5, 0.5, 0.0)], results);
    }

    [Fact]
    public void UrlListIsParsedLikeOpenRlhf()
    {
        var o = RemoteRewardOptions.FromUrlList(" http://a:5000/get_reward, http://b:5000/get_reward ");
        Assert.Equal(["http://a:5000/get_reward", "http://b:5000/get_reward"], o.Urls);
        Assert.Throws<ArgumentException>(() => new RemoteRewardModel(RemoteRewardOptions.FromUrlList("not-a-url")));
    }
}
