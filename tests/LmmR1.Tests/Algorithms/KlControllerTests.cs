// Adaptive and fixed KL controllers over several steps against hand computation (double arithmetic in the same
// order as the Python, so the comparison is exact up to 1e-15 relative).
using LmmR1.Algorithms;

namespace LmmR1.Tests.Algorithms;

public class KlControllerTests
{
    [Fact]
    public void AdaptiveControllerFollowsTheProportionalRule()
    {
        // β0 = 0.1, target 0.05, horizon 10000, n = 1000 samples per rollout
        var c = new AdaptiveKlController(0.1, 0.05, 10000);
        // step 1: kl = 0.06 → err = 0.06/0.05 − 1 = 0.2 → mult = 1 + 0.2·1000/10000 = 1.02 → β = 0.102
        c.Update(0.06, 1000);
        Assert.Equal(0.102, c.Value, 1e-15);
        // step 2: kl = 0.5 → err = 9 clipped to 0.2 → ×1.02 → β = 0.10404
        c.Update(0.5, 1000);
        Assert.Equal(0.10404, c.Value, 1e-15);
        // step 3: kl = 0.04 → err = −0.2 → ×0.98 → 0.1019592
        c.Update(0.04, 1000);
        Assert.Equal(0.1019592, c.Value, 1e-15);
        // step 4: kl = 0.05 → err = 0 → unchanged
        c.Update(0.05, 1000);
        Assert.Equal(0.1019592, c.Value, 1e-15);
        // step 5: kl = 0 → err = −1 clipped to −0.2, n = 5000 → ×(1 − 0.2·0.5) = ×0.9 → 0.09176328
        c.Update(0.0, 5000);
        Assert.Equal(0.09176328, c.Value, 1e-15);
    }

    [Fact]
    public void FixedControllerNeverMoves()
    {
        var c = new FixedKlController(0.001);
        c.Update(123.0, 4096);
        Assert.Equal(0.001, c.Value);
    }

    [Fact]
    public void StateSavesAndRestores()
    {
        var c = new AdaptiveKlController(0.1, 0.05, 10000);
        c.Update(0.06, 1000);
        var saved = c.Save();
        Assert.Equal(new KlControllerState(c.Value), saved);
        Assert.Equal(0.102, saved.Value, 1e-15);
        var resumed = new AdaptiveKlController(0.1, 0.05, 10000);
        resumed.Restore(saved);
        c.Update(0.06, 1000);
        resumed.Update(0.06, 1000);
        Assert.Equal(c.Value, resumed.Value);
    }

    [Fact]
    public void CreatePicksAdaptiveOnlyForATruthyTarget()
    {
        Assert.IsType<AdaptiveKlController>(KlController.Create(0.01, 0.1, 10000));
        Assert.IsType<FixedKlController>(KlController.Create(0.01, null, 10000));
        Assert.IsType<FixedKlController>(KlController.Create(0.01, 0.0, 10000));   // `if self.kl_target:` is false for 0.0
    }

    [Fact]
    public void InvalidSettingsAreRejected()
    {
        Assert.Throws<ArgumentException>(() => new AdaptiveKlController(0.1, -1, 10000));
        Assert.Throws<ArgumentException>(() => new AdaptiveKlController(0.1, 0.1, 0));
    }
}
