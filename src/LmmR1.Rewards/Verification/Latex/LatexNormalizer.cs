// latex2sympy2_extended's normalize_latex, step by step (boxed → basic_latex → units → nits → malformed_operators),
// written as hand-rolled linear scanners instead of Python regexes so no input can make them backtrack.
// Departure: a trailing \text{…}/\mbox{…} is treated as a unit only when it sits at brace depth 0, so
// `1-\frac{1}{\mathrm{e}}` keeps its e instead of losing `\text{e}}` and its closing brace.
using System.Globalization;
using System.Text;
using System.Runtime.CompilerServices;

namespace LmmR1.Rewards.Verification.Latex;

internal static class LatexNormalizer
{
    public static string Normalize(string text, NormalizationOptions config, Budget budget)
    {
        if (config.Boxed != BoxedMode.None) text = ExtractBoxedContent(text, config.Boxed == BoxedMode.Last);
        budget.Tick();
        if (config.BasicLatex)
        {
            text = text.Replace("\\mathrm{T}", "T").Replace("\\mathrm{d}", "d").Replace("{\\rm d}", "d");
            text = text.Replace("\\left[\\begin{matrix}", "\\begin{bmatrix}").Replace("\\end{matrix}\\right]", "\\end{bmatrix}");
            text = RemoveLeftRight(text);
            text = FixPermutations(text);
            text = RemoveUseless(text);
            budget.CheckNow();
            text = ReplaceInLatex(text);
            budget.CheckNow();
            text = text.Replace('\n', ' ').Replace('\t', ' ');
            if (!text.Contains("matrix", StringComparison.Ordinal)) text = FixDoubledBackslashes(text);
        }
        budget.Tick();
        if (config.Units)
        {
            var t = RemoveTrailingTextUnit(text).Trim();
            if (t.Length > 0 && t != text) text = t;
            for (int k = 0; k < 2; k++)
            {
                t = RemoveUnitWord(text);
                if (t.Length > 0 && t != text) text = t;
            }
        }
        if (config.Nits)
        {
            if (text.Length > 0 && text[0] == '.') text = "0" + text;
            if (text == "0.5") text = "\\frac{1}{2}";
        }
        if (config.MalformedOperators)
        {
            budget.CheckNow();
            text = FixMalformedOperators(text);
            text = FixSqrt(text);
            text = FixFracs(text);
            text = FixASlashB(text);
        }
        budget.Tick();
        return text.Trim();
    }

    // ---------------------------------------------------------------- boxed
    /// <summary>extract_boxed_content: searching right to left for \boxed/\fbox; "last" keeps the last box plus
    /// earlier ones that are close (&lt;10 chars) or separated by and/or/,/; within 70 chars.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static string ExtractBoxedContent(string text, bool lastMode)
    {
        var results = new List<string>();
        int currentPos = text.Length;
        int maxPos = text.Length;
        int lastBoxedStart = -1;
        bool noBoxed = false, noFbox = false;
        while (true)
        {
            // Python's rfind(sub, 0, end): the whole match lies before `end`. Once absent, absent further left.
            int boxedIdx = noBoxed ? -1 : RFind(text, "\\boxed", currentPos);
            int fboxIdx = noFbox ? -1 : RFind(text, "\\fbox", currentPos);
            noBoxed = boxedIdx < 0; noFbox = fboxIdx < 0;
            if (boxedIdx < 0 && fboxIdx < 0) break;
            int startIdx = Math.Max(boxedIdx, fboxIdx);
            int commandEnd = startIdx + (boxedIdx > fboxIdx ? 6 : 5);
            int next = commandEnd;
            while (next < maxPos && char.IsWhiteSpace(text[next])) next++;
            if (next >= maxPos) break;
            if (text[next] == '{')
            {
                int close = MatchingBrace(text, next, maxPos);
                if (close < 0)
                {
                    if (results.Count == 0) results.Add(text[next..]);
                    break;
                }
                var content = text[(next + 1)..close].Trim();
                if (lastMode && lastBoxedStart >= 0)
                {
                    var between = text[(close + 1)..lastBoxedStart];
                    var prev = results.Count > 0 ? results[^1] : "";
                    bool ok = between.Length < 10 || (content != prev && between.Length < 70 && HasSeparator(between));
                    if (!ok) break;
                }
                results.Add(content);
                lastBoxedStart = startIdx;
                maxPos = startIdx;
            }
            else
            {
                if (results.Count == 0) results.Add(text[next..]);
                break;
            }
            currentPos = startIdx;
        }
        if (results.Count == 0) return text;
        results.Reverse();
        return string.Join(",", results);
    }

