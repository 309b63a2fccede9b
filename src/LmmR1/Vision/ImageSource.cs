// Where an image part's bytes come from, as qwen_vl_utils accepts them: a plain path, file://path, a data: URI
// with base64 payload, or an http(s) URL (fetched with a timeout; offline machines get a clear error). Relative
// paths (plain or file://) resolve against a base folder: the data file's folder, or --image-root.
using LmmR1.Infrastructure;

namespace LmmR1.Vision;

public enum ImageSourceKind { File, DataUri, Url }

/// <summary>A resolved image reference: cheap to hold, decoded only when its pixels are needed.</summary>
public sealed record ImageRef(ImageSourceKind Kind, string Location, string Original)
{
    /// <summary>A short description for messages (data: URIs are not printed whole).</summary>
    public string Display => Kind == ImageSourceKind.DataUri ? $"data: URI ({Original.Length} chars)" : Original;

    /// <summary>Resolves a source string. Throws InputException for a source that can never load (bad data: URI, empty).</summary>
    public static ImageRef Resolve(string source, string? baseDir)
    {
        if (string.IsNullOrWhiteSpace(source)) throw new InputException("image source is empty");
        if (source.StartsWith("http://", StringComparison.OrdinalIgnoreCase) || source.StartsWith("https://", StringComparison.OrdinalIgnoreCase))
            return new ImageRef(ImageSourceKind.Url, source, source);
        if (source.StartsWith("data:", StringComparison.Ordinal))
        {
            int k = source.IndexOf("base64,", StringComparison.Ordinal);
            if (k < 0 || !source.AsSpan(0, k).StartsWith("data:image", StringComparison.Ordinal))
                throw new InputException($"bad data: URI '{Truncate(source)}': expected data:image/…;base64,<payload>");
            return new ImageRef(ImageSourceKind.DataUri, source, source);
        }
        string path = source.StartsWith("file://", StringComparison.Ordinal) ? source[7..] : source;
        if (path.Length == 0) throw new InputException($"image source '{source}' has an empty path");
        if (!Path.IsPathRooted(path) && baseDir != null) path = Path.Combine(baseDir, path);
        return new ImageRef(ImageSourceKind.File, Path.GetFullPath(path), source);
    }

    /// <summary>Reads the encoded bytes. Throws InputException naming the source when they cannot be read.</summary>
    public byte[] ReadBytes(TimeSpan? httpTimeout = null)
    {
        switch (Kind)
        {
            case ImageSourceKind.File:
                try { return File.ReadAllBytes(Location); }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    throw new InputException($"image '{Original}' could not be read ({Location}: {e.Message})");
                }
            case ImageSourceKind.DataUri:
                string payload = Location[(Location.IndexOf("base64,", StringComparison.Ordinal) + 7)..];
                try { return Convert.FromBase64String(payload.Trim()); }
                catch (FormatException) { throw new InputException($"bad data: URI '{Truncate(Original)}': the base64 payload is invalid"); }
            default:
                return Http.Fetch(Location, httpTimeout ?? TimeSpan.FromSeconds(30));
        }
    }

    static string Truncate(string s) => s.Length <= 48 ? s : s[..48] + "…";

    static class Http
    {
        static readonly HttpClient Client = new() { Timeout = Timeout.InfiniteTimeSpan };

        public static byte[] Fetch(string url, TimeSpan timeout)
        {
            using var cts = new CancellationTokenSource(timeout);
            try
            {
                using var resp = Client.GetAsync(url, cts.Token).GetAwaiter().GetResult();
                if (!resp.IsSuccessStatusCode) throw new InputException($"image URL {url}: HTTP {(int)resp.StatusCode} {resp.ReasonPhrase}");
                return resp.Content.ReadAsByteArrayAsync(cts.Token).GetAwaiter().GetResult();
            }
            catch (OperationCanceledException)
            {
                throw new InputException($"image URL {url}: no answer within {timeout.TotalSeconds:0} s (offline? download the images and use paths)");
            }
            catch (HttpRequestException e)
            {
                throw new InputException($"image URL {url}: could not be fetched ({e.Message}; offline? download the images and use paths)");
            }
        }
    }
}
