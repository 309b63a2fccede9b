// Issue 11 item 3 (i), over loopback on a free port: a JSON string holding bytes that are not UTF-8 is a 400 with a
// message (not an empty 500); more items than --max-items is a 413 before any is scored; the bearer scheme is matched
// case-insensitively (RFC 9110 §11.1) while the token stays exact; a non-loopback bind without a token warns.
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using LmmR1.Rewards.Server;

namespace LmmR1.Rewards.Tests;

public sealed class RewardServerProbeTests
{
    private static async Task<(RewardServer Server, string Url)> Start(RewardServerOptions? options = null)
    {
        var server = RewardServer.Create((options ?? new RewardServerOptions()) with
        {
            Port = 0, Reward = new RewardOptions { TimeBudget = TimeSpan.FromSeconds(5) }, Threads = 2,
        });
        await server.StartAsync();
        return (server, server.Addresses.Single() + "/get_reward");
    }

    private static ByteArrayContent Raw(byte[] body)
    {
        var c = new ByteArrayContent(body);
        c.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        return c;
    }

    private static async Task<string> ErrorOf(HttpResponseMessage resp) =>
        JsonDocument.Parse(await resp.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetString()!;

    [Fact]
    public async Task InvalidUtf8InsideAStringIs400WithAMessage()
    {
        var (server, url) = await Start();
        await using var _ = server;
        using var http = new HttpClient();
        byte[] body = Encoding.UTF8.GetBytes("{\"query\":[\"ok\",\"a@b\"],\"prompts\":[\"p\",\"p\"],\"labels\":[\"1\",\"1\"]}");
        body[Array.IndexOf(body, (byte)'@')] = 0xFF;
        var resp = await http.PostAsync(url, Raw(body));
        Assert.Equal(HttpStatusCode.BadRequest, resp.StatusCode);
        Assert.Equal("field 'query' item 1 is not valid UTF-8", await ErrorOf(resp));
    }

    [Fact]
    public async Task MoreItemsThanTheLimitIs413()
    {
        var (server, url) = await Start(new RewardServerOptions { MaxItems = 3 });
        await using var _ = server;
        using var http = new HttpClient();
        string Body(int n) => JsonSerializer.Serialize(new Dictionary<string, string[]>
        {
            ["query"] = [.. Enumerable.Repeat("", n)], ["prompts"] = [.. Enumerable.Repeat("", n)], ["labels"] = [.. Enumerable.Repeat("1", n)],
        });
        var resp = await http.PostAsync(url, new StringContent(Body(4), Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, resp.StatusCode);
        Assert.Contains("field 'query' has 4 items, the limit is 3", await ErrorOf(resp));
        var ok = await http.PostAsync(url, new StringContent(Body(3), Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        Assert.Equal(65536, new RewardServerOptions().MaxItems);                     // the default
        Assert.Throws<ArgumentException>(() => new RewardServerOptions { MaxItems = 0 }.Validate());
    }

    [Fact]
    public async Task TheBearerSchemeIsCaseInsensitiveButTheTokenIsExact()
    {
        var (server, url) = await Start(new RewardServerOptions { ApiKey = "s3cret" });
        await using var _ = server;
        using var http = new HttpClient();
        string body = "{\"query\":[\"x\"],\"prompts\":[\"p\"],\"labels\":[\"1\"]}";
        async Task<HttpStatusCode> With(string header)
        {
            using var req = new HttpRequestMessage(HttpMethod.Post, url) { Content = new StringContent(body, Encoding.UTF8, "application/json") };
            req.Headers.TryAddWithoutValidation("Authorization", header);
            return (await http.SendAsync(req)).StatusCode;
        }
        Assert.Equal(HttpStatusCode.OK, await With("Bearer s3cret"));
        Assert.Equal(HttpStatusCode.OK, await With("bearer s3cret"));
        Assert.Equal(HttpStatusCode.OK, await With("BEARER s3cret"));
        Assert.Equal(HttpStatusCode.Unauthorized, await With("bearer S3CRET"));
        Assert.Equal(HttpStatusCode.Unauthorized, await With("Basic s3cret"));
        Assert.Equal(HttpStatusCode.Unauthorized, await With("s3cret"));
    }

    [Fact]
    public void ANonLoopbackBindWithoutATokenWarns()
    {
        Assert.Contains("without a bearer token", new RewardServerOptions { Host = "0.0.0.0" }.ExposureWarning());
        Assert.Contains("without a bearer token", new RewardServerOptions { Host = "::" }.ExposureWarning());
        Assert.Null(new RewardServerOptions { Host = "0.0.0.0", ApiKey = "k" }.ExposureWarning());
        Assert.Null(new RewardServerOptions { Host = "127.0.0.1" }.ExposureWarning());
        Assert.Null(new RewardServerOptions { Host = "::1" }.ExposureWarning());
        Assert.Null(new RewardServerOptions { Host = "localhost" }.ExposureWarning());
    }
}