    private static int RFind(string text, string sub, int end)
    {
        for (int i = end - sub.Length; i >= 0; i--)
            if (string.CompareOrdinal(text, i, sub, 0, sub.Length) == 0) return i;
        return -1;
    }

    private static int MatchingBrace(string text, int open, int maxPos)
    {
        int depth = 1;
        for (int i = open + 1; i < maxPos; i++)
        {
            if (text[i] == '{') depth++;
            else if (text[i] == '}' && --depth == 0) return i;
        }
        return -1;
    }

    // latex2sympy2_extended 1.10.2 (the version Math-Verify 0.8.0 pins): a plain substring test, so "more" counts.
    private static bool HasSeparator(string s) =>
        s.Contains("and", StringComparison.Ordinal) || s.Contains("or", StringComparison.Ordinal) || s.Contains(',') || s.Contains(';');

    internal static bool IsWordChar(char c) => char.IsLetterOrDigit(c) || c == '_';

    // ---------------------------------------------------------------- basic_latex
    private static readonly string[] LeftDelims =
        ["\\{", "{", "\\|", "|", "[", "(", "\\rbracl", "\\lgroup", "\\lbrace", "\\lbrack", "\\vert", "\\lvert", "\\lceil", "\\lfloor", "\\langle", "\\llcorner", "\\ulcorner"];
    private static readonly string[] RightDelims =
        ["\\}", "}", "\\|", "|", "]", ")", "\\rbrack", "\\rgroup", "\\rbrace", "\\vert", "\\rvert", "\\rceil", "\\rfloor", "\\rangle", "\\lrcorner", "\\urcorner"];

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static string RemoveLeftRight(string s)
    {
        if (!s.Contains("left", StringComparison.Ordinal) && !s.Contains("right", StringComparison.Ordinal)) return s;
        var sb = new StringBuilder(s.Length);
        int i = 0;
        while (i < s.Length)
        {
            if (s[i] == '\\')
            {
                int j = i + 1;
                if (j < s.Length && s[j] == 'm') j++;
                string? word = At(s, j, "left") ? "left" : At(s, j, "right") ? "right" : null;
                if (word != null)
                {
                    int k = j + word.Length;
                    foreach (var d in word == "left" ? LeftDelims : RightDelims)
                        if (At(s, k, d)) { sb.Append(d); i = k + d.Length; goto next; }
                }
            }
            sb.Append(s[i]);
            i++;
        next:;
        }
        return sb.ToString();
    }

    // \(([a-zA-Z0-9+\-*/\\ ]+?)\)_{([a-zA-Z0-9+\-*/\\ ]+?)} → \frac{(\1)!}{((\1)-(\2))!}
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static string FixPermutations(string s)
    {
        if (!s.Contains(")_{", StringComparison.Ordinal)) return s;
        var sb = new StringBuilder(s.Length);
        int i = 0;
        while (i < s.Length)
        {
            if (s[i] == '(')
            {
                int a = i + 1, j = a;
                while (j < s.Length && PermChar(s[j])) j++;
                if (j > a && j + 2 < s.Length && s[j] == ')' && s[j + 1] == '_' && s[j + 2] == '{')
                {
                    int b = j + 3, k = b;
                    while (k < s.Length && PermChar(s[k])) k++;
                    if (k > b && k < s.Length && s[k] == '}')
                    {
                        var g1 = s[a..j]; var g2 = s[b..k];
                        sb.Append("\\frac{(").Append(g1).Append(")!}{((").Append(g1).Append(")-(").Append(g2).Append("))!}");
                        i = k + 1;
                        continue;
                    }
                }
            }
            sb.Append(s[i]);
            i++;
        }
        return sb.ToString();

        static bool PermChar(char c) => c is (>= 'a' and <= 'z') or (>= 'A' and <= 'Z') or (>= '0' and <= '9') or '+' or '-' or '*' or '/' or '\\' or ' ';
    }

