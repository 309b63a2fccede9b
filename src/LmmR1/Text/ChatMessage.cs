// OpenAI-style chat messages as LMM-R1 stores them in its `message` column: a role and either a string or a
// list of parts ({"type":"text","text":…}, {"type":"image","image":…} with optional min_pixels/max_pixels/
// resized_height/resized_width, {"image_url":…}, videos). Parsed from JSON once; the chat template and the
// image loader read the typed parts.
using System.Text.Json;
using LmmR1.Infrastructure;

namespace LmmR1.Text;

public enum ContentPartKind { Text, Image, Video, Other }

/// <summary>Per-image options of qwen_vl_utils (null when the part does not set them).</summary>
public sealed record ImagePartOptions(long? MinPixels = null, long? MaxPixels = null, long? ResizedHeight = null, long? ResizedWidth = null)
{
    public static ImagePartOptions None { get; } = new();
}

public sealed record ContentPart
{
    public required ContentPartKind Kind { get; init; }
    /// <summary>The part's "type" value, if any.</summary>
    public string? Type { get; init; }
    /// <summary>The "text" of a text part.</summary>
    public string? Text { get; init; }
    /// <summary>Where an image part's pixels come from: the "image" value, else "image_url" (a string or {"url": …}).</summary>
    public string? ImageSource { get; init; }
    public ImagePartOptions ImageOptions { get; init; } = ImagePartOptions.None;

    public static ContentPart FromText(string text) => new() { Kind = ContentPartKind.Text, Type = "text", Text = text };

    public static ContentPart FromImage(string source, ImagePartOptions? options = null) =>
        new() { Kind = ContentPartKind.Image, Type = "image", ImageSource = source, ImageOptions = options ?? ImagePartOptions.None };
}

public sealed record ChatMessage
{
    public required string Role { get; init; }
    /// <summary>Content when it is a plain string (then Parts is null).</summary>
    public string? Text { get; init; }
    /// <summary>Content when it is a list of parts (then Text is null).</summary>
    public IReadOnlyList<ContentPart>? Parts { get; init; }

    public static ChatMessage FromText(string role, string text) => new() { Role = role, Text = text };

    public static ChatMessage FromParts(string role, params ContentPart[] parts) => new() { Role = role, Parts = parts };

    public IEnumerable<ContentPart> ImageParts => Parts?.Where(p => p.Kind == ContentPartKind.Image) ?? [];
}

public static class ChatMessages
{
    /// <summary>Parses a JSON array of messages. Errors name <paramref name="file"/>, <paramref name="line"/> and <paramref name="field"/>.</summary>
    public static List<ChatMessage> Parse(JsonElement array, string? file = null, long? line = null, string field = "messages")
    {
        if (array.ValueKind != JsonValueKind.Array)
            throw InputException.At(file, line, field, $"expected a JSON list of messages, got {array.ValueKind}");
        var list = new List<ChatMessage>();
        int i = 0;
        foreach (var m in array.EnumerateArray())
        {
            string where = $"{field}[{i}]";
            if (m.ValueKind != JsonValueKind.Object) throw InputException.At(file, line, where, "expected an object with 'role' and 'content'");
            if (!m.TryGetProperty("role", out var role) || role.ValueKind != JsonValueKind.String)
                throw InputException.At(file, line, where + ".role", "missing or not a string");
            if (!m.TryGetProperty("content", out var content))
                throw InputException.At(file, line, where + ".content", "missing");
            list.Add(content.ValueKind switch
            {
                JsonValueKind.String => ChatMessage.FromText(role.GetString()!, content.GetString()!),
                JsonValueKind.Array => new ChatMessage { Role = role.GetString()!, Parts = ParseParts(content, file, line, where + ".content") },
                _ => throw InputException.At(file, line, where + ".content", $"expected a string or a list of parts, got {content.ValueKind}"),
            });
            i++;
        }
        if (list.Count == 0) throw InputException.At(file, line, field, "the message list is empty");
        return list;
    }

    /// <summary>Parses JSON text holding a list of messages (LMM-R1's stringified `message` column).</summary>
    public static List<ChatMessage> Parse(string json, string? file = null, long? line = null, string field = "messages")
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(json); }
        catch (JsonException e) { throw InputException.At(file, line, field, $"not valid JSON ({e.Message})"); }
        using (doc) return Parse(doc.RootElement, file, line, field);
    }

    static List<ContentPart> ParseParts(JsonElement arr, string? file, long? line, string field)
    {
        var parts = new List<ContentPart>();
        int k = 0;
        foreach (var p in arr.EnumerateArray())
        {
            string where = $"{field}[{k++}]";
            if (p.ValueKind != JsonValueKind.Object) throw InputException.At(file, line, where, "expected an object part");
            string? type = p.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString() : null;
            // The same tests, in the same order, as the Qwen2-VL chat template.
            if (type == "image" || p.TryGetProperty("image", out _) || p.TryGetProperty("image_url", out _))
            {
                parts.Add(new ContentPart
                {
                    Kind = ContentPartKind.Image, Type = type, ImageSource = ImageSource(p, file, line, where),
                    ImageOptions = new ImagePartOptions(Long(p, "min_pixels", file, line, where), Long(p, "max_pixels", file, line, where),
                                                        Long(p, "resized_height", file, line, where), Long(p, "resized_width", file, line, where)),
                });
            }
            else if (type == "video" || p.TryGetProperty("video", out _))
                parts.Add(new ContentPart { Kind = ContentPartKind.Video, Type = type });
            else if (p.TryGetProperty("text", out var text))
            {
                if (text.ValueKind != JsonValueKind.String) throw InputException.At(file, line, where + ".text", "expected a string");
                parts.Add(new ContentPart { Kind = ContentPartKind.Text, Type = type, Text = text.GetString() });
            }
            else parts.Add(new ContentPart { Kind = ContentPartKind.Other, Type = type });
        }
        return parts;
    }

    static string? ImageSource(JsonElement p, string? file, long? line, string where)
    {
        if (p.TryGetProperty("image", out var img))
            return img.ValueKind == JsonValueKind.String ? img.GetString()
                : throw InputException.At(file, line, where + ".image", "expected a path, file:// or data: URI, or http(s) URL string");
        if (p.TryGetProperty("image_url", out var url))
        {
            if (url.ValueKind == JsonValueKind.String) return url.GetString();
            if (url.ValueKind == JsonValueKind.Object && url.TryGetProperty("url", out var u) && u.ValueKind == JsonValueKind.String) return u.GetString();
            throw InputException.At(file, line, where + ".image_url", "expected a string or {\"url\": string}");
        }
        return null; // {"type": "image"} without a source: rendered by the template, rejected when pixels are needed
    }

    static long? Long(JsonElement p, string name, string? file, long? line, string where)
    {
        if (!p.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind == JsonValueKind.Number && v.TryGetDouble(out double d) && d > 0 && d == Math.Floor(d) && d < 1e15) return (long)d;
        throw InputException.At(file, line, $"{where}.{name}", $"expected a positive integer, got {v.GetRawText()}");
    }
}
