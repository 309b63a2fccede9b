// Writes demo examples as LMM-R1 prompt data (jsonl rows with `message` = the stringified chat, `answer` = the
// $\boxed{…}$ label, `datasource` = the task, plus `question`, and for SFT rows the target `response`), images as PNGs
// under images/ referenced relative to the jsonl file, so `lmmr1 data check`, `lmmr1 eval` and `lmmr1 train` read
// the same files the demo trains on.
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace LmmR1.Demo;

public static class DemoData
{
    public const string ImagesFolder = "images";

    static readonly JsonSerializerOptions Json = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>Writes dir/name (one row per example) and the examples' images (once per id); returns the file's path.</summary>
    public static string Write(string dir, string name, IEnumerable<DemoExample> examples, bool withResponse)
    {
        Directory.CreateDirectory(Path.Combine(dir, ImagesFolder));
        var lines = new List<string>();
        foreach (var ex in examples)
        {
            string? image = null;
            if (ex.Scene is { } scene)
            {
                image = $"{ImagesFolder}/{ex.Id}.png";
                string path = Path.Combine(dir, image);
                if (!File.Exists(path)) File.WriteAllBytes(path, scene.RenderPng());
            }
            var row = new JsonObject
            {
                ["datasource"] = ex.Datasource,
                ["question"] = ex.Question,
                ["answer"] = ex.Label,
                ["message"] = Message(ex, image),
            };
            if (withResponse) row["response"] = ex.Response;
            lines.Add(row.ToJsonString(Json));
        }
        string file = Path.Combine(dir, name);
        File.WriteAllText(file, string.Join("\n", lines) + "\n");
        return file;
    }

    /// <summary>The `message` column: [system, user [image?, text]] as a JSON string.</summary>
    public static string Message(DemoExample ex, string? image)
    {
        var user = new JsonArray();
        if (image is not null) user.Add(new JsonObject { ["type"] = "image", ["image"] = image });
        user.Add(new JsonObject { ["type"] = "text", ["text"] = ex.Question });
        return new JsonArray(
            new JsonObject { ["role"] = "system", ["content"] = DemoTasks.SystemPrompt },
            new JsonObject { ["role"] = "user", ["content"] = user }).ToJsonString(Json);
    }
}