    // \\mathrm\{th\} | \\!\s* | \\text\s*\{\s*\} | \\\$ | \$ | (?<!\\)["'] | \\displaystyle  → ""
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static string RemoveUseless(string s)
    {
        var sb = new StringBuilder(s.Length);
        int i = 0;
        while (i < s.Length)
        {
            char c = s[i];
            if (c == '\\')
            {
                if (At(s, i, "\\mathrm{th}")) { i += 11; continue; }
                if (At(s, i, "\\!")) { i = SkipWs(s, i + 2); continue; }
                if (At(s, i, "\\text"))
                {
                    int j = SkipWs(s, i + 5);
                    if (j < s.Length && s[j] == '{')
                    {
                        j = SkipWs(s, j + 1);
                        if (j < s.Length && s[j] == '}') { i = j + 1; continue; }
                    }
                }
                if (At(s, i, "\\$")) { i += 2; continue; }
                if (At(s, i, "\\displaystyle")) { i += 13; continue; }
            }
            else if (c == '$') { i++; continue; }
            else if ((c == '"' || c == '\'') && (i == 0 || s[i - 1] != '\\')) { i++; continue; }
            sb.Append(c);
            i++;
        }
        return sb.ToString();
    }

    /// <summary>The to_replace_patterns of latex2sympy2, one alternation scanned left to right.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static string ReplaceInLatex(string s)
    {
        var sb = new StringBuilder(s.Length + 16);
        var wsEnd = WhitespaceRunEnds(s);
        int i = 0;
        while (i < s.Length)
        {
            int len = MatchReplacement(s, wsEnd, i, out var repl);
            if (len > 0) { sb.Append(repl); i += len; }
            else { sb.Append(s[i]); i++; }
        }
        return sb.ToString();
    }

    private static readonly string[] TextSuffixes = ["normal", "bf", "it", "rm"];
    private static readonly (string Word, bool IsText)[] PercentWords =
        [("percentage", false), ("percentage", true), ("percent", false), ("percent", true), ("pct", false), ("pct", true)];

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int MatchReplacement(string s, int[] wsEnd, int i, out string repl)
    {
        char c = s[i];
        repl = "";
        // Every pattern starts with one of these characters; most positions are rejected here.
        if (!(c is '\\' or '{' or '~' or ',' or 'a' or 'o' or 'i' or 'p' || char.IsWhiteSpace(c))) return 0;
        // math / text / frac
        if (c == '\\')
        {
            if (At(s, i, "\\math") && (At(s, i + 5, "rm") || At(s, i + 5, "it") || At(s, i + 5, "bf"))) { repl = "\\text"; return 7; }
            if (At(s, i, "\\text"))
                foreach (var suf in TextSuffixes)
                    if (At(s, i + 5, suf)) { repl = "\\text"; return 5 + suf.Length; }
            if (i + 5 < s.Length && s[i + 1] is 'd' or 't' or 'c' && At(s, i + 2, "frac")) { repl = "\\frac"; return 6; }
        }
        // decimal_space: \s\.
        if (char.IsWhiteSpace(c) && i + 1 < s.Length && s[i + 1] == '.') { repl = " 0."; return 2; }
        // decimal_brace: \{\.
        if (c == '{' && i + 1 < s.Length && s[i + 1] == '.') { repl = "{0."; return 2; }
        // approx: ~=
        if (c == '~' && i + 1 < s.Length && s[i + 1] == '=') { repl = "\\approx"; return 2; }
        // comma: \s*\{\s*,\s*\}
        {
            int j = wsEnd[i];
            if (j < s.Length && s[j] == '{')
            {
                j = wsEnd[j + 1];
                if (j < s.Length && s[j] == ',')
                {
                    j = wsEnd[j + 1];
                    if (j < s.Length && s[j] == '}') { repl = ","; return j + 1 - i; }
                }
            }
        }
        // and_or: (?<![a-zA-Z])(,?\s*(?:and|or))(?![a-zA-Z])
        if (i == 0 || !IsAsciiLetter(s[i - 1]))
        {
            int j = i;
            if (j < s.Length && s[j] == ',') j++;
            j = wsEnd[j];
            int w = At(s, j, "and") ? 3 : At(s, j, "or") ? 2 : 0;
            if (w > 0 && (j + w >= s.Length || !IsAsciiLetter(s[j + w]))) { repl = ","; return j + w - i; }
        }
        // and_or_text: ,?\s*\\text{\s*(?:and|or)\s*}
        {
            int j = i;
            if (j < s.Length && s[j] == ',') j++;
            j = wsEnd[j];
            if (At(s, j, "\\text{"))
            {
                j = wsEnd[j + 6];
                int w = At(s, j, "and") ? 3 : At(s, j, "or") ? 2 : 0;
                if (w > 0)
                {
                    j = wsEnd[j + w];
                    if (j < s.Length && s[j] == '}') { repl = ","; return j + 1 - i; }
                }
            }
        }
        // backslash_space: (?<!\\)\\\s
        if (c == '\\' && (i == 0 || s[i - 1] != '\\') && i + 1 < s.Length && char.IsWhiteSpace(s[i + 1])) { repl = " "; return 2; }
        // infinity
        if (At(s, i, "infinity")) { repl = "\\infty"; return 8; }
        // dot: ,?\\ldots
        if (At(s, i, "\\ldots")) { repl = " "; return 6; }
        if (c == ',' && At(s, i + 1, "\\ldots")) { repl = " "; return 7; }
        // percentage / percent / pct after optional whitespace, and their \text{} forms (1.10.2: no word
        // boundaries, so "28percent" and "percentages" are replaced too).
        {
            int j = wsEnd[i];
            foreach (var (word, isText) in PercentWords)
            {
                if (isText)
                {
                    var lit = "\\text{" + word + "}";
                    if (At(s, i, lit)) { repl = "\\%"; return lit.Length; }
                    continue;
                }
                if (At(s, j, word)) { repl = "\\%"; return j + word.Length - i; }
            }
        }
        // inf: (?<!\\)inf(?!inity)
        if (At(s, i, "inf") && (i == 0 || s[i - 1] != '\\') && !At(s, i + 3, "inity")) { repl = "\\infty"; return 3; }
        // sqrt
        if (At(s, i, " sqrt")) { repl = "\\sqrt"; return 5; }
        return 0;
    }

