// Disk space and save failures of a training run. The size of a checkpoint and of the final export is estimated
// from the configs (weights in the run's dtype, AdamW moments and fp32 masters, the critic, the Hugging Face export
// with --save_hf_ckpt); free space is checked at start (also by --dry_run) and before each save (then against the
// newest complete checkpoint's real size). A save that fails anyway (ENOSPC, EDQUOT, permissions) becomes an
// InputException that says what failed, how much space it needed and which complete checkpoint is still usable:
// CheckpointStore writes into a temporary folder, so a failed save never touches the complete ones. Extras (plots)
// are best effort: a failure is a warning.
using LmmR1.Infrastructure;
using LmmR1.Models.Qwen;
using LmmR1.Training.Ppo;

namespace LmmR1.Training.Checkpointing;

/// <summary>Estimated bytes of one checkpoint folder (with its HF export when --save_hf_ckpt) and of the final model.</summary>
public sealed record DiskEstimate(double CheckpointBytes, double ExportBytes)
{
    const double Slack = 16e6;   // configs, tokenizer files, trainer state, logs

    public static DiskEstimate Of(PpoConfig c, QwenVLConfig actor, QwenVLConfig? critic)
    {
        double w = c.Model.Bf16 ? 2 : 4, optim = c.Model.Bf16 ? 12 : 8;
        double a = ModelSize.Of(actor).Total;
        double export = a * w + Slack;
        double ckpt = a * w + a * optim + Slack;
        if (c.Model.Lora is { } lora)
        {
            // LoRA: checkpoints and --save_path hold the adapters (and their optimizer state); an HF export
            // (--save_hf_ckpt, --lora_merge's {save_path}_merged) is the whole merged model.
            double n = Models.Qwen.LoraLayout.AdapterParameters(actor, lora);
            ckpt = n * w + n * optim + Slack;
            export = n * w + Slack + (lora.SaveMerged ? a * w : 0);
            if (c.Run.SaveHfCkpt) ckpt += a * w + Slack;
            if (c.UsesCritic && critic is not null) ckpt += ModelSize.Of(critic).Total * (w + optim);
            if (c.Model.SaveValueNetwork && c.UsesCritic && critic is not null) export += ModelSize.Of(critic).Total * w;
            return new DiskEstimate(ckpt, export);
        }
        if (c.UsesCritic && critic is not null)
        {
            double cp = ModelSize.Of(critic).Total;
            ckpt += cp * (w + optim);
        }
        if (c.Run.SaveHfCkpt) ckpt += export;
        if (c.Model.SaveValueNetwork && c.UsesCritic && critic is not null) export += ModelSize.Of(critic).Total * w;
        return new DiskEstimate(ckpt, export);
    }

    public string Describe() =>
        $"disk: about {IoErrors.Gb(CheckpointBytes)} per checkpoint, {IoErrors.Gb(ExportBytes)} for the final model";
}

public static class SaveSafety
{
    /// <summary>Start-of-run checks (and --dry_run's): the output folders are writable and their file systems have
    /// room for the final model and, with --save_steps, one checkpoint. Without --save_steps a checkpoint is only
    /// written on a stop (signal, --stop_after_step) or when the final export fails, so too little room for one is
    /// a note to <paramref name="note"/>, not an error.</summary>
    public static void CheckOutputs(PpoConfig c, DiskEstimate size, Action<string>? note = null)
    {
        OutputFolder.CheckWritable(c.Run.SavePath, "--save_path");
        OutputFolder.CheckWritable(c.Run.CkptPath, "--ckpt_path");
        if (c.Model.SaveValueNetwork) OutputFolder.CheckWritable(c.Run.SavePath.TrimEnd('/') + "_critic", "--save_path");
        if (c.Run.UseTensorboard is { Length: > 0 } tb) OutputFolder.CheckWritable(tb, "--use_tensorboard");
        OutputFolder.CheckFreeSpace(c.Run.SavePath, size.ExportBytes, "--save_path", "the final model");
        try { OutputFolder.CheckFreeSpace(c.Run.CkptPath, size.CheckpointBytes, "--ckpt_path", "a checkpoint"); }
        catch (InputException e) when (c.Run.SaveSteps <= 0)
        {
            note?.Invoke($"note: {e.Message} (only needed on a stop or a failed final export with --save_steps -1)");
        }
    }

    /// <summary>Bytes of a folder tree (0 when absent).</summary>
    public static long FolderBytes(string dir)
    {
        if (!Directory.Exists(dir)) return 0;
        try { return new DirectoryInfo(dir).EnumerateFiles("*", SearchOption.AllDirectories).Sum(f => f.Length); }
        catch (Exception e) when (IoErrors.IsIo(e)) { return 0; }
    }

