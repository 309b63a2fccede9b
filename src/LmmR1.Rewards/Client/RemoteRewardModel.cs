// Client for remote reward servers (OpenRLHF's --remote_rm_url): a comma list of URLs splits each batch into equal
// consecutive chunks, one per URL, sent concurrently and reassembled in order. Each request has a timeout (default
// 180 s) and is retried with exponential backoff (Polly; default 5 attempts); when every attempt fails the error
// names the URL and the last failure. Client errors (400/401/403/404/413) are not retried: they cannot improve.
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Polly;
using Polly.Retry;
using Polly.Timeout;

namespace LmmR1.Rewards.Client;

public sealed class RewardServerException(string message, Exception? inner = null) : Exception(message, inner);

public sealed record RemoteRewardOptions
{
    public required IReadOnlyList<string> Urls { get; init; }
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(180);
    public int MaxAttempts { get; init; } = 5;
    public TimeSpan InitialBackoff { get; init; } = TimeSpan.FromSeconds(1);
    public TimeSpan MaxBackoff { get; init; } = TimeSpan.FromSeconds(30);
    public string? ApiKey { get; init; }

    /// <summary>From OpenRLHF's comma-separated --remote_rm_url.</summary>
    public static RemoteRewardOptions FromUrlList(string urls, string? apiKey = null) => new()
    {
        Urls = [.. urls.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)],
        ApiKey = apiKey,
    };

    public void Validate()
    {
        if (Urls.Count == 0) throw new ArgumentException("at least one reward server URL is required");
        foreach (var u in Urls)
            if (!Uri.TryCreate(u, UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps))
                throw new ArgumentException($"reward server URL must be an absolute http(s) URL, got '{u}'");
        if (Timeout <= TimeSpan.Zero) throw new ArgumentException("timeout must be positive");
        if (MaxAttempts < 1) throw new ArgumentException("max attempts must be at least 1");
        if (InitialBackoff < TimeSpan.Zero) throw new ArgumentException("backoff must not be negative");
    }
}

public sealed class RemoteRewardModel : IRewardModel, IDisposable
{
    private readonly RemoteRewardOptions _options;
    private readonly HttpClient _http;
    private readonly bool _ownsClient;
    private readonly ResiliencePipeline _pipeline;