    // \\\\(?=[a-zA-Z]) → \  (a doubled backslash before a command name)
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static string FixDoubledBackslashes(string s)
    {
        if (!s.Contains("\\\\", StringComparison.Ordinal)) return s;
        var sb = new StringBuilder(s.Length);
        for (int i = 0; i < s.Length; i++)
        {
            if (s[i] == '\\' && i + 2 < s.Length && s[i + 1] == '\\' && IsAsciiLetter(s[i + 2])) { sb.Append('\\'); i++; continue; }
            sb.Append(s[i]);
        }
        return sb.ToString();
    }

    // ---------------------------------------------------------------- units
    /// <summary>unit_superscript_regex: (\\(?:text|mbox){.*?})(\^\d|\{\^\d\})?$ — the first \text{ or \mbox{
    /// (at brace depth 0, our departure) from which the string runs to a final `}` (optionally `^d`).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static string RemoveTrailingTextUnit(string s)
    {
        int end = s.Length;
        if (end > 0 && s[end - 1] == '\n') end--; // Python's $ also matches before a final newline
        // Where the `}` closing the \text{ may sit: last char, or before ^d, or before {^d}.
        var closings = new List<int>(3);
        if (end >= 1 && s[end - 1] == '}') closings.Add(end - 1);
        if (end >= 3 && s[end - 2] == '^' && char.IsDigit(s[end - 1]) && s[end - 3] == '}') closings.Add(end - 3);
        if (end >= 5 && s[end - 1] == '}' && char.IsDigit(s[end - 2]) && s[end - 3] == '^' && s[end - 4] == '{' && s[end - 5] == '}') closings.Add(end - 5);
        if (closings.Count == 0) return s;
        // `.*?` does not cross a newline: the content must start after the last newline before the closing brace.
        var lastNewlineBefore = closings.Select(q => s.LastIndexOf('\n', Math.Max(0, q - 1))).ToArray();
        int depth = 0;
        for (int i = 0; i < end; i++)
        {
            char c = s[i];
            if (c == '\\' && depth == 0 && (At(s, i, "\\text{") || At(s, i, "\\mbox{")))
            {
                int open = i + 5;
                for (int k = 0; k < closings.Count; k++)
                    if (closings[k] > open && lastNewlineBefore[k] < open) return s[..i];
            }
            if (c == '\\' && i + 1 < end && (s[i + 1] == '{' || s[i + 1] == '}')) { i++; continue; }
            if (c == '{') depth++;
            else if (c == '}') depth--;
        }
        return s;
    }

