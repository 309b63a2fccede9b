// Benchmarks of LmmR1.Rewards (numbers and exact commands in bench/README.md, section Rewards):
//   cases   [--threads 2] [--seconds 10]   verifications/s over math_verify_cases.jsonl, N threads in parallel
//   hostile [--repeats 20]                 worst-case time of one Verify over hostile inputs (production budget)
//   body    [--out bench/rewards/body.json] writes the 64-sample request body the wrk script posts
//   reward  [--threads 2] [--seconds 10]   LMM-R1 rule reward throughput (RuleRewardModel) on the 64 body samples
//   serve   [--port 5000] [--threads N]    the reward server (same code as `lmmr1 reward serve`)
using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using LmmR1.Rewards;
using LmmR1.Rewards.Server;

string Arg(string name, string fallback)
{
    int i = Array.IndexOf(args, name);
    return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
}

string RepoRoot()
{
    var dir = new DirectoryInfo(AppContext.BaseDirectory);
    while (dir != null && !File.Exists(Path.Combine(dir.FullName, "LmmR1.slnx")) && !Directory.Exists(Path.Combine(dir.FullName, "reference"))) dir = dir.Parent;
    return dir?.FullName ?? Directory.GetCurrentDirectory();
}

var command = args.Length > 0 ? args[0] : "cases";
switch (command)
{
    case "cases": return Cases();
    case "hostile": return Hostile();
    case "body": return Body();
    case "reward": return await RewardThroughput();
    case "serve": return await Serve();
    default:
        Console.Error.WriteLine("usage: cases | hostile | body | serve");
        return 2;
}

int Cases()
{
    var path = Arg("--cases", Path.GetFullPath(Path.Combine(RepoRoot(), "..", "shared", "reference", "math_verify_cases.jsonl")));
    int threads = int.Parse(Arg("--threads", "2"), CultureInfo.InvariantCulture);
    double seconds = double.Parse(Arg("--seconds", "10"), CultureInfo.InvariantCulture);
    var cases = new List<(string Gold, string Pred, VerifyOptions Options)>();
    foreach (var line in File.ReadLines(path))
    {
        if (string.IsNullOrWhiteSpace(line)) continue;
        var (g, p, o) = VerifyJsonl.ParseLine(line, path, cases.Count + 1);
        cases.Add((g, p, o)); // production budget (30 ms)
    }
    MathVerifier.WarmUp();
    foreach (var (g, p, o) in cases) MathVerifier.Verify(g, p, o);

    long total = 0;
    var latencies = new List<double>[threads];
    var cpu0 = Process.GetCurrentProcess().TotalProcessorTime;
    var pause0 = GC.GetTotalPauseDuration();
    int gen2 = GC.CollectionCount(2), gen0 = GC.CollectionCount(0);
    var sw = Stopwatch.StartNew();
    var workers = Enumerable.Range(0, threads).Select(t => new Thread(() =>
    {
        var lat = latencies[t] = [];
        int i = t * 37 % cases.Count;
        long n = 0;
        while (sw.Elapsed.TotalSeconds < seconds)
        {
            var (g, p, o) = cases[i];
            var s = Stopwatch.GetTimestamp();
            MathVerifier.Verify(g, p, o);
            lat.Add(Stopwatch.GetElapsedTime(s).TotalMilliseconds);
            n++;
            i = (i + 1) % cases.Count;
        }
        Interlocked.Add(ref total, n);
    })).ToArray();
    foreach (var w in workers) w.Start();
    foreach (var w in workers) w.Join();
    var all = latencies.SelectMany(l => l).Order().ToArray();
    Console.WriteLine($"cases: {cases.Count}, threads: {threads}, cores seen: {Environment.ProcessorCount}, {sw.Elapsed.TotalSeconds:F1} s");
    var cpu = (Process.GetCurrentProcess().TotalProcessorTime - cpu0).TotalSeconds;
    Console.WriteLine($"verifications/s: {total / sw.Elapsed.TotalSeconds:F0} (wall); {total / cpu:F0} per CPU-second of this process " +
                      $"({cpu / sw.Elapsed.TotalSeconds:F2} of {threads} cores used; other processes took the rest)");
    Console.WriteLine($"per verify: mean {all.Average():F3} ms, p50 {Pct(all, 50):F3} ms, p99 {Pct(all, 99):F3} ms, p99.9 {Pct(all, 99.9):F3} ms, max {all[^1]:F3} ms");
    Console.WriteLine($"GC: {GC.CollectionCount(0) - gen0} gen0, {GC.CollectionCount(2) - gen2} gen2, total pause {(GC.GetTotalPauseDuration() - pause0).TotalMilliseconds:F0} ms");
    return 0;
}

