// `lmmr1 native build`: compiles the CUDA-graph extension (native/lmmr1_native.cpp, embedded in the program) against
// the installed PyTorch into the per-user cache, the same build the first CUDA run does by itself.
using System.CommandLine;
using LmmR1.Infrastructure;

namespace LmmR1.Cli.Commands;

public static class NativeCommand
{
    public static Command Create()
    {
        var native = new Command("native", "The optional native extension (CUDA graphs) built against an installed PyTorch");
        var force = new Option<bool>("--force") { Description = "Rebuild even when a build for this torch version exists" };
        var build = new Command("build", "Compile the extension with g++ against the installed PyTorch (cached per torch version)") { force };
        build.SetAction(pr =>
        {
            try
            {
                string path = NativeExtension.Build(Console.Error, pr.GetValue(force));
                Console.WriteLine(path);
                return 0;
            }
            catch (InvalidOperationException e)
            {
                Console.Error.WriteLine($"error: {e.Message}");
                return 1;
            }
        });
        native.Subcommands.Add(build);
        return native;
    }
}