    private static readonly string[] Units =
    [
        "integerpoint", "feet", "sue", "digit", "pound", "meal", "edge", "student", "children ticket", "multiple", "east", "degree",
        "mph", "kmph", "ft", "m square", " m east", "sq m", "deg", "mile", "q .", "monkey", "prime", "ratio", "profit of rs", "rd",
        "o", "gm", "p . m", "lb", "tile", "per", "dm", "lt", "gain", "ab", "way", "west", "a .", "b .", "c .", "d .", "e .", "f .",
        "g .", "h .", "t", "h", "no change", "men", "soldier", "pie", "bc", "excess", "st", "inches", "noon", "cent", "by", "gal",
        "kmh", "c", "acre", "rise", "a . m", "th", "π r 2", "sq", "mark", "l", "toy", "coin", "sq . m", "gallon", "° f", "profit",
        "minw", "yr", "women", "am", "pm", "hr", "cu cm", "square", "v â € ™", "are", "rupee", "rounds", "cubic", "cc", "mtr", "s",
        "ohm", "number", "kmph", "day", "hour", "minute", "min", "second", "man", "woman", "sec", "cube", "mt", "sq inch", "mp",
        "∏ cm ³", "hectare", "more", "sec", "unit", "cu . m", "cm 2", "rs .", "rs", "kg", "g", "month", "km", "m", "cm", "mm",
        "apple", "liter", "loss", "yard", "pure", "year", "increase", "decrease", "d", "less", "Surface", "litre", "pi sq m", "s .",
        "metre", "meter", "inch",
    ];

    /// <summary>units_regex: (\d|\}|\s)\s*(?:unit)(?:s|es)?\s*$ → \1, at the leftmost position it can match.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static string RemoveUnitWord(string s)
    {
        int end = s.Length;
        while (end > 0 && char.IsWhiteSpace(s[end - 1])) end--;
        int best = -1;
        foreach (var unit in Units)
            foreach (var suffix in new[] { "", "s", "es" })
            {
                int len = unit.Length + suffix.Length;
                int start = end - len;
                if (start < 1) continue;
                if (string.CompareOrdinal(s, start, unit, 0, unit.Length) != 0 || string.CompareOrdinal(s, start + unit.Length, suffix, 0, suffix.Length) != 0) continue;
                // Walk back over whitespace: the group char is the first of that run, or the char before it.
                int k = start;
                while (k > 0 && char.IsWhiteSpace(s[k - 1])) k--;
                int p;
                if (k > 0 && (char.IsDigit(s[k - 1]) || s[k - 1] == '}')) p = k - 1;
                else if (k < start) p = k;
                else continue;
                if (best < 0 || p < best) best = p;
            }
        return best < 0 ? s : s[..(best + 1)];
    }

    // ---------------------------------------------------------------- malformed operators
    private static string FixMalformedOperators(string s)
    {
        s = ReplaceParenGroup(s, "^", "^{", "}");
        s = ReplaceParenGroup(s, "sqrt", "\\sqrt{", "}");
        s = FracDigits(s);
        s = LogDigits(s);
        s = FracBraceDigit(s);
        s = FracDigitBrace(s);
        s = SqrtDigit(s);
        return s.Replace(" sqrt", "\\sqrt");
    }

