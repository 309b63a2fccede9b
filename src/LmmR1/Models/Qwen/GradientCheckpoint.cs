// Activation checkpointing for one decoder layer as a custom autograd Function (TorchSharp has no checkpoint utility,
// TORCHSHARP_NOTES §2): forward runs the layer without building a graph and keeps only its input (and the shared
// cos/sin/mask, saved through the context so they outlive the caller's dispose scope); backward recomputes the layer
// with grad enabled and backpropagates through it. Parameters only get grads when the layer input requires grad.
// No RNG replay: fine because the model has no dropout.
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Models.Qwen;

internal sealed class CheckpointFunction : torch.autograd.SingleTensorFunction<CheckpointFunction>
{
    public override string Name => "QwenLayerCheckpoint";

    /// <summary>vars: [Tensor x, Func&lt;Tensor, IReadOnlyList&lt;Tensor&gt;, Tensor&gt; layer, Tensor aux0, aux1, …].</summary>
    public override Tensor forward(torch.autograd.AutogradContext ctx, params object[] vars)
    {
        var x = (Tensor)vars[0];
        var fn = (Func<Tensor, IReadOnlyList<Tensor>, Tensor>)vars[1];
        var aux = vars.Skip(2).Cast<Tensor>().ToList();
        ctx.save_for_backward([x, .. aux]);
        ctx.save_data("fn", fn);
        return fn(x, aux);
    }

    public override List<Tensor> backward(torch.autograd.AutogradContext ctx, Tensor grad)
    {
        var saved = ctx.get_saved_variables();
        var fn = (Func<Tensor, IReadOnlyList<Tensor>, Tensor>)ctx.get_data("fn");
        Tensor inputGrad;
        using (var scope = torch.NewDisposeScope())
        {
            var xd = saved[0].detach().requires_grad_(true);
            using (torch.enable_grad())
            {
                var y = fn(xd, saved.Skip(1).ToList());
                torch.autograd.backward([y], [grad]);
            }
            inputGrad = (xd.grad ?? torch.zeros_like(xd)).DetachFromDisposeScope();
        }
        // One gradient per forward argument: the input, then null for the delegate and every auxiliary tensor.
        var result = new List<Tensor> { inputGrad, null! };
        for (int i = 1; i < saved.Count; i++) result.Add(null!);
        return result;
    }
}
