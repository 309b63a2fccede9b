// HTTP reward server speaking LMM-R1's protocol (POST /get_reward {"query","prompts","labels"} →
// {"rewards","format_rewards","acc_rewards"}), so OpenRLHF's --remote_rm_url can point at it. Kestrel minimal API;
// loopback by default, optional bearer token (scheme matched case-insensitively, as HTTP says), request-size and
// item-count limits (413), precise 400s (also for strings that are not valid UTF-8). Departures from the Flask
// server: mismatched lengths are a 400 (the reference zips silently), and rewards are always written as JSON floats.
using System.Buffers;
using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace LmmR1.Rewards.Server;

public sealed record RewardServerOptions
{
    /// <summary>Address to bind: an IP ("127.0.0.1", "0.0.0.0", "::") or "localhost". Loopback by default.</summary>
    public string Host { get; init; } = "127.0.0.1";
    /// <summary>Port; 0 picks a free one (see RewardServer.Addresses).</summary>
    public int Port { get; init; } = 5000;
    public long MaxRequestBytes { get; init; } = 64L * 1024 * 1024;
    /// <summary>Most items (responses) in one request; more get 413. LMM-R1 sends one micro-batch of rollouts at a
    /// time, far below the default.</summary>
    public int MaxItems { get; init; } = 65536;
    /// <summary>When set, requests need "Authorization: Bearer &lt;ApiKey&gt;".</summary>
    public string? ApiKey { get; init; }
    public RewardOptions Reward { get; init; } = new();
    /// <summary>Verification threads; default one per core.</summary>
    public int? Threads { get; init; }

    public void Validate()
    {
        if (Port is < 0 or > 65535) throw new ArgumentException($"port must be 0..65535, got {Port}");
        if (MaxRequestBytes < 1024) throw new ArgumentException("max request size must be at least 1024 bytes");
        if (MaxItems < 1) throw new ArgumentException($"max items must be at least 1, got {MaxItems}");
        if (Threads is < 1) throw new ArgumentException("threads must be at least 1");
        if (Host != "localhost" && !IPAddress.TryParse(Host, out _)) throw new ArgumentException($"host must be an IP address or 'localhost', got '{Host}'");
        Reward.Validate();
    }

    /// <summary>Whether <see cref="Host"/> is a loopback address ("localhost", 127.0.0.0/8, ::1).</summary>
    public bool IsLoopback => Host == "localhost" || (IPAddress.TryParse(Host, out var ip) && IPAddress.IsLoopback(ip));

    /// <summary>A warning for a server reachable from the network without a token; null otherwise.</summary>
    public string? ExposureWarning() => IsLoopback || ApiKey is { Length: > 0 } ? null
        : $"warning: listening on {Host}, which other machines can reach, without a bearer token: anyone who can connect may use this " +
          "server's CPU; set --api_key (or LMMR1_REWARD_API_KEY) or bind 127.0.0.1";
}