    // `^\s?\((.*?)\)` → `^{\1}` and `sqrt\s?\((.*?)\)` → `\sqrt{\1}` (no newline inside, as `.` in Python).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static string ReplaceParenGroup(string s, string head, string open, string close)
    {
        if (!s.Contains(head, StringComparison.Ordinal)) return s;
        var nextClose = NextIndexArray(s, c => c == ')');
        var nextNewline = NextIndexArray(s, c => c == '\n');
        var sb = new StringBuilder(s.Length);
        int i = 0;
        while (i < s.Length)
        {
            if (At(s, i, head))
            {
                int j = i + head.Length;
                if (j < s.Length && char.IsWhiteSpace(s[j]) && j + 1 < s.Length && s[j + 1] == '(') j++;
                if (j < s.Length && s[j] == '(')
                {
                    int c = nextClose[j + 1];
                    if (c >= 0 && (nextNewline[j + 1] < 0 || nextNewline[j + 1] > c))
                    {
                        sb.Append(open).Append(s, j + 1, c - j - 1).Append(close);
                        i = c + 1;
                        continue;
                    }
                }
            }
            sb.Append(s[i]);
            i++;
        }
        return sb.ToString();
    }

    /// <summary>next[i] = smallest index ≥ i whose char satisfies <paramref name="pred"/>, or -1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int[] NextIndexArray(string s, Func<char, bool> pred)
    {
        var next = new int[s.Length + 1];
        next[s.Length] = -1;
        for (int i = s.Length - 1; i >= 0; i--) next[i] = pred(s[i]) ? i : next[i + 1];
        return next;
    }

    // \\frac\s?(\d)\s?(\d+) → \frac{\1}{\2}
    private static string FracDigits(string s) => CommandDigits(s, "\\frac");

    // \\log_\s?(\d)\s?(\d+) → \log_{\1}{\2}
    private static string LogDigits(string s) => CommandDigits(s, "\\log_");

    // COMMAND\s?(\d)\s?(\d+) → COMMAND{\1}{\2}
    private static string CommandDigits(string s, string command) => ScanCommand(s, command, (i) =>
    {
        int j = OptWs(s, i);
        if (j >= s.Length || !char.IsDigit(s[j])) return null;
        int a = j++;
        j = OptWs(s, j);
        int b = j;
        while (j < s.Length && char.IsDigit(s[j])) j++;
        if (j == b) return null;
        return (j, $"{command}{{{s[a]}}}{{{s[b..j]}}}");
    });

    // \\frac\s?{(.*?)}\s?(\d) → \frac{\1}{\2}: the first `}` followed by an optional space and a digit.
    private static string FracBraceDigit(string s)
    {
        if (!s.Contains("\\frac", StringComparison.Ordinal)) return s;
        var good = new int[s.Length + 1];
        good[s.Length] = -1;
        for (int k = s.Length - 1; k >= 0; k--)
        {
            bool ok = s[k] == '}' && k + 1 < s.Length && (char.IsDigit(s[k + 1]) || (char.IsWhiteSpace(s[k + 1]) && k + 2 < s.Length && char.IsDigit(s[k + 2])));
            good[k] = ok ? k : good[k + 1];
        }
        var nextNewline = NextIndexArray(s, c => c == '\n');
        return ScanCommand(s, "\\frac", (i) =>
        {
            int j = OptWs(s, i);
            if (j >= s.Length || s[j] != '{') return null;
            int contentStart = j + 1;
            int k = good[contentStart];
            if (k < 0 || (nextNewline[contentStart] >= 0 && nextNewline[contentStart] < k)) return null;
            int m = OptWs(s, k + 1);
            return (m + 1, $"\\frac{{{s[contentStart..k]}}}{{{s[m]}}}");
        });
    }

    // \\frac\s?(\d)\s?{(.*?)} → \frac{\1}{\2}
    private static string FracDigitBrace(string s)
    {
        if (!s.Contains("\\frac", StringComparison.Ordinal)) return s;
        var nextClose = NextIndexArray(s, c => c == '}');
        var nextNewline = NextIndexArray(s, c => c == '\n');
        return ScanCommand(s, "\\frac", (i) =>
        {
            int j = OptWs(s, i);
            if (j >= s.Length || !char.IsDigit(s[j])) return null;
            int a = j++;
            j = OptWs(s, j);
            if (j >= s.Length || s[j] != '{') return null;
            int close = nextClose[j + 1];
            if (close < 0 || (nextNewline[j + 1] >= 0 && nextNewline[j + 1] < close)) return null;
            return (close + 1, $"\\frac{{{s[a]}}}{{{s[(j + 1)..close]}}}");
        });
    }

