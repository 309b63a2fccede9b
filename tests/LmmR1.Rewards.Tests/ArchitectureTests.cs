// LmmR1.Rewards must stay free of TorchSharp (it runs in the reward server and in tests without libtorch).
namespace LmmR1.Rewards.Tests;

public sealed class ArchitectureTests
{
    [Fact]
    public void RewardsAssemblyReferencesNoTorchSharp()
    {
        var references = typeof(MathVerifier).Assembly.GetReferencedAssemblies().Select(a => a.Name ?? "").ToList();
        Assert.NotEmpty(references);
        Assert.DoesNotContain(references, n => n.Contains("Torch", StringComparison.OrdinalIgnoreCase));
        // Nor the LmmR1 library, which would pull TorchSharp in transitively.
        Assert.DoesNotContain(references, n => n is "LmmR1" or "LmmR1.Core");
    }
}
