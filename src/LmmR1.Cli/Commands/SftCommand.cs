// `lmmr1 sft`: supervised fine-tuning on chat-message or prompt/response datasets (OpenRLHF train_sft's flags and
// defaults), to warm a policy up before RL. Saves an HF folder (+ tokenizer files) to --save_path and metrics.jsonl;
// with --lora_rank (the flags of `lmmr1 train`) a PEFT adapter folder there instead, and with --lora_merge also the
// merged model in {save_path}_merged.
using System.CommandLine;
using LmmR1.Data;
using LmmR1.Infrastructure;
using LmmR1.Models.Qwen;
using LmmR1.Text;
using LmmR1.Training.Logging;
using LmmR1.Training.Ppo;
using LmmR1.Training.Sft;
using TorchSharp;

namespace LmmR1.Cli.Commands;

public static class SftCommand
{
    public static Command Create()
    {
        var cmd = new Command("sft", "Supervised fine-tuning on chat messages or prompt/response pairs (loss on the response tokens only)");
        Option<T> Add<T>(string name, string description, T defaultValue)
        {
            var o = new Option<T>(name) { Description = description, DefaultValueFactory = _ => defaultValue };
            cmd.Options.Add(o);
            return o;
        }
        var pretrain = Add<string?>("--pretrain", "Model folder (config.json, *.safetensors, tokenizer.json)", null);
        var dataset = Add<string?>("--dataset", "Comma list of .jsonl/.json/.parquet files or folders", null);
        var inputKey = Add("--input_key", "Row key of the prompt or of the message list", "input");
        var outputKey = Add<string?>("--output_key", "Row key of the response (prompt/response pairs)", null);
        var chat = Add("--apply_chat_template", "Render string pairs as a user and an assistant message", false);
        var template = Add<string?>("--input_template", "Template with one {} for string prompts without the chat template", "User: {}\nAssistant: ");
        var maxLen = Add("--max_len", "Max tokens per sample (prompt + response)", 2048);
        var maxSamples = Add("--max_samples", "Max samples per dataset and in total", 1_000_000L);
        var trainBatch = Add("--train_batch_size", "Samples per optimizer step", 128);
        var microBatch = Add("--micro_train_batch_size", "Samples per forward/backward", 8);
        var epochs = Add("--max_epochs", "Passes over the dataset", 2);
        var lr = Add("--learning_rate", "Peak learning rate (cosine to 0.1·lr)", 5e-6);
        var warmup = Add("--lr_warmup_ratio", "Warmup share of the schedule", 0.03);
        var betas = Add<double[]>("--adam_betas", "BETA1 BETA2", [0.9, 0.95]);
        betas.Arity = new ArgumentArity(2, 2);
        betas.AllowMultipleArgumentsPerToken = true;
        var l2 = Add("--l2", "Weight decay", 0.0);
        var maxNorm = Add("--max_norm", "Gradient clipping norm", 1.0);
        var savePath = Add("--save_path", "Output model folder (also metrics.jsonl)", "./ckpt");
        var seed = Add("--seed", "Seed of the shuffles", 42);
        var bf16 = Add("--bf16", "bf16 weights, fp32 master weights in AdamW", false);
        var gc = Add("--gradient_checkpointing", "Recompute decoder layers in backward", false);
        var freeze = Add<string[]>("--freeze_prefix", "Freeze parameters whose names start with these prefixes (e.g. visual)", []);
        freeze.Arity = ArgumentArity.OneOrMore;
        freeze.AllowMultipleArgumentsPerToken = true;
        var device = Add("--device", "cpu, cuda or cuda:N", "cpu");
        var processorKwargs = Add<string?>("--processor_kwargs", "JSON with min_pixels / max_pixels", null);
        var logging = Add("--logging_steps", "Log every N optimizer steps", 1L);
        var tensorboard = Add<string?>("--use_tensorboard", "TensorBoard log folder", null);
        var loraRank = Add("--lora_rank", "LoRA rank (0: full fine-tuning)", 0);
        var loraAlpha = Add("--lora_alpha", "LoRA α (scale α / r)", 16.0);
        var loraDropout = Add("--lora_dropout", "Dropout on the adapters' input", 0.0);
        var targets = Add<string[]>("--target_modules", "LoRA layers: all-linear, q_proj … down_proj, or visual[.NAME]", [LoraOptions.AllLinear]);
        targets.Arity = ArgumentArity.OneOrMore;
        targets.AllowMultipleArgumentsPerToken = true;
        var excludes = Add<string[]>("--exclude_modules", "Layers left out of --target_modules", []);
        excludes.Arity = ArgumentArity.OneOrMore;
        excludes.AllowMultipleArgumentsPerToken = true;
        var loraMerge = Add("--lora_merge", "With --lora_rank: also write {save_path}_merged with the adapters merged", false);
        var in4bit = Add("--load_in_4bit", "QLoRA: not supported (TorchSharp has no 4-bit kernels)", false);
        foreach (var name in new[] { "--zero_stage", "--flash_attn", "--packing_samples", "--adam_offload", "--use_wandb", "--wandb_run_name", "--wandb_project", "--save_steps", "--ckpt_path", "--eval_steps" })
            cmd.Options.Add(name is "--flash_attn" or "--packing_samples" or "--adam_offload"
                ? new Option<bool>(name) { Hidden = true }
                : new Option<string?>(name) { Hidden = true });

        cmd.SetAction(pr => InputsCli.Guard(() =>
        {
            var b = pr.GetValue(betas)!;
            var notes = new List<string>();
            var lora = LoraFlags.Bind(pr, loraRank, loraAlpha, loraDropout, targets, excludes, in4bit, loraMerge, notes);
            foreach (var n in notes) Console.Error.WriteLine(n);
            var config = new SftConfig
            {
                Pretrain = pr.GetValue(pretrain),
                Data = new SftDataOptions
                {
                    Dataset = pr.GetValue(dataset), InputKey = pr.GetValue(inputKey)!, OutputKey = pr.GetValue(outputKey),
                    ApplyChatTemplate = pr.GetValue(chat), InputTemplate = pr.GetValue(template), MaxLen = pr.GetValue(maxLen),
                    MaxSamples = pr.GetValue(maxSamples),
                },
                TrainBatchSize = pr.GetValue(trainBatch), MicroTrainBatchSize = pr.GetValue(microBatch), MaxEpochs = pr.GetValue(epochs),
                LearningRate = pr.GetValue(lr), LrWarmupRatio = pr.GetValue(warmup), Beta1 = b[0], Beta2 = b[1], L2 = pr.GetValue(l2),
                MaxNorm = pr.GetValue(maxNorm), Seed = pr.GetValue(seed), Bf16 = pr.GetValue(bf16), GradientCheckpointing = pr.GetValue(gc),
                FreezePrefix = pr.GetValue(freeze) ?? [], SavePath = pr.GetValue(savePath)!, Device = pr.GetValue(device)!,
                ProcessorKwargs = pr.GetValue(processorKwargs), LoggingSteps = pr.GetValue(logging), UseTensorboard = pr.GetValue(tensorboard),
                Lora = lora,
            }.Validate();
            return Run(config);
        }));
        return cmd;
    }

