// What a PPO checkpoint folder (written through CheckpointStore, so crash-safe) holds, and restoring it:
//   actor/                 the actor as a loadable Hugging Face folder (+ tokenizer files): upstream's global_stepN_hf
//   actor_optim.safetensors  AdamW moments and fp32 masters, keyed by parameter name
//   critic/, critic_optim.safetensors  (gae)
//   trainer_state.json     PpoTrainState (global step, consumed prompts, episode, data position, optimizer steps, β)
// Minimal by design: the later checkpoint/resume work (HF export cadence, plots, clean stops) builds on it.
using System.Text.Json;
using LmmR1.Infrastructure;
using LmmR1.Models.Safetensors;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Training.Ppo;

public static class PpoCheckpoint
{
    public const string StateFile = "trainer_state.json";

    /// <summary>Tokenizer / processor files copied next to a saved model so the folder loads on its own.</summary>
    public static readonly string[] TokenizerFiles =
    [
        "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json", "added_tokens.json",
        "chat_template.json", "chat_template.jinja", "preprocessor_config.json", "video_preprocessor_config.json",
    ];

    sealed record Saved(PpoTrainState State, long ActorAdamSteps, long CriticAdamSteps);

    public static void CopyTokenizerFiles(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var name in TokenizerFiles)
        {
            string src = Path.Combine(from, name);
            if (File.Exists(src) && Path.GetFullPath(src) != Path.GetFullPath(Path.Combine(to, name)))
                File.Copy(src, Path.Combine(to, name), overwrite: true);
        }
    }

    /// <summary>Writes everything the trainer needs to continue into <paramref name="dir"/>.</summary>
    public static void Write(PpoTrainer trainer, string dir, string tokenizerDir)
    {
        string actorDir = Path.Combine(dir, "actor");
        trainer.Models.Actor.SaveHf(actorDir);
        CopyTokenizerFiles(tokenizerDir, actorDir);
        SafetensorsWriter.Write(Path.Combine(dir, "actor_optim.safetensors"), trainer.ActorOptimizer.StateTensors());
        if (trainer.Models.Critic is { } critic && trainer.CriticOptimizer is { } co)
        {
            critic.Save(Path.Combine(dir, "critic"));
            SafetensorsWriter.Write(Path.Combine(dir, "critic_optim.safetensors"), co.StateTensors());
        }
        var saved = new Saved(trainer.State, trainer.ActorOptimizer.AdamSteps, trainer.CriticOptimizer?.AdamSteps ?? 0);
        File.WriteAllText(Path.Combine(dir, StateFile), JsonSerializer.Serialize(saved, new JsonSerializerOptions { WriteIndented = true }));
    }

    /// <summary>Loads weights, optimizer state, loop state and β from a checkpoint folder into a freshly built trainer.</summary>
    public static void Restore(PpoTrainer trainer, string dir)
    {
        string statePath = Path.Combine(dir, StateFile);
        if (!File.Exists(statePath)) throw InputException.At(statePath, null, "--load_checkpoint", "not a PPO checkpoint (trainer_state.json missing)");
        var saved = JsonSerializer.Deserialize<Saved>(File.ReadAllText(statePath))
                    ?? throw InputException.At(statePath, null, null, "empty trainer state");
        using (var ckpt = SafetensorsCheckpoint.Open(Path.Combine(dir, "actor")))
        using (torch.no_grad())
            trainer.Models.Actor.LoadWeights(ckpt);
        LoadOptimizer(trainer.ActorOptimizer, Path.Combine(dir, "actor_optim.safetensors"), saved.State.ActorOptimizerSteps, saved.ActorAdamSteps);
        if (trainer.Models.Critic is { } critic && trainer.CriticOptimizer is { } co)
        {
            string key = critic.HeadPrefix + ".weight";
            using (var ckpt = SafetensorsCheckpoint.Open(Path.Combine(dir, "critic")))
            using (torch.no_grad())
            {
                critic.Backbone.LoadWeights(ckpt, n => n == key);
                ckpt.CopyInto(key, critic.Score.weight!);
            }
            LoadOptimizer(co, Path.Combine(dir, "critic_optim.safetensors"), saved.State.CriticOptimizerSteps, saved.CriticAdamSteps);
        }
        var s = saved.State;
        trainer.State.GlobalStep = s.GlobalStep;
        trainer.State.ConsumedPrompts = s.ConsumedPrompts;
        trainer.State.Episode = s.Episode;
        trainer.State.RolloutInEpisode = s.RolloutInEpisode;
        trainer.State.ActorOptimizerSteps = s.ActorOptimizerSteps;
        trainer.State.CriticOptimizerSteps = s.CriticOptimizerSteps;
        trainer.State.KlCoef = s.KlCoef;
        trainer.KlController.Restore(new Algorithms.KlControllerState(s.KlCoef));
    }

    static void LoadOptimizer(Optimization.ModelOptimizer opt, string path, long steps, long adamSteps)
    {
        using var f = SafetensorsFile.Open(path);
        using var scope = torch.NewDisposeScope();
        opt.LoadState(steps, adamSteps, name => f.Entries.ContainsKey(name) ? f.Load(name) : null, path);
    }
}
