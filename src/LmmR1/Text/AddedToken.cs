// An entry of tokenizer.json's "added_tokens" (special tokens such as <|im_start|> and extra ones such as
// <think>): matched in the raw text as one token before normalisation and BPE, as Hugging Face tokenizers does.
namespace LmmR1.Text;

public sealed record AddedToken(int Id, string Content, bool Special, bool Normalized);

/// <summary>Finds added tokens in text, leftmost first and longest at a position (tokenizers' LeftmostLongest).</summary>
internal sealed class AddedTokenMatcher
{
    readonly Dictionary<char, AddedToken[]> byFirstChar;

    public AddedTokenMatcher(IEnumerable<AddedToken> tokens)
    {
        byFirstChar = tokens.Where(t => t.Content.Length > 0)
            .GroupBy(t => t.Content[0])
            .ToDictionary(g => g.Key, g => g.OrderByDescending(t => t.Content.Length).ToArray());
    }

    public bool IsEmpty => byFirstChar.Count == 0;

    /// <summary>Splits text into (segment, token) parts: token is null for plain text between added tokens.</summary>
    public List<(int Start, int Length, AddedToken? Token)> Split(string text)
    {
        var parts = new List<(int, int, AddedToken?)>();
        int plainStart = 0;
        for (int i = 0; i < text.Length;)
        {
            AddedToken? hit = null;
            if (byFirstChar.TryGetValue(text[i], out var candidates))
                foreach (var t in candidates)
                    if (string.CompareOrdinal(text, i, t.Content, 0, t.Content.Length) == 0) { hit = t; break; }
            if (hit is null) { i++; continue; }
            if (i > plainStart) parts.Add((plainStart, i - plainStart, null));
            parts.Add((i, hit.Content.Length, hit));
            i += hit.Content.Length;
            plainStart = i;
        }
        if (plainStart < text.Length) parts.Add((plainStart, text.Length - plainStart, null));
        return parts;
    }
}
