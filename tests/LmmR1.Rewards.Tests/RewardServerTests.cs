// The reward server over loopback on a free port (issue item 6): LMM-R1's protocol, 400s for bad bodies, 413 for
// oversized ones, the bearer token, and concurrent requests.
using System.Net;
using System.Text;
using System.Text.Json;
using LmmR1.Rewards.Server;

namespace LmmR1.Rewards.Tests;

public sealed class RewardServerTests
{
    private static readonly RewardOptions Roomy = new() { TimeBudget = TimeSpan.FromSeconds(5) };

    private static async Task<(RewardServer Server, string Url)> Start(RewardServerOptions? options = null)
    {
        var server = RewardServer.Create((options ?? new RewardServerOptions()) with { Port = 0, Reward = Roomy, Threads = 2 });
        await server.StartAsync();
        var address = server.Addresses.Single();
        Assert.StartsWith("http://127.0.0.1:", address); // loopback by default
        return (server, address + "/get_reward");
    }

    private static StringContent Json(string body) => new(body, Encoding.UTF8, "application/json");

    private static string Body(string[] queries, string[] prompts, string[] labels) =>
        JsonSerializer.Serialize(new Dictionary<string, string[]> { ["query"] = queries, ["prompts"] = prompts, ["labels"] = labels });

    private static string Q(string answer) => $"<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n<think>t</think><answer>{answer}</answer><|im_end|>";

    [Fact]
    public async Task GoodRequestReturnsLmmR1Rewards()
    {
        var (server, url) = await Start();
        await using var _ = server;
        using var http = new HttpClient();
        var resp = await http.PostAsync(url, Json(Body([Q("$\\boxed{4}$"), "no tags, $5$"], ["p1", "p2"], ["4", "4"])));
        Assert.Equal(HttpStatusCode.OK, resp.StatusCode);
        var text = await resp.Content.ReadAsStringAsync();
        // Floats, as the Flask server writes them (so torch.tensor gets a float dtype).
        Assert.Equal("{\"rewards\":[1.5,0.0],\"format_rewards\":[0.5,0.0],\"acc_rewards\":[1.0,0.0]}", text);
    }

    [Theory]
    // Not JSON at all.
    [InlineData("{bad", "malformed JSON")]
    // A JSON array instead of an object.
    [InlineData("[1,2]", "request body must be a JSON object")]
    // labels missing (LMM-R1's own message).
    [InlineData("{\"query\":[\"a\"],\"prompts\":[\"b\"]}", "query, prompts, and labels fields are required")]
    // A number where a string is expected.
    [InlineData("{\"query\":[1],\"prompts\":[\"b\"],\"labels\":[\"c\"]}", "field 'query' item 0 must be a string")]
    // Lengths differ.
    [InlineData("{\"query\":[\"a\",\"b\"],\"prompts\":[\"b\"],\"labels\":[\"c\"]}", "length mismatch: 2 queries, 1 prompts, 1 labels")]
    public async Task BadBodiesGet400WithAMessage(string body, string message)
    {
        var (server, url) = await Start();
        await using var _ = server;
        using var http = new HttpClient();
        var resp = await http.PostAsync(url, Json(body));
        Assert.Equal(HttpStatusCode.BadRequest, resp.StatusCode);
        var error = JsonDocument.Parse(await resp.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetString();
        Assert.Contains(message, error);
    }

    [Fact]
    public async Task OversizedBodyGets413()
    {
        var (server, url) = await Start(new RewardServerOptions { MaxRequestBytes = 4096 });
        await using var _ = server;
        using var http = new HttpClient();
        var big = Body([new string('x', 20_000)], ["p"], ["1"]);
        var resp = await http.PostAsync(url, Json(big));
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, resp.StatusCode);
        // A body under the limit on the same server is fine.
        var ok = await http.PostAsync(url, Json(Body([Q("$1$")], ["p"], ["1"])));
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
    }

    [Fact]
    public async Task BearerTokenIsRequiredWhenConfigured()
    {
        var (server, url) = await Start(new RewardServerOptions { ApiKey = "s3cret" });
        await using var _ = server;
        using var http = new HttpClient();
        var body = Body([Q("$1$")], ["p"], ["1"]);
        Assert.Equal(HttpStatusCode.Unauthorized, (await http.PostAsync(url, Json(body))).StatusCode);
        using var wrong = new HttpRequestMessage(HttpMethod.Post, url) { Content = Json(body) };
        wrong.Headers.Authorization = new("Bearer", "nope");
        Assert.Equal(HttpStatusCode.Unauthorized, (await http.SendAsync(wrong)).StatusCode);
        using var right = new HttpRequestMessage(HttpMethod.Post, url) { Content = Json(body) };
        right.Headers.Authorization = new("Bearer", "s3cret");
        Assert.Equal(HttpStatusCode.OK, (await http.SendAsync(right)).StatusCode);
    }

    [Fact]
    public async Task ConcurrentRequestsAreAnsweredIndependently()
    {
        var (server, url) = await Start();
        await using var _ = server;
        using var http = new HttpClient();
        var tasks = Enumerable.Range(0, 16).Select(async k =>
        {
            var queries = Enumerable.Range(0, 8).Select(i => Q($"$\\boxed{{{k * 100 + i}}}$")).ToArray();
            var labels = Enumerable.Range(0, 8).Select(i => i % 3 == 0 ? $"{k * 100 + i}" : "-1").ToArray();
            var resp = await http.PostAsync(url, Json(Body(queries, [.. queries.Select(_ => "p")], labels)));
            resp.EnsureSuccessStatusCode();
            var rewards = JsonDocument.Parse(await resp.Content.ReadAsStringAsync()).RootElement.GetProperty("rewards").EnumerateArray().Select(e => e.GetDouble()).ToArray();
            return (k, rewards);
        }).ToArray();
        foreach (var (k, rewards) in await Task.WhenAll(tasks))
            Assert.Equal(Enumerable.Range(0, 8).Select(i => i % 3 == 0 ? 1.5 : 0.5), rewards);
    }

    [Fact]
    public void OptionsAreValidated()
    {
        Assert.Throws<ArgumentException>(() => RewardServer.Create(new RewardServerOptions { Host = "not a host" }));
        Assert.Throws<ArgumentException>(() => RewardServer.Create(new RewardServerOptions { Port = 70000 }));
    }
}