    public static int Run(SftConfig c)
    {
        // Output folders: found unwritable now, not after training.
        OutputFolder.CheckWritable(c.SavePath, "--save_path");
        if (c.UseTensorboard is { Length: > 0 } tb) OutputFolder.CheckWritable(tb, "--use_tensorboard");
        string dir = c.Pretrain!;
        if (!File.Exists(Path.Combine(dir, "tokenizer.json")))
            throw InputException.At(Path.Combine(dir, "tokenizer.json"), null, "--pretrain", "tokenizer.json not found");
        var tokenizer = QwenTokenizer.Load(dir);
        c.Lora?.Select(LoraLayout.LinearLayers(QwenVLConfig.Load(dir)).Select(l => l.Name).ToList());   // --target_modules before loading
        var image = new LmmR1.Vision.ImageProcessorOptions();
        try { image = image.WithProcessorKwargs(c.ProcessorKwargs); }
        catch (InputException e) when (!e.Message.Contains("--processor_kwargs")) { throw InputException.At(null, null, "--processor_kwargs", e.Message); }
        var processor = new QwenVLProcessor(tokenizer, new QwenVLProcessorOptions { Image = image });
        using var data = SftDataset.Load(c.Data, processor, Console.Error);
        var device = ModelCommands.ParseDevice(c.Device);
        torch.manual_seed(c.Seed);
        using var model = QwenVLModel.Load(dir, c.Bf16 ? torch.ScalarType.BFloat16 : torch.ScalarType.Float32, device);
        if (c.Lora is { } lo)
        {
            var adapters = model.AttachLora(lo.Select(model.LinearLayerNames()), lo.Rank, lo.Alpha, lo.Dropout, c.Seed);
            Console.WriteLine($"LoRA r={lo.Rank} α={lo.Alpha} on {adapters.Layers.Count} linear layers: {adapters.ParameterCount:N0} trainable parameters");
        }
        Directory.CreateDirectory(c.SavePath);
        AtomicFile.WriteAllText(Path.Combine(c.SavePath, "sft_config.json"), System.Text.Json.JsonSerializer.Serialize(c,
            new System.Text.Json.JsonSerializerOptions { WriteIndented = true, PropertyNamingPolicy = System.Text.Json.JsonNamingPolicy.SnakeCaseLower }));
        using var metrics = new MetricsLog(c.SavePath, c.UseTensorboard);
        using var trainer = new SftTrainer(c, model, data, tokenizer.PadTokenId, metrics, Console.WriteLine);
        Console.WriteLine($"lmmr1 sft: {data.Count} samples, {trainer.StepsPerEpoch} step(s) per epoch, {trainer.MaxSteps} in total " +
                          $"({c.TrainBatchSize} per step in micro-batches of {c.MicroTrainBatchSize})");
        trainer.Fit();
        if (model.Lora is null)
        {
            model.SaveHf(c.SavePath);
            PpoCheckpoint.CopyTokenizerFiles(dir, c.SavePath);
            Console.WriteLine($"saved the fine-tuned model to {Path.GetFullPath(c.SavePath)}");
        }
        else
        {
            PeftAdapterFolder.Write(model, c.SavePath, Path.GetFullPath(dir));
            PpoCheckpoint.CopyTokenizerFiles(dir, c.SavePath);
            Console.WriteLine($"saved the LoRA adapter (PEFT folder) to {Path.GetFullPath(c.SavePath)}");
            if (c.Lora!.SaveMerged)
            {
                string merged = c.SavePath.TrimEnd('/') + "_merged";
                model.SaveHf(merged);
                PpoCheckpoint.CopyTokenizerFiles(dir, merged);
                Console.WriteLine($"saved the merged model to {Path.GetFullPath(merged)}");
            }
        }
        return 0;
    }
}
