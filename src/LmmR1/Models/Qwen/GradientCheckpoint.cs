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
        ctx.save_data("owner", Environment.CurrentManagedThreadId);
        return fn(x, aux);
    }

    public override List<Tensor> backward(torch.autograd.AutogradContext ctx, Tensor grad)
    {
        var fn = (Func<Tensor, IReadOnlyList<Tensor>, Tensor>)ctx.get_data("fn");
        Tensor inputGrad;
        int savedCount;
        using (var scope = torch.NewDisposeScope())
        {
            // Unpacked saved tensors are fresh handles: inside the scope so they are freed here even when libtorch runs
            // this on a worker thread (no caller scope there).
            var saved = ctx.get_saved_variables();
            savedCount = saved.Count;
            var xd = saved[0].detach().requires_grad_(true);
            using (torch.enable_grad())
            {
                var y = fn(xd, saved.Skip(1).ToList());
                torch.autograd.backward([y], [grad]);
            }
            inputGrad = (xd.grad ?? torch.zeros_like(xd)).DetachFromDisposeScope();
        }
        // TorchSharp wraps the incoming gradient in a handle it never frees, and libtorch copies the one we return:
        // both would otherwise hold a [B, T, H] activation-gradient each until the finalizer runs (late, blind to GPU
        // memory). The incoming one is done now; the returned one is freed by ReturnedGradients.Release after backward.
        grad.Dispose();
        ReturnedGradients.Keep((int)ctx.get_data("owner"), inputGrad);
        // One gradient per forward argument: the input, then null for the delegate and every auxiliary tensor.
        var result = new List<Tensor> { inputGrad, null! };
        for (int i = 1; i < savedCount; i++) result.Add(null!);
        return result;
    }
}

/// <summary>The input gradients that custom autograd Functions (CheckpointFunction, HeadLogProbFunction) returned to
/// libtorch, which keeps its own references: TorchSharp's handles of them would otherwise hold an activation-sized
/// gradient each until the finalizer runs (late, blind to GPU memory). Kept per thread that ran the forward (the
/// model's user), so concurrent trainers never free each other's.</summary>
internal static class ReturnedGradients
{
    static readonly System.Collections.Concurrent.ConcurrentDictionary<int, System.Collections.Concurrent.ConcurrentQueue<Tensor>> Returned = new();

    public static void Keep(int owner, Tensor t) => Returned.GetOrAdd(owner, _ => new()).Enqueue(t);

    /// <summary>Frees the handles kept for forwards run on the calling thread (call after each backward()).</summary>
    public static void Release()
    {
        if (!Returned.TryGetValue(Environment.CurrentManagedThreadId, out var queue)) return;
        while (queue.TryDequeue(out var t)) t.Dispose();
    }
}