    // \\sqrt\s?(\d) → \sqrt{\1}
    private static string SqrtDigit(string s) => ScanCommand(s, "\\sqrt", (i) =>
    {
        int j = OptWs(s, i);
        if (j >= s.Length || !char.IsDigit(s[j])) return null;
        return (j + 1, $"\\sqrt{{{s[j]}}}");
    });

    private static int OptWs(string s, int i) => i < s.Length && char.IsWhiteSpace(s[i]) ? i + 1 : i;

    /// <summary>re.sub over occurrences of <paramref name="head"/>: <paramref name="tryAt"/> gets the index after
    /// the head and returns (end, replacement) or null. Bounded: a failing scan never repeats past a newline.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static string ScanCommand(string s, string head, Func<int, (int End, string Repl)?> tryAt)
    {
        if (!s.Contains(head, StringComparison.Ordinal)) return s;
        var sb = new StringBuilder(s.Length);
        int i = 0;
        while (i < s.Length)
        {
            if (At(s, i, head))
            {
                var r = tryAt(i + head.Length);
                if (r is { } m) { sb.Append(m.Repl); i = m.End; continue; }
            }
            sb.Append(s[i]);
            i++;
        }
        return sb.ToString();
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static string FixSqrt(string text)
    {
        if (!text.Contains("\\sqrt", StringComparison.Ordinal)) return text;
        var splits = text.Split("\\sqrt");
        var sb = new StringBuilder(splits[0]);
        for (int k = 1; k < splits.Length; k++)
        {
            var split = splits[k].TrimStart();
            if (split.Length > 0 && split[0] != '{' && split[0] != '[') sb.Append("\\sqrt{").Append(split[0]).Append('}').Append(split, 1, split.Length - 1);
            else sb.Append("\\sqrt").Append(split);
        }
        return sb.ToString();
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static string FixFracs(string text)
    {
        var substrs = text.Split("\\frac");
        var sb = new StringBuilder(substrs[0]);
        for (int k = 1; k < substrs.Length; k++)
        {
            var sub = substrs[k].TrimStart();
            sb.Append("\\frac");
            if (sub.Length > 0 && sub[0] == '{') sb.Append(sub);
            else if (sub.Length < 2) return text;
            else
            {
                char a = sub[0], b = sub[1];
                if (b != '{') sb.Append('{').Append(a).Append("}{").Append(b).Append('}').Append(sub, 2, sub.Length - 2);
                else sb.Append('{').Append(a).Append('}').Append(b).Append(sub, 2, sub.Length - 2);
            }
        }
        return sb.ToString();
    }

    private static string FixASlashB(string text)
    {
        var parts = text.Split('/');
        if (parts.Length != 2) return text;
        if (!TryPythonInt(parts[0], out var a) || !TryPythonInt(parts[1], out var b)) return text;
        if (text != $"{a}/{b}") return text;
        return $"\\frac{{{a}}}{{{b}}}";
    }

    // int(str) in Python: optional surrounding whitespace and sign, digits (underscores aside).
    private static bool TryPythonInt(string s, out System.Numerics.BigInteger value)
    {
        value = default;
        var t = s.Trim();
        if (t.Length == 0 || t.Length > 4000) return false;
        return System.Numerics.BigInteger.TryParse(t, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out value);
    }

    // ---------------------------------------------------------------- helpers
    private static bool At(string s, int i, string lit) => i >= 0 && i + lit.Length <= s.Length && string.CompareOrdinal(s, i, lit, 0, lit.Length) == 0;
    /// <summary>wsEnd[i] = first index ≥ i that is not whitespace (wsEnd[len] = len); makes `\s*X` O(1).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int[] WhitespaceRunEnds(string s)
    {
        var r = new int[s.Length + 1];
        r[s.Length] = s.Length;
        for (int i = s.Length - 1; i >= 0; i--) r[i] = char.IsWhiteSpace(s[i]) ? r[i + 1] : i;
        return r;
    }

    private static int SkipWs(string s, int i) { while (i < s.Length && char.IsWhiteSpace(s[i])) i++; return i; }
    private static bool IsAsciiLetter(char c) => c is (>= 'a' and <= 'z') or (>= 'A' and <= 'Z');
}
