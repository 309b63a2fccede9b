using TorchSharp;

namespace LmmR1.Tests;

public class SmokeTests
{
    [Fact]
    public void TorchLoadsAndComputes()
    {
        using var t = torch.arange(4, dtype: torch.float32);
        Assert.Equal(6f, t.sum().item<float>());
    }
}