static double Pct(double[] sorted, double p) => sorted[Math.Clamp((int)Math.Ceiling(p / 100 * sorted.Length) - 1, 0, sorted.Length - 1)];

int Hostile()
{
    int repeats = int.Parse(Arg("--repeats", "20"), CultureInfo.InvariantCulture);
    var options = VerifyOptions.FromConfig(); // latex+expr, \boxed first, production time budget
    MathVerifier.WarmUp();
    double worst = 0, worstCpu = 0;
    string worstName = "";
    int budgetHits = 0, runs = 0;
    foreach (var (name, gold, pred) in HostileInputs())
    {
        var times = new List<double>();
        string reason = "";
        for (int r = 0; r < repeats; r++)
        {
            var cpu0 = ThreadCpuMs();
            var s = Stopwatch.GetTimestamp();
            var res = MathVerifier.Verify(gold, pred, options);
            times.Add(Stopwatch.GetElapsedTime(s).TotalMilliseconds);
            var cpu = ThreadCpuMs() - cpu0;
            if (cpu > worstCpu) worstCpu = cpu;
            reason = res.Reason;
            runs++;
            if (res.Reason == "time budget exceeded") budgetHits++;
        }
        var max = times.Max();
        if (max > worst) { worst = max; worstName = name; }
        Console.WriteLine($"{name,-34} first {times[0],7:F2} ms  max {max,7:F2} ms  median {times.Order().ElementAt(times.Count / 2),7:F2} ms  {Trim(reason)}");
    }
    Console.WriteLine($"worst case: {worst:F2} ms wall ({worstName}), {worstCpu:F2} ms thread CPU; budget {options.TimeBudget.TotalMilliseconds} ms hit in {budgetHits} of {runs} runs");
    return 0;
}

// CPU time of the calling thread (Linux clock_gettime(CLOCK_THREAD_CPUTIME_ID)): what the call cost without the
// time other processes held the core.
static double ThreadCpuMs()
{
    if (!OperatingSystem.IsLinux()) return 0;
    clock_gettime(3, out var ts);
    return ts.Sec * 1e3 + ts.Nsec / 1e6;
}

[DllImport("libc", SetLastError = true)]
static extern int clock_gettime(int clock, out Timespec ts);

static string Trim(string s) => s.Length > 60 ? s[..60] + "…" : s;

