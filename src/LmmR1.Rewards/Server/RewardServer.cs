// HTTP reward server speaking LMM-R1's protocol (POST /get_reward {"query","prompts","labels"} →
// {"rewards","format_rewards","acc_rewards"}), so OpenRLHF's --remote_rm_url can point at it. Kestrel minimal API;
// loopback by default, optional bearer token, request-size limit (413), precise 400s. Departures from the Flask
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
    /// <summary>When set, requests need "Authorization: Bearer &lt;ApiKey&gt;".</summary>
    public string? ApiKey { get; init; }
    public RewardOptions Reward { get; init; } = new();
    /// <summary>Verification threads; default one per core.</summary>
    public int? Threads { get; init; }

    public void Validate()
    {
        if (Port is < 0 or > 65535) throw new ArgumentException($"port must be 0..65535, got {Port}");
        if (MaxRequestBytes < 1024) throw new ArgumentException("max request size must be at least 1024 bytes");
        if (Threads is < 1) throw new ArgumentException("threads must be at least 1");
        if (Host != "localhost" && !IPAddress.TryParse(Host, out _)) throw new ArgumentException($"host must be an IP address or 'localhost', got '{Host}'");
        Reward.Validate();
    }
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
        var expectedAuth = options.ApiKey is { Length: > 0 } key ? Encoding.UTF8.GetBytes("Bearer " + key) : null;
        app.MapPost("/get_reward", ctx => server.HandleAsync(ctx, expectedAuth));
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

    private async Task HandleAsync(HttpContext ctx, byte[]? expectedAuth)
    {
        if (expectedAuth != null)
        {
            var given = Encoding.UTF8.GetBytes(ctx.Request.Headers.Authorization.ToString());
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
            var (request, error) = ParseRequest(doc.RootElement);
            if (request == null)
            {
                await Error(ctx, StatusCodes.Status400BadRequest, error!);
                return;
            }
            var results = await _model.ScoreAsync(request.Value.Queries, request.Value.Prompts, request.Value.Labels, ctx.RequestAborted);
            ctx.Response.StatusCode = StatusCodes.Status200OK;
            ctx.Response.ContentType = "application/json";
            await ctx.Response.Body.WriteAsync(WriteResponse(results), ctx.RequestAborted);
        }
    }

    internal readonly record struct RewardRequest(string[] Queries, string[] Prompts, string[] Labels);

    internal static (RewardRequest?, string?) ParseRequest(JsonElement root)
    {
        if (root.ValueKind != JsonValueKind.Object) return (null, "request body must be a JSON object");
        var fields = new string[3][];
        string[] names = ["query", "prompts", "labels"];
        for (int f = 0; f < 3; f++)
        {
            if (!root.TryGetProperty(names[f], out var arr)) return (null, "query, prompts, and labels fields are required");
            if (arr.ValueKind != JsonValueKind.Array) return (null, $"field '{names[f]}' must be an array of strings");
            var list = new string[arr.GetArrayLength()];
            int i = 0;
            foreach (var item in arr.EnumerateArray())
            {
                if (item.ValueKind != JsonValueKind.String) return (null, $"field '{names[f]}' item {i} must be a string, got {item.ValueKind}");
                list[i++] = item.GetString()!;
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