    public RemoteRewardModel(RemoteRewardOptions options, HttpClient? http = null)
    {
        options.Validate();
        _options = options;
        _ownsClient = http == null;
        _http = http ?? new HttpClient(new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromMinutes(5) });
        _http.Timeout = System.Threading.Timeout.InfiniteTimeSpan; // per-attempt timeouts come from the pipeline
        _pipeline = new ResiliencePipelineBuilder()
            .AddRetry(new RetryStrategyOptions
            {
                MaxRetryAttempts = options.MaxAttempts - 1,
                BackoffType = DelayBackoffType.Exponential,
                Delay = options.InitialBackoff,
                MaxDelay = options.MaxBackoff,
                UseJitter = false,
                ShouldHandle = new PredicateBuilder()
                    .Handle<HttpRequestException>(e => e is not NonRetryableException)
                    .Handle<TimeoutRejectedException>()
                    .Handle<JsonException>()
                    .Handle<InvalidDataException>(),
            })
            .AddTimeout(options.Timeout)
            .Build();
    }

    public async Task<IReadOnlyList<RewardResult>> ScoreAsync(IReadOnlyList<string> queries, IReadOnlyList<string> prompts,
                                                              IReadOnlyList<string> labels, CancellationToken ct = default)
    {
        if (queries.Count != prompts.Count || queries.Count != labels.Count)
            throw new ArgumentException($"length mismatch: {queries.Count} queries, {prompts.Count} prompts, {labels.Count} labels");
        if (queries.Count == 0) return [];
        var chunks = SplitEvenly(queries.Count, _options.Urls.Count);
        var tasks = chunks.Select((c, i) => c.End.Value == c.Start.Value
            ? Task.FromResult<IReadOnlyList<RewardResult>>([])
            : PostAsync(_options.Urls[i], Slice(queries, c), Slice(prompts, c), Slice(labels, c), ct)).ToArray();
        var parts = await Task.WhenAll(tasks);
        return [.. parts.SelectMany(p => p)];
    }

    /// <summary>OpenRLHF's split: chunk size ceil(n / urls), URL i takes items [i·size, (i+1)·size).</summary>
    public static IReadOnlyList<Range> SplitEvenly(int count, int urls)
    {
        int size = (count + urls - 1) / urls;
        var ranges = new List<Range>(urls);
        for (int i = 0; i < urls; i++)
        {
            int start = Math.Min(count, i * size), end = Math.Min(count, (i + 1) * size);
            ranges.Add(new Range(start, end));
        }
        return ranges;
    }

    private static string[] Slice(IReadOnlyList<string> items, Range r)
    {
        var (offset, length) = r.GetOffsetAndLength(items.Count);
        var result = new string[length];
        for (int i = 0; i < length; i++) result[i] = items[offset + i];
        return result;
    }

    private async Task<IReadOnlyList<RewardResult>> PostAsync(string url, string[] queries, string[] prompts, string[] labels, CancellationToken ct)
    {
        var body = JsonSerializer.SerializeToUtf8Bytes(new Dictionary<string, string[]> { ["query"] = queries, ["prompts"] = prompts, ["labels"] = labels },
            RewardJsonContext.Default.DictionaryStringStringArray);
        int attempts = 0;
        try
        {
            return await _pipeline.ExecuteAsync(async token =>
            {
                attempts++;
                using var request = new HttpRequestMessage(HttpMethod.Post, url) { Content = new ByteArrayContent(body) };
                request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
                if (_options.ApiKey is { Length: > 0 } key) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
                using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseContentRead, token);
                var text = await response.Content.ReadAsStringAsync(token);
                if (!response.IsSuccessStatusCode)
                {
                    var msg = $"HTTP {(int)response.StatusCode} {response.StatusCode}: {Snippet(text)}";
                    throw IsClientError(response.StatusCode) ? new NonRetryableException(msg) : new HttpRequestException(msg, null, response.StatusCode);
                }
                return ParseResponse(text, queries.Length);
            }, ct);
        }
        catch (Exception e) when (!ct.IsCancellationRequested && e is HttpRequestException or TimeoutRejectedException or JsonException or InvalidDataException)
        {
            var what = e is TimeoutRejectedException ? $"timed out after {_options.Timeout.TotalSeconds:0.###} s" : e.Message;
            throw new RewardServerException($"reward server {url} failed after {attempts} attempt(s): {what}", e);
        }
    }

    private static bool IsClientError(HttpStatusCode code) => code is HttpStatusCode.BadRequest or HttpStatusCode.Unauthorized
        or HttpStatusCode.Forbidden or HttpStatusCode.NotFound or HttpStatusCode.RequestEntityTooLarge;

    private static string Snippet(string s) => s.Length > 300 ? s[..300] + "…" : s;

    /// <summary>Reads "rewards" (and the LMM-R1 parts when present; otherwise format 0 and accuracy = reward).</summary>
    internal static IReadOnlyList<RewardResult> ParseResponse(string text, int expected)
    {
        using var doc = JsonDocument.Parse(text);
        var root = doc.RootElement;
        if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("rewards", out var rewards) || rewards.ValueKind != JsonValueKind.Array)
            throw new InvalidDataException($"response has no \"rewards\" array: {Snippet(text)}");
        var r = Numbers(rewards, "rewards");
        if (r.Length != expected) throw new InvalidDataException($"response has {r.Length} rewards for {expected} samples");
        var f = root.TryGetProperty("format_rewards", out var fe) && fe.ValueKind == JsonValueKind.Array ? Numbers(fe, "format_rewards") : null;
        var a = root.TryGetProperty("acc_rewards", out var ae) && ae.ValueKind == JsonValueKind.Array ? Numbers(ae, "acc_rewards") : null;
        var results = new RewardResult[r.Length];
        for (int i = 0; i < r.Length; i++)
            results[i] = new RewardResult(r[i], f != null && i < f.Length ? f[i] : 0.0, a != null && i < a.Length ? a[i] : r[i]);
        return results;
    }

    private static double[] Numbers(JsonElement arr, string name)
    {
        var values = new double[arr.GetArrayLength()];
        int i = 0;
        foreach (var x in arr.EnumerateArray())
        {
            if (x.ValueKind != JsonValueKind.Number) throw new InvalidDataException($"\"{name}\" item {i} is not a number");
            values[i++] = x.GetDouble();
        }
        return values;
    }

    public void Dispose() { if (_ownsClient) _http.Dispose(); }

    private sealed class NonRetryableException(string message) : HttpRequestException(message);
}

[System.Text.Json.Serialization.JsonSerializable(typeof(Dictionary<string, string[]>))]
internal sealed partial class RewardJsonContext : System.Text.Json.Serialization.JsonSerializerContext;
