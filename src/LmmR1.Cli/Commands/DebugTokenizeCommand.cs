// `lmmr1 debug tokenize --tokenizer DIR`: stdin JSON lines {"text": …} → stdout {"text": …, "ids": […]}
// (tokenizers' encode with add_special_tokens=False; special tokens written in the text become single ids).
using System.CommandLine;
using LmmR1.Infrastructure;
using LmmR1.Text;

namespace LmmR1.Cli.Commands;

public static class DebugTokenizeCommand
{
    public static Command Create()
    {
        var tokenizer = new Option<string>("--tokenizer") { Description = "Folder with tokenizer.json (and tokenizer_config.json)", Required = true };
        var cmd = new Command("tokenize", "Tokenize JSON lines {\"text\": …} from stdin; print {\"text\", \"ids\"} lines");
        cmd.Options.Add(tokenizer);
        cmd.SetAction(pr => InputsCli.Guard(() => Run(QwenTokenizer.Load(pr.GetValue(tokenizer)!), Console.In, Console.Out)));
        return cmd;
    }

    public static int Run(QwenTokenizer tok, TextReader input, TextWriter output)
    {
        foreach (var (line, doc) in InputsCli.ReadJsonLines(input))
            using (doc)
            {
                if (!doc.RootElement.TryGetProperty("text", out var t) || t.ValueKind != System.Text.Json.JsonValueKind.String)
                    throw InputException.At("stdin", line, "text", "missing or not a string");
                string text = t.GetString()!;
                int[] ids = tok.Encode(text);
                InputsCli.WriteLine(output, w =>
                {
                    w.WriteString("text", text);
                    w.WriteStartArray("ids");
                    foreach (int id in ids) w.WriteNumberValue(id);
                    w.WriteEndArray();
                });
            }
        return 0;
    }
}