public sealed class RewardServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly IRewardModel _model;
    private readonly IDisposable? _ownedModel;

    private RewardServer(WebApplication app, IRewardModel model, IDisposable? owned)
    {
        _app = app;
        _model = model;
        _ownedModel = owned;
    }

    /// <summary>Builds the server; <paramref name="model"/> defaults to the LMM-R1 rule reward.</summary>
    public static RewardServer Create(RewardServerOptions options, IRewardModel? model = null)
    {
        options.Validate();
        IDisposable? owned = null;
        if (model == null)
        {
            var rule = new RuleRewardModel(options.Reward, new VerificationPool(options.Threads));
            model = rule;
            owned = rule;
        }
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.Limits.MaxRequestBodySize = options.MaxRequestBytes;
            k.AddServerHeader = false;
            if (options.Host == "localhost") k.ListenLocalhost(options.Port);
            else k.Listen(IPAddress.Parse(options.Host), options.Port);
        });
        var app = builder.Build();
        var server = new RewardServer(app, model, owned);
        var expectedAuth = options.ApiKey is { Length: > 0 } key ? Encoding.UTF8.GetBytes(key) : null;
        app.MapPost("/get_reward", ctx => server.HandleAsync(ctx, expectedAuth, options.MaxItems));
        app.MapGet("/health", () => Results.Text("ok"));
        return server;
    }

    public Task StartAsync(CancellationToken ct = default) => _app.StartAsync(ct);
    public Task StopAsync(CancellationToken ct = default) => _app.StopAsync(ct);
    /// <summary>Runs until <paramref name="ct"/> is cancelled or the host is told to stop (Ctrl+C).</summary>
    public Task WaitForShutdownAsync(CancellationToken ct = default) => Microsoft.Extensions.Hosting.HostingAbstractionsHostExtensions.WaitForShutdownAsync(_app, ct);

    /// <summary>The bound URLs, e.g. http://127.0.0.1:5000 (real port when Port was 0).</summary>
    public IReadOnlyList<string> Addresses =>
        [.. _app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses ?? []];

    public async ValueTask DisposeAsync()
    {
        await _app.DisposeAsync();
        _ownedModel?.Dispose();
    }

    /// <summary>The token of an "Authorization: Bearer &lt;token&gt;" header; the scheme is case-insensitive (RFC 9110 §11.1).</summary>
    internal static string? BearerToken(string header)
    {
        var h = header.Trim();
        int sp = h.IndexOf(' ');
        if (sp <= 0 || !h[..sp].Equals("Bearer", StringComparison.OrdinalIgnoreCase)) return null;
        return h[(sp + 1)..].Trim();
    }

    private async Task HandleAsync(HttpContext ctx, byte[]? expectedAuth, int maxItems)
    {
        if (expectedAuth != null)
        {
            var given = BearerToken(ctx.Request.Headers.Authorization.ToString()) is { } token ? Encoding.UTF8.GetBytes(token) : [];
            if (!CryptographicOperations.FixedTimeEquals(given, expectedAuth))
            {
                await Error(ctx, StatusCodes.Status401Unauthorized, "missing or wrong bearer token");
                return;
            }
        }
        JsonDocument doc;
        try
        {
            doc = await JsonDocument.ParseAsync(ctx.Request.Body, default, ctx.RequestAborted);
        }
        catch (BadHttpRequestException e)
        {
            await Error(ctx, e.StatusCode, e.StatusCode == StatusCodes.Status413PayloadTooLarge ? "request body too large" : e.Message);
            return;
        }
        catch (JsonException e)
        {
            await Error(ctx, StatusCodes.Status400BadRequest, $"malformed JSON: {e.Message}");
            return;
        }
        using (doc)
        {
            var (request, error) = ParseRequest(doc.RootElement, maxItems);
            if (request == null)
            {
                await Error(ctx, error!.StartsWith(TooManyItems, StringComparison.Ordinal) ? StatusCodes.Status413PayloadTooLarge : StatusCodes.Status400BadRequest, error);
                return;
            }
            var results = await _model.ScoreAsync(request.Value.Queries, request.Value.Prompts, request.Value.Labels, ctx.RequestAborted);
            ctx.Response.StatusCode = StatusCodes.Status200OK;
            ctx.Response.ContentType = "application/json";
            await ctx.Response.Body.WriteAsync(WriteResponse(results), ctx.RequestAborted);
        }
    }

    internal readonly record struct RewardRequest(string[] Queries, string[] Prompts, string[] Labels);

    internal const string TooManyItems = "too many items";

    internal static (RewardRequest?, string?) ParseRequest(JsonElement root, int maxItems = int.MaxValue)
    {
        if (root.ValueKind != JsonValueKind.Object) return (null, "request body must be a JSON object");
        var fields = new string[3][];
        string[] names = ["query", "prompts", "labels"];
        for (int f = 0; f < 3; f++)
        {
            if (!root.TryGetProperty(names[f], out var arr)) return (null, "query, prompts, and labels fields are required");
            if (arr.ValueKind != JsonValueKind.Array) return (null, $"field '{names[f]}' must be an array of strings");
            int count = arr.GetArrayLength();
            if (count > maxItems)
                return (null, $"{TooManyItems}: field '{names[f]}' has {count} items, the limit is {maxItems} (the server's --max-items); send smaller batches");
            var list = new string[count];
            int i = 0;
            foreach (var item in arr.EnumerateArray())
            {
                if (item.ValueKind != JsonValueKind.String) return (null, $"field '{names[f]}' item {i} must be a string, got {item.ValueKind}");
                // JsonDocument does not validate the UTF-8 inside strings; transcoding does (and throws).
                string text;
                try { text = item.GetString()!; }
                catch (InvalidOperationException) { return (null, $"field '{names[f]}' item {i} is not valid UTF-8"); }
                list[i++] = text;
            }
            fields[f] = list;
        }
        if (fields[0].Length != fields[1].Length || fields[0].Length != fields[2].Length)
            return (null, $"length mismatch: {fields[0].Length} queries, {fields[1].Length} prompts, {fields[2].Length} labels");
        return (new RewardRequest(fields[0], fields[1], fields[2]), null);
    }

    internal static byte[] WriteResponse(IReadOnlyList<RewardResult> results)
    {
        var buffer = new ArrayBufferWriter<byte>(64 + results.Count * 40);
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            WriteArray(w, "rewards", results, r => r.Reward);
            WriteArray(w, "format_rewards", results, r => r.FormatReward);
            WriteArray(w, "acc_rewards", results, r => r.AccuracyReward);
            w.WriteEndObject();
        }
        return buffer.WrittenSpan.ToArray();
    }

    private static void WriteArray(Utf8JsonWriter w, string name, IReadOnlyList<RewardResult> results, Func<RewardResult, double> pick)
    {
        w.WriteStartArray(name);
        foreach (var r in results) w.WriteRawValue(FloatLiteral(pick(r)));
        w.WriteEndArray();
    }

    /// <summary>A JSON number that Python reads as float ("1.0", not "1"), so torch.tensor gets a float dtype.</summary>
    internal static string FloatLiteral(double v)
    {
        if (!double.IsFinite(v)) v = 0;
        var s = v.ToString("R", CultureInfo.InvariantCulture);
        return s.Contains('.') || s.Contains('E') || s.Contains('e') ? s : s + ".0";
    }

    private static async Task Error(HttpContext ctx, int status, string message)
    {
        ctx.Response.StatusCode = status;
        ctx.Response.ContentType = "application/json";
        var buffer = new ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(buffer)) { w.WriteStartObject(); w.WriteString("error", message); w.WriteEndObject(); }
        await ctx.Response.Body.WriteAsync(buffer.WrittenMemory, ctx.RequestAborted);
    }
}
