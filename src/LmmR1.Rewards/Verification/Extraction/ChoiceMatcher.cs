// Multiple-choice letters (Math-Verify's StringExtractionConfig, default A–D): "final answer is B", "Answer: (C)"-
// style anchors, a letter at the start of the text, or a standalone letter followed by . , : or whitespace.
namespace LmmR1.Rewards.Verification.Extraction;

internal sealed class ChoiceMatcher(TextIndex t, Budget budget, IReadOnlyList<string> keys)
{
    private string? KeyAt(int i)
    {
        foreach (var k in keys) if (t.At(i, k)) return k;
        return null;
    }

    /// <summary>End of (?:\*\*)?(?:\.|,|:|\s|$) at i, or -1.</summary>
    private int Suffix(int i)
    {
        int j = t.At(i, "**") ? i + 2 : i;
        for (int pass = 0; pass < 2; pass++)
        {
            if (j >= t.Length) return j;
            char c = t.S[j];
            if (c is '.' or ',' or ':' || char.IsWhiteSpace(c)) return j + 1;
            if (j == i) break;
            j = i;
        }
        return -1;
    }

    /// <summary>answer_re at p: (^|\s)(?:\*\*)?KEY SUFFIX; returns (end, key).</summary>
    private (int End, string Key)? AnswerReAt(int p)
    {
        var starts = new List<int>();
        if (p == 0) starts.Add(0);
        if (p < t.Length && char.IsWhiteSpace(t.S[p])) starts.Add(p + 1);
        foreach (var s0 in starts)
        {
            foreach (var s in t.At(s0, "**") ? new[] { s0 + 2, s0 } : new[] { s0 })
            {
                var key = KeyAt(s);
                if (key == null) continue;
                int e = Suffix(s + key.Length);
                if (e >= 0) return (e, key);
            }
        }
        return null;
    }

    public IEnumerable<RawMatch> FinalAnswerIHope()
    {
        foreach (var p in t.Occurrences("final answer is"))
        {
            budget.Tick();
            int q = p + 15;
            if (t.At(q, ":")) q++;
            q = t.WsEnd(q);
            var key = KeyAt(q);
            if (key == null) continue;
            int e = q + key.Length;
            if (t.At(e, ".")) e++;
            if (e < t.Length && char.IsWhiteSpace(t.S[e])) e++;
            if (t.At(e, "I hope")) yield return new ChoiceMatch(p, e + 6, key);
        }
    }

    public IEnumerable<RawMatch> FinalAnswerIs()
    {
        int from = 0;
        foreach (var p in t.Occurrences("final answer"))
        {
            if (p < from) continue;
            int nl = t.NextNewline(p + 12);
            for (int k = 0; k <= 100 && p + 12 + k < t.Length; k++)
            {
                budget.Tick();
                int q = p + 12 + k;
                if (nl >= 0 && nl < q) break;
                if (!char.IsWhiteSpace(t.S[q])) continue;
                int r = t.WsEnd(q);
                if (!t.At(r, "is")) continue;
                int a = r + 2;
                if (t.At(a, ":")) a++;
                a = t.WsEnd(a);
                var key = KeyAt(a);
                if (key == null) continue;
                yield return new ChoiceMatch(p, a + key.Length, key);
                from = a + key.Length;
                break;
            }
        }
    }

    public IEnumerable<RawMatch> AnswerWord(bool colon)
    {
        int from = 0;
        foreach (var p in t.Occurrences("answer"))
        {
            if (p < from) continue;
            int q = t.AfterAnswerWord(p, colon);
            if (q < 0) continue;
            int nl = t.NextNewline(q);
            for (int k = 0; k <= 50 && q + k < t.Length; k++)
            {
                budget.Tick();
                if (nl >= 0 && nl < q + k) break;
                var hit = AnswerReAt(q + k);
                if (hit == null) continue;
                yield return new ChoiceMatch(p, hit.Value.End, hit.Value.Key);
                from = hit.Value.End;
                break;
            }
        }
    }

    public IEnumerable<RawMatch> LineStart()
    {
        int s = t.At(0, "**") ? 2 : 0;
        var key = KeyAt(s);
        if (key != null && Suffix(s + key.Length) is var e && e >= 0) yield return new ChoiceMatch(0, e, key);
    }

    public IEnumerable<RawMatch> Plain()
    {
        int pos = 0;
        while (pos < t.Length)
        {
            budget.Tick();
            var hit = AnswerReAt(pos);
            if (hit == null) { pos++; continue; }
            yield return new ChoiceMatch(pos, hit.Value.End, hit.Value.Key);
            pos = Math.Max(hit.Value.End, pos + 1);
        }
    }
}