static IEnumerable<(string, string, string)> HostileInputs()
{
    static string R(string s, int n) => string.Concat(Enumerable.Repeat(s, n));
    yield return ("a million digits", "$1$", R("1", 1_000_000));
    yield return ("a million letters in $…$", "$1$", "$" + R("a", 1_000_000) + "$");
    yield return ("100k nested \\boxed{", "$1$", R("\\boxed{", 100_000) + "1" + R("}", 100_000));
    yield return ("5000 nested braces", "$1$", "$" + R("{", 5000) + "1" + R("}", 5000) + "$");
    yield return ("5000 nested parentheses", "$1$", "$" + R("(", 5000) + "1" + R(")", 5000) + "$");
    yield return ("10^{10^{10}} vs itself", "$10^{10^{10}}$", "$10^{10^{10}}$");
    yield return ("10^{10^{10}} vs 1", "$1$", "$10^{10^{10}}$");
    yield return ("1000000! vs itself", "$1000000!$", "$1000000!$");
    yield return ("(10^100)! vs 5", "$5$", "$(10^{100})!$");
    yield return ("power tower", "$2^{2^{2^{2^{2^{2}}}}}$", "$2^{2^{2^{2^{2^{2}}}}}$");
    yield return ("200k dollar signs", "$1$", R("$", 200_000));
    yield return ("200k unclosed \\[", "$1$", R("\\[", 200_000));
    yield return ("200k unclosed \\(", "$1$", R("\\(", 200_000));
    yield return ("50k 'final answer is'", "$1$", R("final answer is ", 50_000));
    yield return ("100k 'answer:'", "$1$", R("answer: ", 100_000));
    yield return ("a million spaces", "$1$", R(" ", 1_000_000));
    yield return ("300k '1 ' (expression run)", "$2$", R("1 ", 300_000));
    yield return ("100k-term sum (truncated)", "$100000$", "$" + R("1+", 99_999) + "1$");
    yield return ("16k-term sum", "$16000$", "$" + R("1+", 15_999) + "1$");
    yield return ("30k implicit product", "$1$", "$" + R("x", 30_000) + "$");
    yield return ("30k unary minus", "$1$", "$" + R("-", 30_000) + "1$");
    yield return ("3000 nested \\frac", "$1$", "$" + R("\\frac{1}{", 3000) + "2" + R("}", 3000) + "$");
    yield return ("5000 nested \\sqrt", "$1$", "$" + R("\\sqrt{", 5000) + "2" + R("}", 5000) + "$");
    yield return ("5000-element set vs reversed", "$" + string.Join(",", Enumerable.Range(0, 5000)) + "$", "$" + string.Join(",", Enumerable.Range(0, 5000).Reverse()) + "$");
    yield return ("3000-element boxed sets, differ", "\\boxed{" + string.Join(",", Enumerable.Range(0, 3000)) + "}", "\\boxed{" + string.Join(",", Enumerable.Range(0, 3000).Select(i => i * 2)) + "}");
    yield return ("2000 pairs vs swapped", "$" + string.Join(",", Enumerable.Range(0, 2000).Select(i => $"({i},{i + 1})")) + "$", "$" + string.Join(",", Enumerable.Range(0, 2000).Select(i => $"({i + 1},{i})")) + "$");
    yield return ("20000-digit integers", "$" + R("9", 20000) + "$", "$" + R("9", 20000) + "$");
    yield return ("20000-digit decimal vs 1/3", "$0." + R("3", 20000) + "$", "$\\frac{1}{3}$");
    yield return ("20k \\frac{ bait", "\\frac{1}{2}", R("\\frac{", 20000));
    yield return ("50k ^( bait", "$1$", R("^(", 50000));
    yield return ("5000 \\text{a}", "$1$", "$" + R("\\text{a}", 5000) + "$");
    yield return ("100k ' percent'", "$1$", R(" percent", 100000));
    yield return ("20k '$1$ and '", "$1$", R("$1$ and ", 20000));
    yield return ("100x100 matrix", "$1$", "$\\begin{pmatrix}" + string.Join("\\\\", Enumerable.Range(0, 100).Select(_ => string.Join("&", Enumerable.Range(0, 100)))) + "\\end{pmatrix}$");
    yield return ("matrix^1000000", "$1$", "$\\begin{pmatrix}1&1\\\\1&0\\end{pmatrix}^{1000000}$");
    yield return ("10k relation chain", "$1$", "$" + R("x<", 10000) + "x$");
    yield return ("20k bars", "$1$", "$" + R("|", 20000) + "$");
    yield return ("|cubic| inequality", "$1 \\le |x^3 - 2x + 1| \\le 2$", "$[-1,1]$");
    yield return ("100k random symbols", "$1$", new string([.. Enumerable.Range(0, 100000).Select(i => (char)(0x2000 + i * 7919 % 0x3000))]));
    yield return ("sum to 10^8", "$1$", "$\\sum_{k=1}^{100000000} k$");
}

async Task<int> RewardThroughput()
{
    int threads = int.Parse(Arg("--threads", "2"), CultureInfo.InvariantCulture);
    double seconds = double.Parse(Arg("--seconds", "10"), CultureInfo.InvariantCulture);
    var (q, p, l) = Samples(64);
    MathVerifier.WarmUp();
    using var model = new RuleRewardModel(new RewardOptions(), new VerificationPool(threads));
    await model.ScoreAsync(q, p, l);
    var cpu0 = Process.GetCurrentProcess().TotalProcessorTime;
    var sw = Stopwatch.StartNew();
    long batches = 0;
    double ones = 0;
    while (sw.Elapsed.TotalSeconds < seconds)
    {
        var r = await model.ScoreAsync(q, p, l);
        ones = r.Sum(x => x.AccuracyReward);
        batches++;
    }
    var cpu = (Process.GetCurrentProcess().TotalProcessorTime - cpu0).TotalSeconds;
    Console.WriteLine($"rule reward: {threads} threads, {batches * 64 / sw.Elapsed.TotalSeconds:F0} samples/s wall, {batches * 64 / cpu:F0} per CPU-second " +
                      $"({batches} batches of 64 in {sw.Elapsed.TotalSeconds:F1} s, {cpu:F1} CPU-s; {ones} of 64 accurate)");
    return 0;
}