    /// <summary>Saves checkpoint <paramref name="step"/> through <paramref name="save"/> after checking free space (the
    /// newest complete checkpoint's size, or the estimate); a failure becomes an InputException naming the folder, the
    /// space needed and the checkpoint that is still usable.</summary>
    /// <param name="freeBytes">The free-space probe (default <see cref="IoErrors.FreeBytes"/>; a test seam).</param>
    public static T SaveCheckpoint<T>(CheckpointStore store, long step, DiskEstimate estimate, bool withHf, Func<T> save,
                                      Func<string, long?>? freeBytes = null)
    {
        var latest = store.Complete().LastOrDefault();
        double need = latest.dir is null ? estimate.CheckpointBytes
            : FolderBytes(latest.dir) + (withHf ? FolderBytes(store.HfFolder(latest.step)) : 0);
        string name = CheckpointStore.FolderName(step);
        string still = latest.dir is null ? "no earlier checkpoint exists" : $"the newest complete checkpoint {latest.dir} is intact";
        string resume = latest.dir is null ? "" : " and resume with --load_checkpoint";
        if ((freeBytes ?? IoErrors.FreeBytes)(store.Root) is { } free && free < need)
            throw new InputException($"--ckpt_path: not enough free space to save checkpoint {name} in {store.Root}: it needs about " +
                                     $"{IoErrors.Gb(need)}, {IoErrors.Gb(free)} free; nothing was written ({still}). Free space{resume}, " +
                                     "or point --ckpt_path at a larger disk");
        try { return save(); }
        catch (Exception e) when (IoErrors.IsIo(e))
        {
            // What is complete now (the checkpoint itself may be, when only its HF export failed).
            var now = store.Complete().LastOrDefault();
            string intact = now.dir is null ? "no complete checkpoint exists" : $"the newest complete checkpoint {now.dir} is intact";
            throw new InputException($"saving checkpoint {name} in {store.Root} failed: {IoErrors.Reason(e)} (it needs about {IoErrors.Gb(need)}, " +
                                     $"{FreeText(store.Root)}); the partial save was removed and {intact}. " +
                                     $"Free space{(now.dir is null ? "" : " and resume with --load_checkpoint")}", e);
        }
    }

    /// <summary>Runs an extra (plots, other best-effort outputs): an I/O failure is logged as a warning, not fatal.</summary>
    public static bool BestEffort(string what, Action write, Action<string> log)
    {
        try { write(); return true; }
        catch (Exception e) when (IoErrors.IsIo(e) || e is InputException)
        {
            log($"warning: could not write {what}: {IoErrors.Reason(e)} (training results are not affected)");
            return false;
        }
    }

    static string FreeText(string path) => IoErrors.FreeBytes(path) is { } f ? $"{IoErrors.Gb(f)} free now" : "free space unknown";
}

/// <summary>The final export (--save_path) of a run that finished: when it fails, the trained weights are kept in a
/// checkpoint (the last periodic one when it is of the final step, else one saved now), and the error says how to
/// write the export again without retraining.</summary>
public static class FinalExport
{
    public static void Write(CheckpointStore store, long step, string savePath, DiskEstimate estimate, Action export, Func<string> saveCheckpoint)
    {
        try { export(); }
        catch (Exception e) when (IoErrors.IsIo(e))
        {
            string failed = $"writing the final model to {Path.GetFullPath(savePath)} failed: {IoErrors.Reason(e)} (it needs about " +
                            $"{IoErrors.Gb(estimate.ExportBytes)}; {(IoErrors.FreeBytes(savePath) is { } f ? IoErrors.Gb(f) + " free now" : "free space unknown")})";
            var latest = store.Complete().LastOrDefault();
            string kept;
            if (latest.dir is not null && latest.step == step) kept = latest.dir;
            else
            {
                try { kept = saveCheckpoint(); }
                catch (Exception e2) when (IoErrors.IsIo(e2))
                {
                    throw new InputException($"{failed}; saving checkpoint {CheckpointStore.FolderName(step)} in {store.Root} instead failed too " +
                                             $"({IoErrors.Reason(e2)}), so the weights of global step {step} are lost" +
                                             (latest.dir is null ? "" : $"; the newest complete checkpoint is {latest.dir}"), e);
                }
            }
            throw new InputException($"{failed}; the trained weights of global step {step} are safe in the checkpoint {kept}. Free space (or " +
                                     "choose another --save_path) and rerun the same command with --load_checkpoint: it resumes at the last step " +
                                     "and writes only the final model", e);
        }
    }
}
