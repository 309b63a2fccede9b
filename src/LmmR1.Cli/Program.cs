// Entry point of the `lmmr1` command: builds the command tree and runs it. A build without a bundled libtorch
// (TorchBackend=system) first makes sure an installed PyTorch's libraries are on the loader path (re-running itself
// with LD_LIBRARY_PATH set when they are not), so no manual LD_LIBRARY_PATH recipe is needed.
using LmmR1.Cli;

#if TORCH_SYSTEM
if (LmmR1.Infrastructure.TorchLocator.EnsureLoaderPath(args) is int exitCode) return exitCode;
#endif
GcStress.StartIfRequested();   // LMMR1_GC_STRESS=1: diagnostics for TorchSharp temporaries freed mid-call (GcStress.cs)
return CliApp.Run(args);
