// `lmmr1 reward verify|score` through CliApp.Run with the console redirected (the "Console" collection runs alone).
using System.Text.Json;
using LmmR1.Cli;
using LmmR1.Tests.Data;

namespace LmmR1.Tests.Rewards;

[Collection("Console")]
public class RewardCliTests
{
    static (int Code, string Out, string Err) Run(string stdin, params string[] args)
    {
        var (oldIn, oldOut, oldErr) = (Console.In, Console.Out, Console.Error);
        var output = new StringWriter();
        var error = new StringWriter();
        try
        {
            Console.SetIn(new StringReader(stdin));
            Console.SetOut(output);
            Console.SetError(error);
            return (CliApp.Run(args), output.ToString(), error.ToString());
        }
        finally
        {
            Console.SetIn(oldIn);
            Console.SetOut(oldOut);
            Console.SetError(oldErr);
        }
    }

    [Fact]
    public void VerifyWritesOneVerdictPerLine()
    {
        var stdin = "{\"gold\": \"$\\\\frac{1}{2}$\", \"pred\": \"The answer is $\\\\boxed{0.5}$\"}\n" +
                    "{\"gold\": \"7\", \"pred\": \"8\", \"config\": {\"extraction\": \"expr\"}}\n";
        var (code, output, _) = Run(stdin, "reward", "verify");
        Assert.Equal(0, code);
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement).ToArray();
        Assert.Equal([true, false], lines.Select(l => l.GetProperty("verified").GetBoolean()));
        Assert.All(lines, l => Assert.True(l.GetProperty("ms").GetDouble() >= 0));
    }

    [Fact]
    public void VerifyNamesTheMalformedLineAndFails()
    {
        var (code, _, err) = Run("{\"gold\": \"1\", \"pred\": \"1\"}\n{\"gold\": 3, \"pred\": \"3\"}\n", "reward", "verify");
        Assert.Equal(1, code);
        Assert.Equal("error: <stdin>:2: field 'gold': expected a string", err.Trim());
    }

    [Fact]
    public void ScorePrintsTheThreeRewards()
    {
        var (code, output, _) = Run("", "reward", "score", "--label", "60",
            "--response", "<|im_start|>assistant\n<think>t</think><answer>$\\boxed{60}$</answer><|im_end|>");
        Assert.Equal(0, code);
        Assert.Contains("reward 1.5", output);
        Assert.Contains("format_reward 0.5", output);
        Assert.Contains("acc_reward 1.0", output);
    }

    [Fact]
    public void ServeRejectsABadHost()
    {
        var (code, _, err) = Run("", "reward", "serve", "--host", "not-an-ip", "--port", "0");
        Assert.Equal(1, code);
        Assert.StartsWith("error: host must be an IP address", err.Trim());
    }
}