int Body()
{
    var outPath = Arg("--out", Path.Combine("bench", "rewards", "body.json"));
    int batch = int.Parse(Arg("--batch", "64"), CultureInfo.InvariantCulture);
    var (queries, prompts, labels) = Samples(batch);
    var json = JsonSerializer.Serialize(new Dictionary<string, string[]> { ["query"] = queries, ["prompts"] = prompts, ["labels"] = labels });
    File.WriteAllText(outPath, json);
    Console.WriteLine($"wrote {outPath}: {batch} samples, {json.Length} bytes");
    return 0;
}

// Deterministic LMM-R1-shaped samples: a chatml prompt, ~0.5–6 KB of reasoning, an answer block; about half correct,
// some unformatted, answers of many kinds (integers, fractions, radicals, intervals, sets, matrices, degrees).
static (string[] Q, string[] P, string[] L) Samples(int n)
{
    (string Label, string Right, string Wrong)[] answers =
    [
        ("60", "60", "30"), ("\\frac{3}{4}", "0.75", "\\frac{4}{3}"), ("2\\sqrt{3}", "\\sqrt{12}", "3\\sqrt{2}"),
        ("[-2, 7]", "x \\in [-2,7]", "(-2,7)"), ("\\{1, 2, 3\\}", "3, 2, 1", "1, 2"), ("90^\\circ", "90", "180"),
        ("\\begin{pmatrix}1 & 2 \\\\ 3 & 4\\end{pmatrix}", "\\begin{pmatrix}1 & 2 \\\\ 3 & 4\\end{pmatrix}", "\\begin{pmatrix}1 & 2 \\\\ 3 & 5\\end{pmatrix}"),
        ("x^2+2x+1", "(x+1)^2", "x^2+1"), ("\\frac{\\pi}{6}", "\\frac{\\pi}{6}", "30"), ("1000", "1,000", "100"),
        ("28\\%", "0.28", "28"), ("(1, \\infty)", "(1, +\\infty)", "[1, \\infty)"),
    ];
    const string Reasoning = "We first simplify the expression. Let $a = 2$ and $b = 3$, so $a + b = 5$ and $ab = 6$. " +
        "Squaring gives $(a+b)^2 = a^2 + 2ab + b^2 = 25$, hence $a^2 + b^2 = 13$. By the quadratic formula " +
        "$x = \\frac{-b \\pm \\sqrt{b^2 - 4ac}}{2a}$, and checking the discriminant $\\Delta = 1 > 0$ we get two real roots. ";
    var q = new string[n]; var p = new string[n]; var l = new string[n];
    for (int i = 0; i < n; i++)
    {
        var (label, right, wrong) = answers[i % answers.Length];
        bool correct = i % 2 == 0;
        bool formatted = i % 5 != 0;
        var think = string.Concat(Enumerable.Repeat(Reasoning, 1 + i * 7 % 16));
        var ans = $"The answer is $\\boxed{{{(correct ? right : wrong)}}}$.";
        var response = formatted ? $"<think>{think}</think><answer>{ans}</answer>" : think + ans;
        p[i] = $"[{{\"role\":\"user\",\"content\":\"Problem {i}\"}}]";
        q[i] = $"<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nProblem {i}: compute it.<|im_end|>\n<|im_start|>assistant\n{response}<|im_end|>";
        l[i] = label;
    }
    return (q, p, l);
}

async Task<int> Serve()
{
    AppContext.SetData("System.Threading.ThreadPool.UnfairSemaphoreSpinLimit", 0); // as `lmmr1 reward serve`
    var options = new RewardServerOptions
    {
        Host = Arg("--host", "127.0.0.1"),
        Port = int.Parse(Arg("--port", "5000"), CultureInfo.InvariantCulture),
        Threads = args.Contains("--threads") ? int.Parse(Arg("--threads", "2"), CultureInfo.InvariantCulture) : null,
    };
    MathVerifier.WarmUp();
    await using var server = RewardServer.Create(options);
    await server.StartAsync();
    Console.Error.WriteLine($"listening on {string.Join(", ", server.Addresses)}");
    var done = new TaskCompletionSource();
    Console.CancelKeyPress += (_, e) => { e.Cancel = true; done.TrySetResult(); };
    AppDomain.CurrentDomain.ProcessExit += (_, _) => done.TrySetResult();
    await done.Task;
    await server.StopAsync();
    return 0;
}

[StructLayout(LayoutKind.Sequential)]
internal struct Timespec { public long Sec; public long Nsec; }
