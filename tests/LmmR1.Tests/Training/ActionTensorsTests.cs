// The right-aligned per-action layout the step's phases share: the mask from response lengths, a micro-batch result
// aligned into rollout width (slots outside a row's actions exactly 0, whatever the model wrote there), and a
// micro-batch's rows sliced back out — checked against values written by hand, slot by slot.
using LmmR1.Training.Ppo;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Tests.Training;

public class ActionTensorsTests
{
    static ExperienceItem Item(int responseLength) => new()
    {
        PromptIndex = 0, SampleIndex = 0, PromptIds = [5, 6], ResponseIds = Enumerable.Repeat(9L, responseLength).ToArray(),
    };

    [Fact]
    public void AlignThenRowsGivesEachRowItsOwnActionValues()
    {
        using var scope = NewDisposeScope();
        var items = new[] { Item(3), Item(1), Item(2) };
        var mask = ActionTensors.Mask(items, CPU);                                              // [3, 3]
        Assert.Equal(new[] { true, true, true, false, false, true, false, true, true }, mask.data<bool>().ToArray());

        // A micro-batch of rows 1 and 2 (A = 2) whose model output has garbage (99, NaN) on the padding slots.
        var microMask = ActionTensors.Mask([items[1], items[2]], CPU);                          // [2, 2]
        var output = tensor(new float[] { 99f, 1.5f, 2.5f, 3.5f }, [2, 2]);
        output[0, 0] = float.NaN;
        var aligned = ActionTensors.Align(output, microMask, width: 3);                          // [2, 3]
        Assert.Equal(new float[] { 0f, 0f, 1.5f, 0f, 2.5f, 3.5f }, aligned.data<float>().ToArray());

        // The rollout-wide tensor [row 0 = 1, 2, 3 | rows 1, 2 from above]; slice rows 2 and 0 back out as a micro-batch.
        var rolloutWide = cat([tensor(new float[] { 1f, 2f, 3f }, [1, 3]), aligned], 0);
        var pickMask = ActionTensors.Mask([items[2], items[0]], CPU);                          // [2, 3]
        var rows = ActionTensors.Rows(rolloutWide, tensor(new long[] { 2, 0 }), pickMask);
        Assert.Equal(new float[] { 0f, 2.5f, 3.5f, 1f, 2f, 3f }, rows.data<float>().ToArray());

        // A micro-batch narrower than the rollout: rows 1 and 2 only → A = 2, the last two columns.
        var narrow = ActionTensors.Rows(rolloutWide, tensor(new long[] { 1, 2 }), microMask);
        Assert.Equal(new long[] { 2, 2 }, narrow.shape);
        Assert.Equal(new float[] { 0f, 1.5f, 2.5f, 3.5f }, narrow.data<float>().ToArray());
        Assert.Equal(new[] { new float[] { 1f, 2f, 3f }, [1.5f], [2.5f, 3.5f] }, ActionTensors.PerRow(rolloutWide, items));
    }

    [Fact]
    public void CollateLeftPadsSequencesAndItsMaskIsTheSameLayout()
    {
        var items = new[] { Item(3), Item(1) };
        using var e = Experience.Collate(items, CPU, padTokenId: 0);
        Assert.Equal(new long[] { 5, 6, 9, 9, 9, 0, 0, 5, 6, 9 }, e.Sequences.data<long>().ToArray());
        Assert.Equal(new long[] { 1, 1, 1, 1, 1, 0, 0, 1, 1, 1 }, e.AttentionMask.data<long>().ToArray());
        using var mask = ActionTensors.Mask(items, CPU);
        Assert.Equal(mask.data<bool>().ToArray(), e.ActionMask.data<bool>().ToArray());
    }
}
